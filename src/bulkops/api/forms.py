"""The form that starts an operation: its fields as a pydantic model, read from form text.

The options (``chunk_size`` … ``filters``) are :class:`bulkops.engine.OperationConfig`'s own
fields: their types, defaults and limits are taken from it, so a limit is written once. What
is the form's alone is how form text reads (a whole number in digits, a yes/no word, a JSON
object of texts) and the choice of delimiters. The upload is streamed to storage by
:mod:`.uploads`, so the model validates the collected text fields rather than being a FastAPI
body parameter; the OpenAPI request body is generated from it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import Request
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from bulkops import engine
from bulkops.entities import closest
from bulkops.model import EntityType, OperationType

from .problems import InvalidParameters
from .uploads import FORM_ALLOWANCE_BYTES

__all__ = [
    "ReviewForm",
    "UploadForm",
    "operation_arguments",
    "read_small_form",
    "review_arguments",
    "review_request_body",
    "upload_request_body",
]


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
# The yes/no words, any letter case, as the document describes them (a JSON Schema pattern
# has no case-insensitive flag).
_YES_NO_PATTERN = (
    r"^\s*("
    + "|".join("".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in w) for w in _BOOLEANS)
    + r")\s*$"
)
_DELIMITERS = (",", ";", "|", "tab", "\t", "\\t")
_JSON_TEXTS_MESSAGE = 'must be a JSON object of texts, e.g. {"Artikel": "sku"}.'


def _read_yes_no(text: Any) -> Any:
    if isinstance(text, str):
        if text.lower() not in _BOOLEANS:
            raise PydanticCustomError(
                "yes_no", "'{text}' is not true or false.", {"text": text.lower()}
            )
        return _BOOLEANS[text.lower()]
    return text


def _read_whole_number(text: Any) -> Any:
    # Digits only: no sign, no "1_000" or "5.0", which int() and pydantic would take.
    if isinstance(text, str):
        if not text.isascii() or not text.isdigit():
            raise PydanticCustomError(
                "whole_number", "'{text}' is not a whole number.", {"text": text}
            )
        return int(text)
    return text


def _read_json_texts(text: Any) -> Any:
    if isinstance(text, str):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise PydanticCustomError("json_texts", _JSON_TEXTS_MESSAGE)
        return parsed
    return text


def _read_delimiter(text: Any) -> Any:
    if isinstance(text, str) and text not in _DELIMITERS:
        raise PydanticCustomError("delimiter", "must be one of , ; | or tab.")
    return text


def _lower(text: Any) -> Any:
    return text.lower() if isinstance(text, str) else text


# How a form's text reads into each type of OperationConfig field.
_FORM_TEXT: dict[Any, Any] = {
    bool: Annotated[
        bool,
        BeforeValidator(_read_yes_no),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": _YES_NO_PATTERN,
                "description": "true or false (also yes/no, on/off, 1/0, any letter case)",
            }
        ),
    ],
    int: Annotated[int, BeforeValidator(_read_whole_number)],
    dict[str, str]: Annotated[
        dict[str, str],
        BeforeValidator(_read_json_texts),
        WithJsonSchema(
            {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
    ],
}
_FORM_ONLY: dict[str, Any] = {
    "delimiter": Annotated[
        str | None,
        BeforeValidator(_read_delimiter),
        WithJsonSchema({"type": "string", "enum": [",", ";", "tab", "|"]}),
    ],
}
_DESCRIPTIONS = {
    "mapping": 'JSON object: CSV header -> field, or "" to ignore the column',
    "filters": "export only: JSON object column -> value",
    "encoding": "e.g. windows-1252",
    "sheet": "for a workbook: the sheet to read (default: the first)",
    "decimal_separator": "how prices write decimals: . (149.00) or , (149,00)",
}


# Set by the service, never sent: the check an applied operation comes from.
_NOT_IN_FORM = ("checked_by",)
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _option_fields() -> dict[str, Any]:
    """OperationConfig's fields (types, defaults, limits), read from form text."""
    fields: dict[str, Any] = {}
    for name, info in engine.OperationConfig.model_fields.items():
        if name in _NOT_IN_FORM:
            continue
        annotation = _FORM_ONLY.get(name) or _FORM_TEXT.get(info.annotation, info.annotation)
        field = copy.copy(info)
        if name in _DESCRIPTIONS:
            field.description = _DESCRIPTIONS[name]
        fields[name] = (annotation, field)
    return fields


