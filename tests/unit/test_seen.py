"""The duplicate-key table: repeats name the earlier row, across chunks and through growth."""

from __future__ import annotations

from bulkops.engine.seen import SeenKeys


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
