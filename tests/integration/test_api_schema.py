"""A property-based run of the OpenAPI document (schemathesis): no input makes a server error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from bulkops.config import Settings
from bulkops.store import Store
from tests.integration.test_api import Api, start_api

EXAMPLES = 30


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Api]:
    url = f"sqlite:///{tmp_path / 'bulkops.db'}"
    store = Store(url)
    store.migrate()
    store.dispose()
    yield from start_api(
        Settings(database_url=url, data_dir=tmp_path / "data", max_file_bytes=100_000),
        worker=False,
    )


def test_no_input_makes_a_server_error(live: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    headers = {"Authorization": f"Bearer {live.tokens['admin']}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live.url, headers=headers, timeout=10)
            assert response.status_code < 500, (case.method, case.path, response.text[:500])

        check()
