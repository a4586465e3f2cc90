"""The duplicate-key table: repeats name the earlier row, across chunks and through growth."""

from __future__ import annotations

from bulkops.engine.seen import _FINGERPRINT_MASK, CaseTwinRow, SeenKeys


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
                    earlier = first_text[folded]
                    # A case twin whose 16-bit fingerprint matches the earlier spelling's
                    # reads as a plain duplicate (documented; string hashes change from one
                    # process to the next, so some runs meet one).
                    twin = earlier != key and (
                        hash(earlier) & _FINGERPRINT_MASK != hash(key) & _FINGERPRINT_MASK
                    )
                    expected[at] = (first_row[folded], twin)
                else:
                    first_row[folded], first_text[folded] = at, key
            if rng.random() < 0.5:  # as the reader calls it, and as doctor does
                texts, rows = zip(*batch, strict=True)
                got = seen.check_and_add_columns(list(texts), list(rows))
            else:
                got = seen.check_and_add(batch)
            assert {r: (int(e), isinstance(e, CaseTwinRow)) for r, e in got.items()} == expected
    assert len(first_row) > 1000  # the table grew past its first size along the way
