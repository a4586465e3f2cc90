"""Uploads: a file stored once for review (preview, suggested mapping) before an operation.

An upload is stored like an operation's file (:func:`store_file`: per organization, size,
SHA-256) and checked as a whole the same way (size, binary content, encoding, header row), so
it is refused with the same problems an operation would be. Its view is read again from the
stored file each time (the header and the first :data:`PREVIEW_RECORDS` records), with the
read options last given. An operation made from it (``upload_id``) takes the stored file
over; an upload no operation used is deleted after ``upload_ttl_hours``.

Suggested mapping, per header column (``how``):

- ``given``: the ``mapping`` sent with the preview says so;
- ``saved``: the organization's remembered mapping for this entity and header says so;
- ``exact``: the cell is a field name; ``case_or_space``: it is one but for letter case or
  surrounding spaces;
- ``similar``: a field not otherwise taken whose :func:`similarity` to the column's name is at
  least :data:`SIMILAR_THRESHOLD`; ``score`` is that similarity. The best pairs are taken
  first, whatever the order of the columns;
- ``none``: no field (also every column whose name starts with ``_``, which is ignored).
"""

from __future__ import annotations

import collections
import itertools
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from bulkops.engine.operations import Context, OperationConfig, store_file, uploaded_name
from bulkops.engine.setup import list_organizations
from bulkops.entities import (
    SIMILAR_THRESHOLD,
    EntitySpec,
    entity_of_columns,
    header_key,
    names_last,
    normalised_cell,
    similarity,
    spec_for,
)
from bulkops.errors import FileRejected, NotFound, UsageError
from bulkops.formats import TableFile, open_table
from bulkops.model import EntityType, OperationType
from bulkops.store import utcnow

__all__ = [
    "PREVIEW_RECORDS",
    "SIMILAR_THRESHOLD",
    "UPLOAD_OPTIONS",
    "UploadSweeper",
    "create_upload",
    "delete_expired_uploads",
    "forget_mapping",
    "get_upload",
    "list_mappings",
    "preview_upload",
    "saved_mapping_for_file",
    "suggest_mapping",
]

PREVIEW_RECORDS = 20
UPLOAD_OPTIONS = ("encoding", "delimiter", "decimal_separator", "sheet")
"""The read options an upload keeps (and a preview may change)."""


def _kind_and_sheets(table: TableFile) -> tuple[str, list[str] | None]:
    """What kind of file ``table`` is (``csv``, ``xlsx``) and its sheets (workbooks only)."""
    sheets = getattr(table, "sheets", None)
    return table.format, list(sheets) if sheets is not None else None


def _options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The read options as OperationConfig checks them (UsageError naming the field)."""
    config = OperationConfig.parse({k: values.get(k) for k in UPLOAD_OPTIONS})
    return {k: getattr(config, k) for k in UPLOAD_OPTIONS}


# -- suggestions ----------------------------------------------------------------------------------


def suggest_mapping(
    spec: EntitySpec,
    header: Sequence[str],
    operation: OperationType,
    *,
    saved: Mapping[str, str] | None = None,
    given: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One suggestion per header column, and the required fields no column maps to."""
    fields = spec.field_names
    by_folded = {name.casefold(): name for name in fields}
    given_by = {normalised_cell(k): v.strip() for k, v in (given or {}).items()}
    saved_by = {normalised_cell(k): v.strip() for k, v in (saved or {}).items()}
    entries: list[dict[str, Any]] = []
    for cell in header:
        text = cell.strip().lstrip("\ufeff").strip()
        folded = normalised_cell(cell)
        entry: dict[str, Any] = {"header": cell, "field": None, "how": "none", "score": None}
        for how, chosen in (("given", given_by), ("saved", saved_by)):
            if folded in chosen:
                target = chosen[folded]
                entry["field"] = by_folded.get(target.casefold()) if target else None
                entry["how"] = how
                break
        else:
            if text.startswith("_") or not text:
                pass
            elif text in fields:
                entry.update(field=text, how="exact")
            elif folded in by_folded:
                entry.update(field=by_folded[folded], how="case_or_space")
        entries.append(entry)
    taken = {e["field"] for e in entries if e["field"]}
    open_entries = [entry for entry in entries if entry["how"] == "none" and _named(entry)]
    scores = [
        (column, order, name, score)
        for column, entry in enumerate(open_entries)
        for order, name in enumerate(fields)
        if name not in taken
        and (score := similarity(entry["header"], name)) >= SIMILAR_THRESHOLD
    ]
    # Best first; among equals, the column with fewer candidates first (``Contact name``
    # before ``Company name``, which can still be company), then the column whose last
    # words name the field (``Unit price`` before ``Price level`` for price), then the field
    # with fewer.
    per_column = collections.Counter(column for column, _, _, _ in scores)
    per_field = collections.Counter(name for _, _, name, _ in scores)
    pairs = sorted(
        (
            -score,
            per_column[column],
            not names_last(open_entries[column]["header"], name),
            per_field[name],
            column,
            order,
            name,
        )
        for column, order, name, score in scores
    )
    for negative, _, _, _, column, _, name in pairs:
        entry = open_entries[column]
        if entry["field"] is None and name not in taken:
            entry.update(field=name, how="similar", score=round(-negative, 2))
            taken.add(name)
    missing = [name for name in spec.required_columns(operation) if name not in taken]
    return entries, missing


