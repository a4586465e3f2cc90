"""Customers: the buyers, one row per email address.

Natural key: ``email`` (unique per organization, compared case-insensitively because it is
stored lower-case). Columns in template order (* = required):

==========  ======  ===================================================================
column      type    rule
==========  ======  ===================================================================
email*      email   a valid address of at most 254 characters; stored lower-case
name*       text    at most 255 characters
company     text    at most 255 characters
price_tier  text    at most 50 characters; ``standard`` when absent or empty
==========  ======  ===================================================================
"""

from __future__ import annotations

from bulkops.entities.spec import EntitySpec, Field
from bulkops.model import EntityType

__all__ = ["SPEC"]

SPEC = EntitySpec(
    entity=EntityType.CUSTOMERS,
    fields=(
        Field("email", required=True, kind="email", max_length=254, key_value=True),
        Field("name", required=True, kind="text", max_length=255),
        Field("company", required=False, kind="text", max_length=255),
        Field(
            "price_tier",
            required=False,
            kind="text",
            max_length=50,
            default="standard",
            key_value=True,
        ),
    ),
    key=("email",),
    references=(),
    template_row={
        "email": "anna.schmidt@example.com",
        "name": "Anna Schmidt",
        "company": "Schmidt Interiors GmbH",
        "price_tier": "wholesale",
    },
)
