"""Shared fixtures: real SQLite files and a real PostgreSQL server (never mocks).

Each PostgreSQL test gets its own database cloned from a migrated template, so tests are
isolated and fast. ``BULKOPS_TEST_PG`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432``)
names the server; CI requires it (``BULKOPS_REQUIRE_PG=1`` turns a missing server into a failure).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkops.config import Settings
from bulkops.engine import Context, create_organization
from bulkops.store import Store

PG_SERVER = os.environ.get("BULKOPS_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_APP_ROLE = "bulkops_test_app"
"""The login role the store and engine tests connect as: a member of ``bulkops_app`` that owns
nothing and cannot bypass row-level security (the migrations run as the server's superuser)."""


def pg_url(database: str, *, user: str | None = None) -> str:
    """A SQLAlchemy URL on the test server, as ``user`` (default: the server URL's user)."""
    from sqlalchemy.engine import make_url

    url = make_url(PG_SERVER).set(database=database)
    if user is not None:
        url = url.set(username=user, password=None)
    return url.render_as_string(hide_password=False)


def _ensure_app_role(admin: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (PG_APP_ROLE,)).fetchone():
            return
        # Another test worker may make it meanwhile.
        with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            conn.execute(
                f"CREATE ROLE {PG_APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                "NOCREATEROLE IN ROLE bulkops_app"
            )


def _pg_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_SERVER.replace("+psycopg", "") + "/postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str | None]:
    """A migrated template database on the real server, or None when there is no server."""
    if not _pg_available():
        if os.environ.get("BULKOPS_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_SERVER}")
        yield None
        return
    import psycopg

    name = f"bulkops_tpl_{uuid.uuid4().hex[:8]}"
    admin = PG_SERVER.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    store = Store(f"{PG_SERVER}/{name}")
    store.migrate()
    store.dispose()
    _ensure_app_role(admin)
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bulkops.db'}"
        store = Store(url)
        store.migrate()
        store.dispose()
        yield url
        return
    yield from cloned_database(request.getfixturevalue("pg_template"), "bulkops_t")


def cloned_database(template: str | None, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database cloned from the migrated template (app-role URL), dropped
    afterwards; skips when there is no server (a failure in CI, see ``pg_template``)."""
    if template is None:
        pytest.skip("PostgreSQL server not reachable (CI sets BULKOPS_REQUIRE_PG=1)")
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = PG_SERVER.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield pg_url(name, user=PG_APP_ROLE)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    store = Store(settings.database_url)
    yield Context(store, settings)
    store.dispose()


@pytest.fixture
def org_id(ctx: Context) -> int:
    return create_organization(ctx.store, "acme", "Acme")


@contextlib.contextmanager
def owner_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database and the URL of its owner (on PostgreSQL not a superuser, so that
    FORCE ROW LEVEL SECURITY applies to the migrations as in production)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.db'}"
        return
    if request.getfixturevalue("pg_template") is None:
        pytest.skip("PostgreSQL server not reachable")
    import psycopg

    tag = uuid.uuid4().hex[:8]
    owner, database = f"bulkops_t_owner_{tag}", f"bulkops_t_mig_{tag}"
    admin = PG_SERVER.replace("+psycopg", "") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD \'pw\'')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    try:
        yield pg_url(database).replace("postgres@", f"{owner}:pw@", 1)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')
