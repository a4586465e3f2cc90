"""The dashboard takes status labels and option limits from their one source, through the page."""

from __future__ import annotations

import json
import re
from typing import Any, cast

from bulkops.engine import OperationConfig
from bulkops.model import STATUS_LABELS, OperationStatus
from bulkops.web.pages import build_templates


def test_every_status_has_a_label() -> None:
    assert set(STATUS_LABELS) == {s.value for s in OperationStatus}
    assert OperationStatus.PENDING.label == "queued"
    assert STATUS_LABELS["rolling_back"] == "rolling back"


def test_the_page_carries_the_labels_as_json_for_the_script() -> None:
    html = build_templates().env.get_template("base.html").render(session=None, csrf_token="")
    block = re.search(
        r'<script type="application/json" id="status-labels">(.*?)</script>', html, re.S
    )
    assert block is not None
    assert json.loads(block.group(1)) == dict(STATUS_LABELS)


def test_live_statuses_are_the_ones_that_are_not_final() -> None:
    final = cast(list[str], build_templates().env.globals["final_statuses"])
    assert set(final) == {s.value for s in OperationStatus if s.is_final}


def test_chunk_size_limits_come_from_the_options_schema() -> None:
    chunk = OperationConfig.model_json_schema()["properties"]["chunk_size"]
    schema = cast(dict[str, Any], build_templates().env.globals["option_schema"])
    source = schema["chunk_size"]
    assert source == chunk
    assert (chunk["minimum"], chunk["maximum"], chunk["default"]) == (1, 50_000, 1000)


def test_a_duration_reads_as_time_taken() -> None:
    from bulkops.web.pages import _duration

    start = "2026-12-07T22:13:37.100000+00:00"
    assert _duration(start, "2026-12-07T22:13:37.120000+00:00") == "under 0.1 s"
    assert _duration(start, "2026-12-07T22:13:39.600000+00:00") == "2.5 s"
    assert _duration(start, "2026-12-07T22:15:40.100000+00:00") == "2 min 3 s"
    assert _duration(start, None) == ""
