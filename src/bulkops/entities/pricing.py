"""Pricing: a product's price for a price tier from a minimum quantity on.

Natural key: (``sku``, ``price_tier``, ``min_quantity``), unique per organization. ``sku``
must name an existing product of the same organization. Columns in template order
(* = required):

=============  ========  ===============================================================
column         type      rule
=============  ========  ===============================================================
sku*           text      at most 64 characters (a product's sku)
price_tier*    text      at most 50 characters
price*         decimal   greater than 0, at most 2 decimals and 10 digits before the
                         point (at most 9999999999.99); stored as text such as ``12.50``
min_quantity   int       whole number from 1 to 2147483647; 1 when absent or empty
=============  ========  ===============================================================

``min_quantity`` is part of the key but has a default, so update and delete files may leave
the column out: their rows then name the tier's price from 1 unit on.
"""

from __future__ import annotations

from bulkops.entities.spec import EntitySpec, Field, Reference
from bulkops.model import EntityType

__all__ = ["SPEC"]

SPEC = EntitySpec(
    entity=EntityType.PRICING,
    fields=(
        Field("sku", required=True, kind="text", max_length=64, key_value=True),
        Field("price_tier", required=True, kind="text", max_length=50, key_value=True),
        Field("price", required=True, kind="decimal"),
        Field("min_quantity", required=False, kind="int", default=1, min_value=1),
    ),
    key=("sku", "price_tier", "min_quantity"),
    references=(Reference(fields=("sku",), entity=EntityType.PRODUCTS, target_fields=("sku",)),),
    template_row={
        "sku": "CHAIR-OAK-01",
        "price_tier": "wholesale",
        "price": "129.00",
        "min_quantity": "10",
    },
)
