"""Inventory: how many units of a product a warehouse holds.

Natural key: (``sku``, ``warehouse_code``), unique per organization. ``sku`` must name an
existing product and ``warehouse_code`` an existing warehouse of the same organization.
Columns in template order (* = required):

===============  ========  ==========================================
column           type      rule
===============  ========  ==========================================
sku*             text      at most 64 characters (a product's sku)
warehouse_code*  text      at most 32 characters (a warehouse's code)
quantity*        int       whole number from 0 to 2147483647
reason           text      at most 255 characters
notes            text      at most 2000 characters
===============  ========  ==========================================
"""

from __future__ import annotations

from bulkops.entities.spec import EntitySpec, Field, Reference
from bulkops.model import EntityType

__all__ = ["SPEC"]

SPEC = EntitySpec(
    entity=EntityType.INVENTORY,
    fields=(
        Field("sku", required=True, kind="text", max_length=64, key_value=True),
        Field("warehouse_code", required=True, kind="text", max_length=32, key_value=True),
        Field("quantity", required=True, kind="int", min_value=0),
        Field("reason", required=False, kind="text", max_length=255),
        Field("notes", required=False, kind="text", max_length=2000),
    ),
    key=("sku", "warehouse_code"),
    references=(
        Reference(fields=("sku",), entity=EntityType.PRODUCTS, target_fields=("sku",)),
        Reference(
            fields=("warehouse_code",), entity=EntityType.WAREHOUSES, target_fields=("code",)
        ),
    ),
    template_row={
        "sku": "CHAIR-OAK-01",
        "warehouse_code": "WH-BER",
        "quantity": "25",
        "reason": "Stock count",
        "notes": "Counted after the spring delivery",
    },
)
