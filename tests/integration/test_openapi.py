"""The OpenAPI document tells the truth: schemathesis, with every check, against the real app.

The document is read from the application itself (no server needed for that); the requests go
to a real server in a thread with an admin token. Every operation is tested except token
revocation, which would revoke the very token the run authenticates with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig

from bulkops.api.params import CURSOR_FORMAT
from bulkops.asgi import create_app
from bulkops.config import Settings
from bulkops.store import Store
from tests.integration.test_api import Api, start_api

EXAMPLES = 10

load_all_checks()
EVERY_CHECK = list(CHECKS.get_all())

# A cursor is opaque: the one a client can make without a previous page is the empty one.
# Others are sent as negative data (too long, of another type) and must be refused.
schemathesis.openapi.format(CURSOR_FORMAT, st.just(""))

_CONFIG = {
    "checks": {"enabled": True},
    "operations": [
        {
            # Whether a file can be read (a header naming the entity's columns, text and not
            # a picture) and a JSON text field is an object of texts cannot be said in JSON
            # Schema: a schema-valid start may still be refused for its content, with the
            # statuses its document lists for that (413, 415, 422).
            "include-path": "/api/v1/operations",
            "include-method": "POST",
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "413", "415", "422"]
                }
            },
        }
    ],
}
_DOCUMENT = create_app(
    Settings(database_url="sqlite:///:memory:", secret_key="openapi-document")
).openapi()
schema = schemathesis.openapi.from_dict(
    _DOCUMENT, config=SchemathesisConfig.from_dict(_CONFIG)
).exclude(method="DELETE", path_regex=r"^/api/v1/tokens/\{token_id\}$")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder = tmp_path_factory.mktemp("openapi")
    url = f"sqlite:///{folder / 'bulkops.db'}"
    store = Store(url)
    store.migrate()
    store.dispose()
    yield from start_api(
        Settings(database_url=url, data_dir=folder / "data", max_file_bytes=100_000),
        worker=False,
    )


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    # The same examples every run: a failure is a finding to fix, never a flaky red build.
    # (Random runs also meet schemathesis' own false positives, e.g. a negative ``q={}``
    # that serialises to the valid ``q=``.)
    derandomize=True,
)
def test_the_api_does_what_its_document_says(case: Any, live: Api) -> None:
    case.call_and_validate(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.tokens['admin']}"},
        checks=EVERY_CHECK,
        timeout=10,
    )