def _mapping_option(entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The ``mapping`` option that makes an operation read the columns as suggested: every
    column that is not a field name as it is (unknown ones ignored with ``""``)."""
    return {
        e["header"]: e["field"] or ""
        for e in entries
        if e["how"] not in ("exact", "case_or_space") and _named(e)
    }


def _named(entry: Mapping[str, Any]) -> bool:
    """Whether a mapping entry's column has a name, and not one starting with ``_`` (a
    column every door ignores)."""
    text = normalised_cell(entry["header"])
    return bool(text) and not text.startswith("_")


# -- the upload object ----------------------------------------------------------------------------


def _view(
    ctx: Context,
    org_id: int,
    upload: Mapping[str, Any],
    options: Mapping[str, Any],
    given: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The upload object: the stored file read with ``options`` (FileRejected if it cannot)."""
    config = OperationConfig.parse(dict(options))
    entity = EntityType(upload["entity_type"])
    operation = OperationType(upload["operation_type"])
    spec = spec_for(entity)
    preview: list[dict[str, Any]] = []
    with open_table(Path(upload["file_path"]), config.read_options(), ctx.read_limits()) as table:
        header = list(table.header)
        kind, sheets = _kind_and_sheets(table)
        for raw in itertools.islice(table.records(), PREVIEW_RECORDS):
            preview.append(
                {"row": raw.row, "line": raw.line, "cells": list(raw.values), "error": raw.error}
            )
        encoding = getattr(table, "encoding", options.get("encoding"))
        delimiter = getattr(table, "delimiter", options.get("delimiter"))
    with ctx.store.transaction(org_id) as tx:
        saved = tx.mappings.find(entity.value, header_key(header))
    entries, missing = suggest_mapping(
        spec, header, operation, saved=saved["mapping"] if saved else None, given=given
    )
    created: datetime = upload["created_at"]
    unknown = any(e["how"] == "none" and _named(e) for e in entries)
    other = entity_of_columns(header, spec, operation) if unknown or missing else None
    return {
        "id": upload["id"],
        "entity_type": entity.value,
        "operation_type": operation.value,
        "file_name": upload["file_name"],
        "file_size_bytes": upload["file_size_bytes"],
        "file_sha256": upload["file_sha256"],
        "format": kind,
        "encoding": encoding,
        "encoding_detected": False,
        "notes": [],
        "delimiter": delimiter,
        "decimal_separator": config.decimal_separator,
        "sheet": config.sheet,
        "sheets": sheets,
        "header": header,
        "preview": preview,
        "mapping": entries,
        "missing_required": missing,
        "other_entity": other.entity.value if other is not None else None,
        "saved_mapping_id": saved["id"] if saved else None,
        "suggested_mapping": _mapping_option(entries),
        "created_at": created.isoformat(),
        "expires_at": (created + timedelta(hours=ctx.settings.upload_ttl_hours)).isoformat()
        if upload["used_by_operation"] is None
        else None,
        "used_by_operation": upload["used_by_operation"],
    }


