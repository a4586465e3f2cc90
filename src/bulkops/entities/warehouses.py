"""Warehouses: the places stock is kept.

Natural key: ``code`` (unique per organization). Columns in template order (* = required):

=========  ========  ========================================
column     type      rule
=========  ========  ========================================
code*      text      at most 32 characters
name*      text      at most 255 characters
=========  ========  ========================================
"""

from __future__ import annotations

from bulkops.entities.spec import EntitySpec, Field
from bulkops.model import EntityType

__all__ = ["SPEC"]

SPEC = EntitySpec(
    entity=EntityType.WAREHOUSES,
    fields=(
        Field("code", required=True, kind="text", max_length=32, key_value=True),
        Field("name", required=True, kind="text", max_length=255),
    ),
    key=("code",),
    references=(),
    template_row={"code": "WH-BER", "name": "Berlin central warehouse"},
)
