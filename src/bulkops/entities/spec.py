"""What an entity is: its fields, natural key, references and template row.

An :class:`EntitySpec` is plain data. :meth:`EntitySpec.validator` turns it into a
:class:`~bulkops.entities.validation.RecordValidator` for one operation and one set of
present columns; validators are built once and cached on the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bulkops.entities.validation import MAX_INT, RecordValidator
from bulkops.errors import UsageError
from bulkops.model import EntityType, OperationType

__all__ = ["MAX_INT", "EntitySpec", "Field", "FieldKind", "Reference"]

FieldKind = Literal["text", "decimal", "int", "email"]


@dataclass(frozen=True, slots=True)
class Field:
    """One column of an entity.

    ``max_length`` is the maximum number of characters of a ``text`` (or ``email``) value.
    ``default`` is the value an import stores when the column is absent or the cell empty.
    ``min_value`` is the smallest value of an ``int`` field (0 when not given); the largest
    is :data:`MAX_INT`. ``key_value`` marks a key or reference value (``sku``, ``code``…):
    stored in NFC, refused when it holds a format character (see :mod:`bulkops.entities.keys`).
    """

    name: str
    required: bool
    kind: FieldKind
    max_length: int | None = None
    default: str | int | None = None
    min_value: int | None = None
    key_value: bool = False


@dataclass(frozen=True, slots=True)
class Reference:
    """``fields`` of this entity must name an existing row of ``entity`` by ``target_fields``."""

    fields: tuple[str, ...]
    entity: EntityType
    target_fields: tuple[str, ...]


_ROW_NOUNS = {
    EntityType.PRODUCTS: "product",
    EntityType.WAREHOUSES: "warehouse",
    EntityType.CUSTOMERS: "customer",
    EntityType.INVENTORY: "inventory row",
    EntityType.PRICING: "pricing row",
}


@dataclass(frozen=True)
class EntitySpec:
    """An entity: fields in template/CSV order, natural key, references, example row."""

    entity: EntityType
    fields: tuple[Field, ...]
    key: tuple[str, ...]
    references: tuple[Reference, ...]
    template_row: dict[str, str]
    _validators: dict[tuple[OperationType, frozenset[str], str], RecordValidator] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = self.field_names
        if len(set(names)) != len(names):
            raise ValueError(f"{self.entity}: duplicate field names")
        unknown = [n for n in self.key if n not in names]
        for reference in self.references:
            unknown += [n for n in reference.fields if n not in names]
        if unknown:
            raise ValueError(f"{self.entity}: key or reference names unknown fields {unknown}")
        if tuple(self.template_row) != names:
            raise ValueError(f"{self.entity}: template_row must have exactly the fields in order")

    @property
    def row_noun(self) -> str:
        """What one of its rows is called in a message: product, inventory row."""
        return _ROW_NOUNS[self.entity]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError when there is none)."""
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def required_columns(self, operation: OperationType) -> tuple[str, ...]:
        """Field names a file of ``operation`` must have as columns.

        import: every required field. update and delete: the key fields, except those with a
        default (pricing's ``min_quantity``), which take their default when the column is absent.
        """
        if operation is OperationType.IMPORT:
            return tuple(f.name for f in self.fields if f.required)
        if operation in (OperationType.UPDATE, OperationType.DELETE):
            return tuple(n for n in self.key if self.field(n).default is None)
        raise UsageError(f"{operation} does not read a file")

    def key_of(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The natural key of a record (or stored row), in key order."""
        return tuple(values[name] for name in self.key)

    def validator(
        self, operation: OperationType, present: frozenset[str], decimal_separator: str = "."
    ) -> RecordValidator:
        """The validator for records of ``operation`` whose file has the columns ``present``.

        Names in ``present`` that are not fields are ignored. Built once per
        (operation, present) and cached.
        """
        cache_key = (
            operation,
            frozenset(present).intersection(self.field_names),
            decimal_separator,
        )
        found = self._validators.get(cache_key)
        if found is None:
            found = self._build_validator(*cache_key)
            self._validators[cache_key] = found
        return found

    def _build_validator(
        self, operation: OperationType, present: frozenset[str], decimal_separator: str
    ) -> RecordValidator:
        # (field, required) for every output field, in template order.
        chosen: list[tuple[Field, bool]]
        if operation is OperationType.IMPORT:
            missing = [f.name for f in self.fields if f.required and f.name not in present]
            if missing:
                raise UsageError(
                    f"an import of {self.entity} needs the columns {', '.join(missing)}"
                )
            chosen = [(f, f.required) for f in self.fields]
        elif operation is OperationType.UPDATE:
            chosen = [
                (f, f.required and f.default is None)
                for f in self.fields
                if f.name in self.key or f.name in present
            ]
        elif operation is OperationType.DELETE:
            chosen = [(f, f.default is None) for f in self.fields if f.name in self.key]
        else:
            raise UsageError(f"{operation} does not validate records")
        return RecordValidator(self.entity, operation, chosen, decimal_separator)
