"""The duplicate-key table: repeats name the earlier row, across chunks and through growth."""

from __future__ import annotations

import pytest

from bulkops.engine import seen as seen_module
from bulkops.engine.seen import CaseTwinRow, SeenKeys


@pytest.fixture(autouse=True, params=["python", "numpy"])
def table_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both kinds of table: the small one walked in Python, and NumPy's
    (which a large file gets), here from the first key on."""
    if request.param == "numpy":
        monkeypatch.setattr(seen_module, "_VECTOR_KEYS", 0)
    return str(request.param)


def test_each_kind_of_table_is_the_one_asked_for(table_kind: str) -> None:
    with SeenKeys() as seen:
        seen.check_and_add([("A", 2)])
        assert type(seen._hashes).__module__ == ("array" if table_kind == "python" else "numpy")


def test_repeats_name_the_first_row_within_and_across_chunks() -> None:
    with SeenKeys() as seen:
        assert seen.check_and_add([("A", 2), ("B", 3), ("A", 4)]) == {4: 2}
        assert seen.check_and_add([("C", 5), ("B", 6), ("A", 7)]) == {6: 3, 7: 2}


def test_growth_keeps_every_key_and_its_row() -> None:
    with SeenKeys(capacity=8) as seen:
        for start in range(0, 5000, 100):
            assert seen.check_and_add([(f"K{i}", i + 2) for i in range(start, start + 100)]) == {}
        repeats = seen.check_and_add([(f"K{i}", 10_000 + i) for i in range(0, 5000, 499)])
    assert repeats == {10_000 + i: i + 2 for i in range(0, 5000, 499)}


def test_reserve_sizes_the_table_once() -> None:
    seen = SeenKeys()
    seen.reserve(10_000)
    capacity = seen._capacity
    seen.check_and_add([(str(i), i) for i in range(10_000)])
    assert seen._capacity == capacity  # no re-hash was needed
    assert seen.check_and_add([("9999", 1)]) == {1: 9999}


def test_matches_a_plain_dict_on_keys_that_share_home_slots() -> None:
    """Batches in a small table (keys share home slots), repeating keys within themselves
    and from earlier batches, exactly or by letter case: the answers a dict would give."""
    import random

    rng = random.Random(7)
    pool = [f"Sku-{i}" for i in range(3000)]
    first_row: dict[str, int] = {}  # folded key -> its first row
    first_text: dict[str, str] = {}
    row = 2
    with SeenKeys(capacity=1 << 12) as seen:  # small: many keys share a home slot
        for _ in range(60):
            batch = []
            size = rng.choice([1, 50, 200])
            # Half the batches repeat no key within themselves (they may repeat earlier ones).
            drawn = rng.sample(pool, size) if rng.random() < 0.5 else rng.choices(pool, k=size)
            for key in drawn:
                if rng.random() < 0.2:
                    key = key.upper()
                batch.append((key, row))
                row += 1
            expected = {}
            for key, at in batch:
                folded = key.casefold()
                if folded in first_row:
                    expected[at] = (first_row[folded], first_text[folded] != key)
                else:
                    first_row[folded], first_text[folded] = at, key
            if rng.random() < 0.5:  # as the reader calls it, and as doctor does
                texts, rows = zip(*batch, strict=True)
                got = seen.check_and_add_columns(list(texts), list(rows))
            else:
                got = seen.check_and_add(batch)
            assert {r: (int(e), isinstance(e, CaseTwinRow)) for r, e in got.items()} == expected
    assert len(first_row) > 1000  # the table grew past its first size along the way


def test_rows_up_to_32_bits_are_kept_and_larger_ones_refused() -> None:
    with SeenKeys() as seen:
        assert seen.check_and_add([("A", 2**32 - 1)]) == {}
        assert seen.check_and_add([("A", 5)]) == {5: 2**32 - 1}  # not wrapped round
        with pytest.raises(ValueError, match="row number"):
            seen.check_and_add([("B", 2**32)])


def test_a_table_that_grows_into_numpy_keeps_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_module, "_VECTOR_KEYS", 300)
    with SeenKeys(capacity=8) as seen:
        for start in range(0, 1000, 100):
            assert seen.check_and_add([(f"K{i}", i + 2) for i in range(start, start + 100)]) == {}
        assert type(seen._hashes).__module__ == "numpy"
        repeats = seen.check_and_add([("k7", 5000), ("K999", 5001), ("new", 5002)])
    assert repeats == {5000: 9, 5001: 1001} and isinstance(repeats[5000], CaseTwinRow)
