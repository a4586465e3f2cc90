"""Products: the catalogue, one row per SKU.

Natural key: ``sku`` (unique per organization). Columns in template order (* = required):

============  ========  ===============================================================
column        type      rule
============  ========  ===============================================================
sku*          text      at most 64 characters
name*         text      at most 255 characters
description   text      at most 4000 characters
category      text      at most 100 characters
price         decimal   greater than 0, at most 2 decimals and 10 digits before the
                        point (at most 9999999999.99); stored as text such as ``12.50``
============  ========  ===============================================================
"""

from __future__ import annotations

from bulkops.entities.spec import EntitySpec, Field
from bulkops.model import EntityType

__all__ = ["SPEC"]

SPEC = EntitySpec(
    entity=EntityType.PRODUCTS,
    fields=(
        Field("sku", required=True, kind="text", max_length=64, key_value=True),
        Field("name", required=True, kind="text", max_length=255),
        Field("description", required=False, kind="text", max_length=4000),
        Field("category", required=False, kind="text", max_length=100),
        Field("price", required=False, kind="decimal"),
    ),
    key=("sku",),
    references=(),
    template_row={
        "sku": "CHAIR-OAK-01",
        "name": "Oak dining chair",
        "description": "Solid oak chair with a woven seat, 45 x 52 x 88 cm",
        "category": "Furniture",
        "price": "149.00",
    },
)
