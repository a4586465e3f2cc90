"""The schema has one truth: the migrations, the SQLAlchemy tables and the entity specs agree.

``bulkops.store.tables`` is what the code queries; the Alembic migrations are what databases
have. Autogenerate's comparison between a freshly migrated database and the metadata must find
nothing, on SQLite and on PostgreSQL. The entity specs' length limits must fit the columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Integer, MetaData, Numeric, String, Text, create_engine
from sqlalchemy.engine import Connection

from bulkops.entities import MAX_INT, SPECS, spec_for
from bulkops.entities.validation import MAX_PRICE_WHOLE_DIGITS
from bulkops.store import tables


@pytest.fixture
def migrated(database_url: str) -> Iterator[Connection]:
    """A connection to a database that ``Store.migrate()`` brought to the newest revision."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def _differences(connection: Connection, metadata: MetaData) -> list[Any]:
    # Types and server defaults are compared too (autogenerate can skip them). Row-level
    # security policies, roles and grants (PostgreSQL, migration 0002) are outside what
    # autogenerate looks at, so nothing needs to be ignored here; tests/integration/test_postgres.py
    # checks those. Alembic leaves out its own alembic_version table.
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    found = list(compare_metadata(context, metadata))
    if connection.dialect.name == "sqlite":
        # These keep NO ACTION on SQLite, where the metadata's RESTRICT is PostgreSQL's
        # (migration 0010): the drop and re-add of each, and nothing else, are expected.
        fks = [d for d in found if isinstance(d, tuple) and d[0] in ("add_fk", "remove_fk")]
        named = sorted((d[0], d[1].name) for d in fks)
        assert named == sorted(
            (kind, name) for name in tables.RESTRICTED_ON_POSTGRESQL
            for kind in ("add_fk", "remove_fk")
        ), named
        found = [d for d in found if d not in fks]
    return found


def test_migrated_database_matches_the_tables(migrated: Connection) -> None:
    assert _differences(migrated, tables.metadata) == []


def test_the_comparison_would_see_a_drift(migrated: Connection) -> None:
    # Guards the test above against comparing nothing: a column narrower in the metadata
    # than in the migrations must show up.
    drifted = MetaData(naming_convention=tables.metadata.naming_convention)
    for table in tables.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["products"].c.category.type = String(99)
    differences = _differences(migrated, drifted)
    assert [d[0][0] if isinstance(d, list) else d[0] for d in differences] == ["modify_type"]


def _entity_fields() -> list[tuple[str, str]]:
    return [(entity.value, f.name) for entity, spec in SPECS.items() for f in spec.fields]


@pytest.mark.parametrize(("entity", "name"), _entity_fields())
def test_every_field_fits_its_column(entity: str, name: str) -> None:
    field = spec_for(entity).field(name)
    column = tables.ENTITY_TABLES[entity].c[name]
    if field.kind in ("text", "email"):
        assert field.max_length is not None, "text needs a limit: the rule is checked at the door"
        if isinstance(column.type, Text):
            # Unbounded column: the limit is a product rule, not a storage one.
            return
        # A VARCHAR column must be exactly as wide as the rule: wider hides a rule that was
        # narrowed by mistake, narrower makes valid values fail on PostgreSQL (and be stored
        # anyway on SQLite, which ignores the length).
        assert isinstance(column.type, String)
        assert column.type.length == field.max_length
    elif field.kind == "decimal":
        assert isinstance(column.type, Numeric)
        assert column.type.precision is not None and column.type.scale == 2
        assert column.type.precision - column.type.scale == MAX_PRICE_WHOLE_DIGITS
    else:
        assert field.kind == "int"
        # BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite: both hold MAX_INT.
        assert isinstance(column.type, Integer)
        assert MAX_INT < 2**31
