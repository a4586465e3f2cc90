"""Reading a ``multipart/form-data`` upload as it arrives, without holding it in memory.

The body is parsed incrementally (python-multipart's streaming parser): form fields are kept
as short texts, the one file part is written block by block to a spool file in the data
folder. The size limit is enforced while writing (``FileTooLarge`` the moment it is passed)
and the first block is sniffed for binary content (``UnsupportedFile``), so a bad upload is
answered before the client has finished sending it. Any failure removes the spool file.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import anyio.from_thread
from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from bulkops.errors import FileProblem, FileTooLarge, UnsupportedFile
from bulkops.formats import sniff_content

from .problems import InvalidParameters

__all__ = ["FORM_ALLOWANCE_BYTES", "SpooledUpload", "read_upload", "upload_reader"]

MAX_FIELD_BYTES = 64 * 1024
# Room for the form fields around the file when judging Content-Length before reading.
FORM_ALLOWANCE_BYTES = 4 * MAX_FIELD_BYTES
MAX_FIELDS = 64
SNIFF_BYTES = 64 * 1024


class SpooledUpload:
    """The form fields and (if one was sent) the spooled file of one request."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.file_field: str | None = None
        self.file_name: str | None = None
        self.path: Path | None = None
        self.size_bytes = 0

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


class _Receiver:
    """python-multipart callbacks: fields into memory, the file part into the spool."""

    def __init__(self, upload: SpooledUpload, spool_dir: Path, max_file_bytes: int) -> None:
        self.upload = upload
        self.spool_dir = spool_dir
        self.max_file_bytes = max_file_bytes
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._field = bytearray()
        self._out: IO[bytes] | None = None
        self._head = bytearray()
        self._sniffed = False

    # -- callbacks -------------------------------------------------------------------------------

    def on_part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._is_file = False
        self._field = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(
            self._header_value
        )
        self._header_name = bytearray()
        self._header_value = bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        self._name = name
        if b"filename" in options or name == "file":
            if self.upload.file_field is not None:
                raise InvalidParameters(
                    [{"field": name, "message": "Send one file per request.", "code": "too_many"}]
                )
            self._is_file = True
            self.upload.file_field = name
            self.upload.file_name = options.get(b"filename", b"").decode("utf-8", "replace")
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            self.upload.path = self.spool_dir / f"upload-{uuid.uuid4().hex}.part"
            self._out = self.upload.path.open("wb")
        elif len(self.upload.fields) >= MAX_FIELDS:
            raise InvalidParameters(
                [{"field": name, "message": "Too many form fields.", "code": "too_many"}]
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self._write(data[start:end])
            return
        self._field += data[start:end]
        if len(self._field) > MAX_FIELD_BYTES:
            raise InvalidParameters(
                [
                    {
                        "field": self._name or "",
                        "message": f"A form field may hold at most {MAX_FIELD_BYTES} bytes.",
                        "code": "too_long",
                    }
                ]
            )

    def on_part_end(self) -> None:
        if self._is_file:
            self._sniff()
            assert self._out is not None
            self._out.close()
            self._out = None
        elif self._name is not None:
            self.upload.fields[self._name] = bytes(self._field).decode("utf-8", "replace")

    def on_end(self) -> None:
        self.ended = True

    # -- the file --------------------------------------------------------------------------------

    def _write(self, block: bytes) -> None:
        self.upload.size_bytes += len(block)
        if self.upload.size_bytes > self.max_file_bytes:
            raise FileTooLarge(
                FileProblem(
                    code="file_too_large",
                    message=f"The file is larger than the limit of {self.max_file_bytes:,} "
                    "bytes. Split it into smaller files.",
                )
            )
        if not self._sniffed:
            self._head += block[: SNIFF_BYTES - len(self._head)]
            if len(self._head) >= SNIFF_BYTES:
                self._sniff()
        assert self._out is not None
        self._out.write(block)

    def _sniff(self) -> None:
        if not self._sniffed:
            self._sniffed = True
            if self._head:
                sniff_content(bytes(self._head))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def upload_reader(
    request: Request, *, spool_dir: Path, max_file_bytes: int
) -> Callable[[], SpooledUpload]:
    """Check a multipart request at once (415 when it is not multipart, 413 when its
    Content-Length is already over the limit) and return the function that reads it: to be
    run in a worker thread, which pulls the body from the event loop block by block."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedFile(
            FileProblem(
                code="not_multipart",
                message="Send the file and parameters as multipart/form-data.",
            )
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_file_bytes + FORM_ALLOWANCE_BYTES:
        raise FileTooLarge(
            FileProblem(
                code="file_too_large",
                message=f"The upload ({int(declared):,} bytes) is larger than the limit of "
                f"{max_file_bytes:,} bytes. Split it into smaller files.",
            )
        )
    chunks = request.stream().__aiter__()

    async def next_chunk() -> bytes:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def pull() -> bytes:
        return anyio.from_thread.run(next_chunk)

    def read() -> SpooledUpload:
        return read_upload(
            content_type, pull, spool_dir=spool_dir, max_file_bytes=max_file_bytes
        )

    return read


def read_upload(
    content_type: str,
    next_chunk: Callable[[], bytes],
    *,
    spool_dir: Path,
    max_file_bytes: int,
) -> SpooledUpload:
    """Parse a multipart body pulled with ``next_chunk`` (``b""`` at its end).

    Raises FileTooLarge / UnsupportedFile as soon as the file part shows it, InvalidParameters
    for a malformed body; the spool file is removed on any failure.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidParameters(
            [{"field": "content-type", "message": "The multipart boundary is missing."}]
        )
    upload = SpooledUpload()
    receiver = _Receiver(upload, spool_dir, max_file_bytes)
    callbacks = {
        name: getattr(receiver, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        while chunk := next_chunk():
            parser.write(chunk)
        parser.finalize()
        if not receiver.ended:
            raise InvalidParameters(
                [{"field": "body", "message": "The multipart body ended too early."}]
            )
    except InvalidParameters:
        receiver.close()
        upload.discard()
        raise
    except Exception as exc:
        receiver.close()
        upload.discard()
        if type(exc).__module__.startswith("python_multipart"):
            raise InvalidParameters(
                [{"field": "body", "message": f"Malformed multipart body: {exc}"}]
            ) from exc
        raise
    except BaseException:
        receiver.close()
        upload.discard()
        raise
    receiver.close()
    return upload