UploadForm: type[BaseModel] = create_model(
    "UploadForm",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The multipart form that starts an operation (the file is streamed apart).",
    operation_type=(Annotated[OperationType, BeforeValidator(_lower)], ...),
    entity_type=(Annotated[EntityType, BeforeValidator(_lower)], ...),
    file=(
        bytes | None,
        Field(None, description="The CSV/TSV file or XLSX workbook (not for export)."),
    ),
    upload_id=(
        str | None,
        Field(
            None,
            pattern=_UUID_PATTERN,
            description="An upload's id (POST /api/v1/uploads), instead of `file`.",
        ),
    ),
    **_option_fields(),
)
_OPTIONS = tuple(n for n in engine.OperationConfig.model_fields if n not in _NOT_IN_FORM)
_TEXT_FIELDS = tuple(name for name in UploadForm.model_fields if name != "file")


def _choices(kind: type[Enum]) -> str:
    return ", ".join(str(member.value) for member in kind)


def _did_you_mean(given: str, names: Sequence[str]) -> str:
    """`` Did you mean 'products'?`` for the closest of ``names``, or nothing."""
    close = closest(given, names)
    return f" Did you mean '{close}'?" if close else ""


def _message(error: Any) -> str:
    """The message of one problem, in the words the API has always used."""
    name = str(error["loc"][0]) if error["loc"] else ""
    kinds: dict[str, type[Enum]] = {"operation_type": OperationType, "entity_type": EntityType}
    choices = {field: _choices(kind) for field, kind in kinds.items()}
    if error["type"] == "extra_forbidden":
        return (
            f"Unknown parameter.{_did_you_mean(name, _TEXT_FIELDS)} "
            f"The parameters are: {', '.join(_TEXT_FIELDS)}."
        )
    if error["type"] == "missing" and name in choices:
        return f"is required: {choices[name]}."
    if error["type"] == "enum" and name in choices:
        values = [str(member.value) for member in kinds[name]]
        return (
            f"'{error['input']}' is not one of {choices[name]}."
            f"{_did_you_mean(str(error['input']), values)}"
        )
    if error["type"] == "value_error":  # a check of OperationConfig's own: its words alone
        return str(error["ctx"]["error"])
    return str(error["msg"])


