"""The live progress bar fits an 80-column terminal with its time remaining readable."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from bulkops.cli import output


def _bar_at_80_columns(monkeypatch: pytest.MonkeyPatch, title: str, event: dict) -> str:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(output, "err", console)
    with output.live_progress(True, title) as update:
        assert update is not None
        update(event)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    return [line for line in shown.splitlines() if line.strip()][-1].rstrip()


def test_a_rollback_under_way_shows_its_counts_rate_and_time_left_in_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = _bar_at_80_columns(monkeypatch, "rollback", {
        "status": "rolling_back", "phase": "rolling_back", "percentage": 40.0,
        "rolled_back_records": 120_000, "conflict_records": 3, "rate": 58_514.2,
        "estimated_time_remaining": 3.1,
    })
    assert len(line) <= 80 and "…" not in line, line
    assert line.startswith("rollback ━"), line  # the title says what the phase would
    assert "40%" in line and "✓120,000 ✗3" in line and "58,514/s" in line, line
    # Time elapsed and left, whole (Rich says -:--:-- until it can estimate).
    assert re.search(r"\d+:\d\d:\d\d eta (\d+:\d\d:\d\d|-:--:--)$", line), line


def test_an_import_shows_the_rows_apart_only_when_some_are_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = _bar_at_80_columns(monkeypatch, "update products", {
        "status": "processing", "phase": "applying", "percentage": 12.5,
        "processed_records": 250_000, "successful_records": 249_000, "failed_records": 1_000,
        "rate": 41_000.0,
    })
    assert "…" not in line and "✓249,000 ✗1,000" in line and "rows" not in line, line
    line = _bar_at_80_columns(monkeypatch, "update products", {
        "status": "processing", "phase": "validating", "percentage": 50.0,
        "processed_records": 500_000, "successful_records": 400_000, "failed_records": 0,
        "rate": 90_000.0,
    })
    # The phase goes where it does not fit beside the counts: the numbers stay whole.
    assert line.startswith("update products ━"), line
    assert "500,000 rows ✓400,000 ✗0" in line and "…" not in line, line
    line = _bar_at_80_columns(monkeypatch, "update products", {
        "status": "processing", "phase": "validating", "percentage": 5.0,
        "processed_records": 5_000, "successful_records": 5_000, "failed_records": 0,
        "rate": 9_000.0,
    })
    assert line.startswith("update products (validating) ") and "…" not in line, line
