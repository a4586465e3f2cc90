"""Key values people can trust: one Unicode form, nothing invisible, no case twins.

A key value (``sku``, ``code``, ``warehouse_code``, ``price_tier``, ``email``: the fields
with ``key_value``) is stored in NFC, so ``é`` typed as one code point or as ``e`` + U+0301
is one key, and it may hold no Unicode format character (category ``Cf``: zero-width space,
byte-order mark, bidirectional overrides…), which a person cannot see in a spreadsheet.
Two keys that differ only by letter case are *case twins*; :func:`folded` is what is
compared to find them (``str.casefold`` of the NFC form, every part of a composite key).

An ASCII value never holds a format character and is already NFC: every check here starts
with ``str.isascii()``, so nearly all values cost nothing more.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any, Final

__all__ = [
    "KEY_PART_SEPARATOR",
    "character_name",
    "folded",
    "format_character_problem",
    "nfc",
]

#: Joins the parts of a composite key into one text (a unit separator: no key holds it).
KEY_PART_SEPARATOR: Final = "\x1f"


def nfc(value: str) -> str:
    """``value`` in Unicode normalisation form C (an ASCII value is returned as it is)."""
    if value.isascii():
        return value
    return unicodedata.normalize("NFC", value)


def character_name(character: str) -> str:
    """``U+200B ZERO WIDTH SPACE``: the code point and its Unicode name, for messages."""
    name = unicodedata.name(character, "")
    code = f"U+{ord(character):04X}"
    return f"{code} {name}" if name else code


def format_character_problem(value: str) -> str | None:
    """Why ``value`` cannot be a key: its first format (``Cf``) character and position.

    The position is 1-based in the value as given (trimmed, before NFC).
    """
    if value.isascii():
        return None
    for position, character in enumerate(value, start=1):
        if unicodedata.category(character) == "Cf":
            return (
                f"contains {character_name(character)} at position {position}; "
                "a key cannot hold invisible or format characters"
            )
    return None


def folded(key: Iterable[Any]) -> str:
    """The text two case twins share: every part in NFC, case-folded, joined.

    ``str.casefold`` is Unicode's caseless match (``ß`` folds to ``ss``, ``ς`` to ``σ``),
    stricter than ``lower()``; it is context-free, so folding the joined text would give the
    same result as folding each part.
    """
    return KEY_PART_SEPARATOR.join([nfc(str(part)).casefold() for part in key])