def operation_arguments(fields: dict[str, str], *, has_file: bool) -> dict[str, Any]:
    """The form's fields as ``engine.create_operation`` arguments; every problem at once.

    Raises InvalidParameters (422) listing each problem as
    ``{"code": "bad_parameter", "field": …, "message": …}``.
    """
    known = set(_TEXT_FIELDS)
    # An empty field is an absent one; an unknown field is reported even when empty.
    given = {
        name: text.strip() for name, text in fields.items() if text.strip() or name not in known
    }
    problems: list[dict[str, Any]] = []

    def problem(name: str, message: str) -> None:
        problems.append({"code": "bad_parameter", "field": name, "message": message})

    if "file" in given:  # the file comes as a file part, never as a text field
        problem("file", _message({"type": "extra_forbidden", "loc": ("file",)}))
    form: BaseModel | None = None
    try:
        form = UploadForm.model_validate({k: v for k, v in given.items() if k != "file"})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problem(".".join(str(p) for p in error["loc"]) or "form", _message(error))
    try:
        operation: OperationType | None = OperationType(given.get("operation_type", "").lower())
    except ValueError:
        operation = None
    from_upload = "upload_id" in given
    if operation is OperationType.EXPORT and has_file:
        problem("file", "An export takes no file.")
    if operation is OperationType.EXPORT and from_upload:
        problem("upload_id", "An export takes no file.")
    if has_file and from_upload:
        problem("upload_id", "Send either a file or an upload_id, not both.")
    if (
        operation is not None
        and operation is not OperationType.EXPORT
        and not has_file
        and not from_upload
    ):
        problem(
            "file", f"A CSV file (or an upload_id) is required for an {operation.value} operation."
        )
    if operation is not OperationType.EXPORT and "filters" in given:
        problem("filters", "Only an export can be filtered.")
    if problems or form is None:
        raise InvalidParameters(problems)
    options = form.model_dump(include=set(_OPTIONS), exclude_unset=True)
    try:  # OperationConfig's own checks (a known encoding) come on top of the form's types
        config = engine.OperationConfig.model_validate(options)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problem(".".join(str(p) for p in error["loc"]) or "form", _message(error))
        raise InvalidParameters(problems) from None
    return {
        "operation_type": getattr(form, "operation_type"),  # noqa: B009 (a generated model)
        "entity_type": getattr(form, "entity_type"),  # noqa: B009
        "config": config,
        "upload_id": getattr(form, "upload_id"),  # noqa: B009
    }


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    """The schema without ``$ref``s (they would point into the model's own ``$defs``), without
    ``null`` (a form field is sent or not) and without generated titles."""
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(definitions[node["$ref"].rsplit("/", 1)[-1]], definitions)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b != {"type": "null"}]
        if len(branches) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _inline({**branches[0], **rest}, definitions)
    return {
        k: _inline(v, definitions)
        for k, v in node.items()
        if k not in ("$defs", "title") and not (k == "default" and v is None)
    }


_BLANK = {"type": "string", "pattern": r"^\s*$"}


def _or_blank(field: dict[str, Any]) -> dict[str, Any]:
    """An optional field sent blank is one not sent (HTML forms send every input)."""
    described = {k: v for k, v in field.items() if k in ("description", "default")}
    rest = {k: v for k, v in field.items() if k not in described}
    return {"anyOf": [rest, _BLANK], **described}


def _form_schema(
    schema: dict[str, Any],
    operation_types: list[str],
    *,
    leave_out: tuple[str, ...],
    require: str | None,
) -> dict[str, Any]:
    """The form for some operation types: their ``operation_type`` values, without the fields
    they refuse (``leave_out``), ``require`` among the required fields."""
    form = copy.deepcopy(schema)
    form["properties"]["operation_type"]["enum"] = operation_types
    for name in leave_out:
        del form["properties"][name]
    for name, field in form["properties"].items():
        free_text = (
            field.get("type") == "string"
            and not {"pattern", "enum", "minLength"} & field.keys()
        )
        if name not in form["required"] and name != "file" and not free_text:
            form["properties"][name] = _or_blank(field)
    if require is not None:
        form["required"] = [*form["required"], require]
    return form


def upload_request_body() -> dict[str, Any]:
    """The ``openapi_extra`` of the start route, from :data:`UploadForm`: an import, update or
    delete is multipart with its ``file``; an export is a form without one (URL-encoded, or
    multipart as well)."""
    schema = UploadForm.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    writes = [t.value for t in OperationType if t is not OperationType.EXPORT]
    file_form = _form_schema(
        inlined, writes, leave_out=("filters", "upload_id"), require="file"
    )
    file_form["description"] = "Import, update or delete: the file and its options."
    file_form["properties"]["file"]["description"] = "The CSV/TSV file or XLSX workbook."
    upload_form = _form_schema(inlined, writes, leave_out=("filters", "file"), require="upload_id")
    upload_form["description"] = (
        "Import, update or delete of an uploaded file (POST /api/v1/uploads): its id and the "
        "options; read options not given are the upload's."
    )
    export_form = _form_schema(
        inlined, [OperationType.EXPORT.value], leave_out=("file", "upload_id"), require=None
    )
    export_form["description"] = "Export: what to write (no file)."
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"oneOf": [file_form, upload_form, export_form]}
                },
                "application/x-www-form-urlencoded": {
                    "schema": {"oneOf": [upload_form, export_form]}
                },
            },
        }
    }