def create_upload(
    ctx: Context,
    org_id: int,
    *,
    source: Path | BinaryIO,
    entity_type: EntityType,
    operation_type: OperationType,
    options: Mapping[str, Any] | None = None,
    file_name: str | None = None,
    created_by: int | None = None,
    move_source: bool = False,
) -> dict[str, Any]:
    """Store the file, check it as a whole and answer with the upload object.

    Refused as an operation's file would be (FileTooLarge, UnsupportedFile, FileRejected),
    and nothing is kept then; a header with unknown or missing columns is not refused (that
    is what the review is for).
    """
    if operation_type is OperationType.EXPORT:
        raise UsageError("An export takes no file: uploads are for import, update or delete.")
    chosen = _options(options or {})
    path, size, sha256 = store_file(ctx, org_id, source, move=move_source)
    upload = {
        "id": str(uuid.uuid4()),
        "entity_type": entity_type.value,
        "operation_type": operation_type.value,
        "file_name": uploaded_name(
            file_name or (source.name if isinstance(source, Path) else None)
        ),
        "file_path": str(path),
        "file_size_bytes": size,
        "file_sha256": sha256,
        "options": chosen,
        "created_at": utcnow(),
        "created_by": created_by,
        "used_by_operation": None,
    }
    try:
        try:
            view = _view(ctx, org_id, upload, chosen, None)
        except FileRejected as exc:
            # A file that is not UTF-8: read it as the encoding it most likely is, and say
            # so, for the person to confirm or change in the review (CONTRACT sections 3, 7).
            proposal = _proposed_encoding(exc) if chosen.get("encoding") is None else None
            if proposal is None:
                raise
            chosen = {**chosen, "encoding": proposal[0]}
            view = _view(ctx, org_id, upload, chosen, None)
            view["encoding_detected"] = True
            view["notes"] = [proposal[1]]
            kept: dict[str, Any] = {**chosen, _PROPOSED: list(proposal)}  # GET says so again
        else:
            kept = dict(chosen)
        remembered = _remembered(view["mapping"], "saved")
        if remembered:
            # An operation made from the upload uses it unless it gives a mapping of its own.
            kept["mapping"] = remembered
        upload["options"] = kept
        with ctx.store.transaction(org_id, write=True) as tx:
            tx.uploads.insert(upload)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return view


def _proposed_encoding(exc: FileRejected) -> tuple[str, str] | None:
    """The encoding a refusal for bytes that are not UTF-8 proposes, with a note saying why."""
    for problem in exc.problems:
        if (
            problem.code == "undecodable"
            and problem.hint_field == "encoding"
            and problem.hint_value
        ):
            value = str(problem.hint_value)
            what = problem.message.split(" Nothing was read")[0]
            note = (
                f"{what} It is read as {value}: change the encoding if the preview "
                "does not look right."
            )
            return value, note
    return None


def _require(ctx: Context, org_id: int, upload_id: str) -> dict[str, Any]:
    with ctx.store.transaction(org_id) as tx:
        upload = tx.uploads.get(upload_id)
    if upload is None or not Path(upload["file_path"]).is_file():
        raise NotFound(f"No upload {upload_id}.")
    return upload


def get_upload(ctx: Context, org_id: int, upload_id: str) -> dict[str, Any]:
    """The upload object, read with the options last given."""
    upload = _require(ctx, org_id, upload_id)
    options = upload["options"]
    given = options.get("mapping") if options.get("mapping_given") else None
    view = _view(ctx, org_id, upload, {k: options.get(k) for k in UPLOAD_OPTIONS}, given)
    return _with_proposal(view, options)


