"""Matching a file's header row to an entity's fields.

Rules (the README quotes them):

- header cells are matched to field names case-insensitively, ignoring surrounding spaces
  (and a stray byte-order mark);
- ``mapping`` maps a header text (matched the same way) to a field name, or to ``""`` to
  ignore that column; a mapping wins over the other rules;
- columns whose name starts with ``_`` are ignored, so an error report (``_row``, ``_line``,
  ``_errors`` + the original columns) can be imported again as it is;
- import needs every required field; update needs the key fields and at least one other
  field; delete needs the key fields only and ignores every other column, known or not.
  Key fields with a default (pricing's ``min_quantity``) may be left out; they take the
  default;
- otherwise a file is rejected, listing every problem at once: an empty column name, a
  duplicate column, an unknown column (with the closest field name as suggestion), a
  mapping to an unknown field, a mapping to a field that matches no column, missing required
  columns, an update without any column besides the key.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from bulkops.entities.spec import EntitySpec
from bulkops.errors import FileProblem, FileRejected
from bulkops.model import OperationType

__all__ = [
    "SIMILAR_THRESHOLD",
    "HeaderMap",
    "closest",
    "header_key",
    "map_header",
    "normalised_cell",
    "similarity",
]

SIMILAR_THRESHOLD = 0.6
"""The least :func:`similarity` of a suggested field (0..1)."""

_IGNORED_PREFIX = "_"


def _header_text(cell: str) -> str:
    return cell.strip().lstrip("\ufeff").strip()


def _normalise(text: str) -> str:
    return _header_text(text).casefold()


def normalised_cell(text: str) -> str:
    """A header cell as cells are compared: trimmed (and a stray BOM), any letter case."""
    return _normalise(text)


def header_key(header: Sequence[str]) -> str:
    """One text that equal headers share (cells compared as above): a SHA-256, hex."""
    joined = "\x1f".join(_normalise(cell) for cell in header)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HeaderMap:
    """Which column of the file holds which field."""

    header: list[str]
    columns: tuple[tuple[int, str], ...]
    present: frozenset[str]
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cells: Any = field(init=False, repr=False, compare=False)
    #: Every column of the file holds a field, in the file's order: a record's cells are
    #: its values as they are.
    _whole: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(name for _, name in self.columns)
        indexes = [index for index, _ in self.columns]
        cells: Callable[[Sequence[str]], Any]
        if len(indexes) == 1:
            only = indexes[0]

            def cells(values: Sequence[str]) -> tuple[str, ...]:
                return (values[only],)

        else:
            cells = itemgetter(*indexes)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "_cells", cells)
        object.__setattr__(self, "_whole", indexes == list(range(len(self.header))))

    def to_dict(self, values: Sequence[str]) -> dict[str, str]:
        """field -> raw cell of one record; a cell beyond the end of a short record is ""."""
        if not self.columns:
            return {}
        try:
            return dict(zip(self._names, self._cells(values), strict=True))
        except IndexError:
            count = len(values)
            return {name: values[i] if i < count else "" for i, name in self.columns}

    def to_columns(
        self, records: Sequence[Sequence[str]], fields: Sequence[str]
    ) -> list[Sequence[str]]:
        """The records' cells column by column, one column per name of ``fields`` (a field
        no column holds, and a cell beyond the end of a short record: blank)."""
        count = len(records)
        blank = [""] * count
        if not count or not self._names:
            return [blank for _ in fields]
        held: list[Sequence[str]] | None = None
        if self._whole:  # no cell to pick: the records turned into columns as they are
            with suppress(ValueError):  # a record of another length: as below
                held = list(zip(*records, strict=True))
            if held is not None and len(held) != len(self._names):
                held = None
        try:
            # cells() gives exactly one value per name, or raises IndexError.
            if held is None:
                held = list(zip(*map(self._cells, records), strict=True))
        except IndexError:  # a short record: the careful way
            held = [
                [values[i] if i < len(values) else "" for values in records]
                for i, _ in self.columns
            ]
        by_name = dict(zip(self._names, held, strict=True))
        return [by_name.get(name, blank) for name in fields]

    def column_of(self, field: str) -> str:
        """The header text of the column holding ``field`` (the field name if none does)."""
        for index, name in self.columns:
            if name == field:
                return _header_text(self.header[index])
        return field


def map_header(
    spec: EntitySpec,
    header: Sequence[str],
    operation: OperationType,
    mapping: Mapping[str, str] | None = None,
) -> HeaderMap:
    """Map ``header`` to ``spec``'s fields, or raise FileRejected listing every problem."""
    entity = spec.entity
    by_name = {name.casefold(): name for name in spec.field_names}
    problems: list[FileProblem] = []

    targets: dict[str, str] = {}  # normalised header text -> field name or "" (ignore)
    mapped_from: dict[str, str] = {}  # normalised header text -> header text as given
    for source, target in (mapping or {}).items():
        wanted = target.strip()
        field_name = by_name.get(wanted.casefold()) if wanted else ""
        if field_name is None:
            suggestion = closest(wanted, spec.field_names)
            hint = f" Did you mean '{suggestion}'?" if suggestion else ""
            problems.append(
                FileProblem(
                    code="unknown_field",
                    message=(
                        f"The mapping '{source.strip()}={wanted}' names no {entity} field.{hint} "
                        f"The fields are: {', '.join(spec.field_names)}."
                    ),
                    column=source.strip(),
                    suggestion=suggestion,
                )
            )
            continue
        targets[_normalise(source)] = field_name
        mapped_from[_normalise(source)] = source.strip()

    keep = set(spec.key) if operation is OperationType.DELETE else set(spec.field_names)
    positions: dict[str, list[int]] = {}
    unknown: list[tuple[int, str]] = []
    used_mappings: set[str] = set()
    for index, cell in enumerate(header):
        text = _header_text(cell)
        normalised = text.casefold()
        if normalised in targets:
            used_mappings.add(normalised)
            field_name = targets[normalised]
            if not field_name:
                continue
        elif text.startswith(_IGNORED_PREFIX):
            continue
        elif not text:
            if operation is not OperationType.DELETE:
                problems.append(
                    FileProblem(
                        code="empty_column",
                        message=(
                            f"Column {index + 1} has no name. Name it, or delete the column "
                            "if it holds nothing."
                        ),
                    )
                )
            continue
        elif normalised in by_name:
            field_name = by_name[normalised]
        else:
            if operation is not OperationType.DELETE:
                unknown.append((index, text))
            continue
        if field_name in keep:
            positions.setdefault(field_name, []).append(index)

    for index, text in unknown:
        problems.append(_unknown_column(spec, index, text, positions))

    for field_name, indexes in positions.items():
        if len(indexes) > 1:
            problems.append(_duplicate_column(header, field_name, indexes))

    for normalised, source in mapped_from.items():
        # An unmatched "ignore this column" mapping changes nothing, so it is no problem.
        if normalised not in used_mappings and targets[normalised]:
            problems.append(
                FileProblem(
                    code="unmatched_mapping",
                    message=(
                        f"The mapping '{source}={targets[normalised]}' matches no column; "
                        f"the columns are: {', '.join(c.strip() for c in header)}."
                    ),
                    column=source,
                )
            )

    required = spec.required_columns(operation)
    missing = [name for name in required if name not in positions]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        problems.append(
            FileProblem(
                code="missing_columns",
                message=(
                    f"Missing required column{plural}: {', '.join(missing)}. "
                    f"{_article(entity)} {entity} {operation} file needs the columns "
                    f"{', '.join(required)}."
                ),
            )
        )
    if operation is OperationType.UPDATE and not set(positions) - set(spec.key):
        others = [name for name in spec.field_names if name not in spec.key]
        problems.append(
            FileProblem(
                code="nothing_to_update",
                message=(
                    "Nothing to update: besides the key "
                    f"({', '.join(spec.key)}) the file needs at least one of the columns "
                    f"{', '.join(others)}."
                ),
            )
        )

    if problems:
        other = entity_of_columns(header, spec, operation) if unknown or missing else None
        if other is not None:
            problems.insert(
                0,
                FileProblem(
                    code="other_entity",
                    message=(
                        f"These are the columns of {other.entity}, not of {entity}: if the file "
                        f"holds {other.entity}, {operation} it as {other.entity}."
                    ),
                    suggestion=other.entity.value,
                    hint_field="entity_type",
                    hint_value=other.entity.value,
                ),
            )
        raise FileRejected(problems)
    columns = tuple(sorted((indexes[0], name) for name, indexes in positions.items()))
    return HeaderMap(
        header=list(header),
        columns=columns,
        present=frozenset(positions),
    )


