"""Key values: NFC, format characters, folding, the file's case twins and SQL candidates."""

from __future__ import annotations

import pytest

from bulkops.engine.seen import CaseTwinRow, SeenKeys
from bulkops.entities.keys import character_name, folded, format_character_problem, nfc
from bulkops.store.rows import lowered_spellings


def test_nfc_joins_both_spellings() -> None:
    assert nfc("Cafe\u0301") == nfc("Caf\u00e9") == "Caf\u00e9"
    assert nfc("plain") == "plain"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("AB\u200bC", "U+200B ZERO WIDTH SPACE at position 3"),
        ("\ufeffX", "U+FEFF ZERO WIDTH NO-BREAK SPACE at position 1"),
        ("x\u202ey", "U+202E RIGHT-TO-LEFT OVERRIDE at position 2"),
        ("soft\u00adhyphen", "U+00AD SOFT HYPHEN at position 5"),
    ],
)
def test_a_format_character_is_named_with_its_position(value: str, expected: str) -> None:
    problem = format_character_problem(value)
    assert problem is not None and expected in problem


def test_visible_values_have_no_format_problem() -> None:
    assert format_character_problem("ÉPÉE-ß-日本") is None
    assert format_character_problem("ASCII-1") is None
    assert character_name("\u0301") == "U+0301 COMBINING ACUTE ACCENT"


def test_folding_joins_case_and_form() -> None:
    assert folded(("ABC",)) == folded(("abc",))
    assert folded(("Gro\u00df", 1)) == folded(("GROSS", 1))
    assert folded(("CAFE\u0301",)) == folded(("caf\u00e9",))
    assert folded(("a", "b")) != folded(("ab",))


def test_seen_keys_tell_duplicates_from_case_twins() -> None:
    with SeenKeys() as seen:
        assert seen.check_and_add([("abc", 2), ("X", 3)]) == {}
        repeats = seen.check_and_add([("ABC", 4), ("abc", 5), ("x", 6)])
        assert repeats == {4: 2, 5: 2, 6: 3}
        assert isinstance(repeats[4], CaseTwinRow) and isinstance(repeats[6], CaseTwinRow)
        assert not isinstance(repeats[5], CaseTwinRow)


def test_seen_keys_keep_fingerprints_when_they_grow() -> None:
    with SeenKeys(capacity=8) as seen:
        seen.check_and_add([(f"k{i}", i + 2) for i in range(100)])
        repeats = seen.check_and_add([("K7", 500), ("k8", 501)])
    assert repeats == {500: 9, 501: 10}
    assert isinstance(repeats[500], CaseTwinRow) and not isinstance(repeats[501], CaseTwinRow)


@pytest.mark.parametrize(
    ("key", "twin_in_the_database"),
    [
        ("ABC", "abc"),
        ("\u00e9t\u00e9", "\u00c9T\u00c9"),  # SQLite's lower() keeps É
        ("\u00c9t\u00e9", "\u00e9T\u00c9"),
        ("GROSS", "Gro\u00df"),
        ("Gro\u00df", "GROSS"),
        ("caf\u00e9", "CAFE\u0301"),  # stored decomposed
    ],
)
def test_sql_lower_of_a_twin_is_among_the_spellings(key: str, twin_in_the_database: str) -> None:
    spellings = lowered_spellings(key)
    ascii_lower = twin_in_the_database.translate(
        str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    )
    assert ascii_lower in spellings  # SQLite
    assert twin_in_the_database.lower() in spellings  # PostgreSQL in a Unicode locale