# -- the upload form (POST /api/v1/uploads): the file, what it is for, how to read it ------------

_REVIEW_OPTIONS = engine.UPLOAD_OPTIONS
_WRITES = tuple(t for t in OperationType if t is not OperationType.EXPORT)

ReviewForm: type[BaseModel] = create_model(
    "ReviewForm",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The multipart form that uploads a file for review (the file is streamed apart).",
    operation_type=(Annotated[OperationType, BeforeValidator(_lower)], ...),
    entity_type=(Annotated[EntityType, BeforeValidator(_lower)], ...),
    file=(bytes | None, Field(None, description="The CSV/TSV file.")),
    **{name: spec for name, spec in _option_fields().items() if name in _REVIEW_OPTIONS},
)
_REVIEW_FIELDS = tuple(name for name in ReviewForm.model_fields if name != "file")


def review_arguments(fields: dict[str, str], *, has_file: bool) -> dict[str, Any]:
    """The upload form's fields as ``engine.create_upload`` arguments; every problem at once
    (InvalidParameters, 422)."""
    given = {
        name: text.strip()
        for name, text in fields.items()
        if text.strip() or name not in _REVIEW_FIELDS
    }
    problems: list[dict[str, Any]] = []
    if not has_file:
        problems.append({"code": "bad_parameter", "field": "file", "message": "is required."})
    form: BaseModel | None = None
    try:
        form = ReviewForm.model_validate({k: v for k, v in given.items() if k != "file"})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            name = ".".join(str(p) for p in error["loc"]) or "form"
            message = (
                f"Unknown parameter.{_did_you_mean(name, _REVIEW_FIELDS)} "
                f"The parameters are: file, {', '.join(_REVIEW_FIELDS)}."
                if error["type"] == "extra_forbidden"
                else _message(error)
            )
            problems.append({"code": "bad_parameter", "field": name, "message": message})
    operation = getattr(form, "operation_type", None)
    if operation is OperationType.EXPORT:
        problems.append(
            {
                "code": "bad_parameter",
                "field": "operation_type",
                "message": f"An export takes no file; one of {', '.join(_WRITES)}.",
            }
        )
    if problems or form is None:
        raise InvalidParameters(problems)
    options = form.model_dump(include=set(_REVIEW_OPTIONS), exclude_unset=True)
    try:  # OperationConfig's own checks (a known encoding) come on top of the form's types
        engine.OperationConfig.model_validate(options)
    except ValidationError as exc:
        raise InvalidParameters(
            [
                {
                    "code": "bad_parameter",
                    "field": ".".join(str(p) for p in error["loc"]) or "form",
                    "message": _message(error),
                }
                for error in exc.errors(include_url=False)
            ]
        ) from None
    return {
        "operation_type": operation,
        "entity_type": getattr(form, "entity_type"),  # noqa: B009 (a generated model)
        "options": options,
    }


def review_request_body() -> dict[str, Any]:
    """The ``openapi_extra`` of ``POST /api/v1/uploads``, from :data:`ReviewForm`."""
    schema = ReviewForm.model_json_schema()
    inlined = _inline(schema, schema.get("$defs", {}))
    form = _form_schema(
        inlined, [t.value for t in _WRITES], leave_out=(), require="file"
    )
    form["description"] = "The file to review and how to read it."
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": form}},
        }
    }


async def read_small_form(request: Request) -> dict[str, str]:
    """A URL-encoded form (no file: an export), refused when larger than a form can be."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_ALLOWANCE_BYTES:
            raise InvalidParameters(
                [{"field": "body", "message": "The form is too large; send a file as multipart."}]
            )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameters(
            [{"field": "body", "message": "The form is not valid UTF-8 URL-encoded text."}]
        ) from exc
    return dict(pairs)