def entity_of_columns(
    header: Sequence[str], spec: EntitySpec, operation: OperationType
) -> EntitySpec | None:
    """Another entity whose fields are every named column of ``header`` (``_`` columns
    left out), and which has every column ``operation`` needs: the file chosen for the wrong
    entity (an inventory file imported as products)."""
    from bulkops.entities import SPECS  # the package holds every entity's spec

    names = {
        text.casefold()
        for text in map(_header_text, header)
        if text and not text.startswith(_IGNORED_PREFIX)
    }
    for other in SPECS.values():
        fields = set(other.field_names)
        if (
            other.entity is not spec.entity
            and names <= fields
            and set(other.required_columns(operation)) <= names
        ):
            return other
    return None


def _article(word: str) -> str:
    return "An" if word[:1].lower() in "aeiou" else "A"


_WORD = re.compile(r"[^\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _words(text: str) -> list[str]:
    """The words of a column name, lower-case: split at anything but letters and digits,
    and where an ASCII word changes case (``ItemSKU``: item, sku)."""
    words: list[str] = []
    for word in _WORD.findall(text):
        words.extend(_CAMEL.findall(word) if word.isascii() else [word])
    return [word.casefold() for word in words]


def similarity(header: str, field: str) -> float:
    """How alike a column's name and a field are (0..1): ``difflib``'s ratio of the two,
    letter case ignored; or, where that is more, for a name in which some words in a row
    spell the field (``Item SKU``: sku, ``Unit price``: price, ``Price tier``: price_tier,
    ``E-mail address``: email), 0.6 plus 0.4 times the share of the name's words they are,
    and for one in which they abbreviate it (``Qty``: quantity, ``Desc``: description,
    ``Min qty``: min_quantity, ``WH code``: warehouse_code), 0.6 plus 0.2 times that share.

    An abbreviation has three letters or more, begins with the field's first letter, its
    letters come in the field's name in that order, and it is not a word of the field's name.
    """
    ratio = difflib.SequenceMatcher(None, normalised_cell(header), field.casefold()).ratio()
    words, wanted = _words(header), field.replace("_", "").casefold()
    spelled = abbreviated = 0
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            run = "".join(words[start:end])
            if run == wanted:
                spelled = max(spelled, end - start)
            elif _abbreviates(run, field):
                abbreviated = max(abbreviated, end - start)
    if spelled:
        ratio = max(ratio, 0.6 + 0.4 * spelled / len(words))
    if abbreviated:
        ratio = max(ratio, 0.6 + 0.2 * abbreviated / len(words))
    return ratio


def names_last(header: str, field: str) -> bool:
    """Whether the last words of a column's name spell the field: ``Unit price`` names a
    price, ``Price level`` something else (English puts the thing named last)."""
    words, wanted = _words(header), field.replace("_", "").casefold()
    return any("".join(words[start:]) == wanted for start in range(len(words)))


def _abbreviates(short: str, field: str) -> bool:
    """Whether ``short`` abbreviates the field (see :func:`similarity`): not one of its own
    words (``Price`` is no abbreviation of price_tier, ``Min`` none of min_quantity)."""
    name = field.replace("_", "").casefold()
    if not 3 <= len(short) < len(name) or short[0] != name[0]:
        return False
    if short in field.casefold().split("_"):
        return False
    letters = iter(name)
    return all(letter in letters for letter in short)  # in order: iter is consumed


def closest(text: str, candidates: Sequence[str]) -> str | None:
    """The candidate most :func:`similar <similarity>` to ``text`` (the first of equals), if
    at least :data:`SIMILAR_THRESHOLD`."""
    best = max(candidates, key=lambda name: similarity(text, name), default=None)
    return best if best is not None and similarity(text, best) >= SIMILAR_THRESHOLD else None


def _unknown_column(
    spec: EntitySpec, index: int, text: str, positions: Mapping[str, list[int]]
) -> FileProblem:
    # Suggest a field the file does not have yet: renaming to a present one would clash.
    suggestion = closest(text, [n for n in spec.field_names if n not in positions])
    where = f"Unknown column '{text}' (column {index + 1})."
    # What is wrong and where; how to map or ignore it is worded by each door (hint_field).
    if suggestion:
        message = f"{where} Did you mean '{suggestion}'?"
    else:
        message = f"{where} The {spec.entity} columns are: {', '.join(spec.field_names)}."
    return FileProblem(
        code="unknown_column",
        message=message,
        column=text,
        suggestion=suggestion,
        hint_field="mapping",
    )


def _duplicate_column(header: Sequence[str], field_name: str, indexes: list[int]) -> FileProblem:
    texts = [header[i].strip() for i in indexes]
    numbers = [str(i + 1) for i in indexes]
    listed = ", ".join(numbers[:-1]) + " and " + numbers[-1]
    if len({t.casefold() for t in texts}) == 1:
        message = (
            f"Column '{texts[0]}' appears more than once (columns {listed}). "
            "Remove or rename all but one."
        )
    else:
        shown = ", ".join(f"'{t}'" for t in texts)
        message = (
            f"Columns {listed} ({shown}) all hold the field '{field_name}'. "
            "Remove or rename all but one."
        )
        # … or ignore one through the mapping, as each door words it.
        return FileProblem(
            code="duplicate_column", message=message, column=texts[1], hint_field="mapping"
        )
    return FileProblem(code="duplicate_column", message=message, column=texts[0])