def preview_upload(
    ctx: Context,
    org_id: int,
    upload_id: str,
    *,
    options: Mapping[str, Any],
    mapping: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The upload re-read with other read options (kept for it) and a ``mapping`` to try.

    Options not given keep their value; FileRejected when the file cannot be read so.
    """
    upload = _require(ctx, org_id, upload_id)
    changed = {k: v for k, v in options.items() if k in UPLOAD_OPTIONS}
    chosen = _options({**upload["options"], **changed})
    view = _view(ctx, org_id, upload, chosen, mapping)
    kept = dict(chosen)
    if mapping is not None:
        # The review's choice: shown again by GET, and used by an operation made from it.
        kept.update(mapping=dict(mapping), mapping_given=True)
    else:
        kept.update({k: upload["options"][k] for k in _MAPPING_KEYS if k in upload["options"]})
    if _PROPOSED in upload["options"]:
        kept[_PROPOSED] = upload["options"][_PROPOSED]
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.uploads.set_options(upload_id, kept)
    return _with_proposal(view, kept)


_MAPPING_KEYS = ("mapping", "mapping_given")
_PROPOSED = "proposed_encoding"
"""Kept with an upload that is not UTF-8: [the encoding proposed, the note saying why]."""


def _with_proposal(view: dict[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The note of a proposed encoding, while the upload is still read that way."""
    proposed = options.get(_PROPOSED)
    if proposed and view["encoding"] == proposed[0]:
        view["encoding_detected"] = True
        view["notes"] = [proposed[1]]
    return view


def _remembered(entries: Sequence[Mapping[str, Any]], how: str) -> dict[str, str]:
    """The mapping option of the columns whose suggestion came ``how`` (e.g. saved)."""
    return {e["header"]: e["field"] or "" for e in entries if e["how"] == how}


def delete_expired_uploads(ctx: Context, *, now: datetime | None = None) -> int:
    """Delete every organization's uploads that no operation used within the time to live
    (``upload_ttl_hours``), with their files; returns how many."""
    before = (now or utcnow()) - timedelta(hours=ctx.settings.upload_ttl_hours)
    deleted = 0
    for org in list_organizations(ctx):
        while True:
            with ctx.store.transaction(org["id"], write=True) as tx:
                expired = tx.uploads.expired(before)
                tx.uploads.delete([upload_id for upload_id, _ in expired])
            for _, path in expired:
                Path(path).unlink(missing_ok=True)
            deleted += len(expired)
            if len(expired) < 500:
                break
    return deleted


class UploadSweeper:
    """Deletes expired uploads now and then, from a worker's periodic loop."""

    def __init__(self, ctx: Context, *, every_seconds: float = 300.0) -> None:
        self.ctx = ctx
        self.every_seconds = every_seconds
        self._last: float | None = None

    def maybe_sweep(self) -> int:
        """Delete expired uploads if the last sweep is ``every_seconds`` ago; how many."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every_seconds:
            return 0
        self._last = now
        return delete_expired_uploads(self.ctx)


# -- remembered mappings --------------------------------------------------------------------------


def _mapping_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "entity_type": row["entity_type"],
        "header": row["header"],
        "mapping": row["mapping"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "updated_by": row["updated_by"],
        "operation_id": row["operation_id"],
    }


def list_mappings(
    ctx: Context,
    org_id: int,
    *,
    entity: EntityType | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The organization's remembered mappings, oldest first (keyset by id)."""
    with ctx.store.transaction(org_id) as tx:
        rows = tx.mappings.list(
            entity=entity.value if entity else None, after_id=after_id, limit=limit
        )
    return [_mapping_view(r) for r in rows]


def forget_mapping(ctx: Context, org_id: int, mapping_id: int) -> None:
    """Forget one remembered mapping (NotFound when the organization has none of that id)."""
    with ctx.store.transaction(org_id, write=True) as tx:
        if not tx.mappings.delete(mapping_id):
            raise NotFound(f"No saved mapping {mapping_id}.")


def saved_mapping_for_file(
    ctx: Context, org_id: int, entity: EntityType, path: Path, config: OperationConfig
) -> dict[str, Any] | None:
    """The remembered mapping for the header of the file at ``path``, if there is one.

    A file that cannot be read gives None: the operation reports why when it opens it.
    """
    try:
        with open_table(path, config.read_options(), ctx.read_limits()) as table:
            header = list(table.header)
    except FileRejected:
        return None
    with ctx.store.transaction(org_id) as tx:
        saved = tx.mappings.find(entity.value, header_key(header))
    return _mapping_view(saved) if saved else None
