"""The entities bulkops manages: fields, natural keys, references, validation, header mapping.

Each entity has one module (``warehouses``, ``products``, ``inventory``, ``pricing``,
``customers``) whose docstring lists its columns and their limits. :data:`SPECS` holds them
all; :func:`spec_for` finds one by name. A spec's :meth:`~EntitySpec.validator` validates
records in batches; :func:`map_header` matches a file's header row to the fields.
"""

from __future__ import annotations

from bulkops.entities import customers, inventory, pricing, products, warehouses
from bulkops.entities.header import (
    SIMILAR_THRESHOLD,
    HeaderMap,
    closest,
    entity_of_columns,
    header_key,
    map_header,
    names_last,
    normalised_cell,
    similarity,
)
from bulkops.entities.spec import EntitySpec, Field, FieldKind, Reference
from bulkops.entities.validation import MAX_INT, RecordValidator
from bulkops.errors import UsageError
from bulkops.model import EntityType

__all__ = [
    "MAX_INT",
    "SIMILAR_THRESHOLD",
    "SPECS",
    "EntitySpec",
    "Field",
    "FieldKind",
    "HeaderMap",
    "RecordValidator",
    "Reference",
    "closest",
    "entity_of_columns",
    "header_key",
    "map_header",
    "names_last",
    "normalised_cell",
    "similarity",
    "spec_for",
]

SPECS: dict[EntityType, EntitySpec] = {
    module.SPEC.entity: module.SPEC
    for module in (warehouses, products, inventory, pricing, customers)
}


def spec_for(entity: EntityType | str) -> EntitySpec:
    """The spec of ``entity`` (a name such as ``"products"``, any case, or an EntityType)."""
    try:
        return SPECS[EntityType(entity.strip().lower())]
    except ValueError:
        valid = ", ".join(SPECS)
        raise UsageError(f"Unknown entity '{entity}'. The entities are: {valid}.") from None
