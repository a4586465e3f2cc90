"""PostgreSQL only: row-level security, the roles, the COPY staging path, events across processes.

Each test gets a database cloned from the migrated template and connects as the test
application role (a member of ``bulkops_app`` that owns nothing), like the rest of the suite.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bench.generate import references_needed, write_file
from typer.testing import CliRunner

from bulkops.cli import app
from bulkops.config import Settings
from bulkops.engine import (
    Context,
    OperationConfig,
    authenticate_password,
    authenticate_token,
    create_operation,
    create_organization,
    create_token,
    create_user,
    execute,
)
from bulkops.entities import SPECS
from bulkops.model import EntityType, OperationType, Role
from bulkops.store import DuplicateRow, Store
from bulkops.store.tables import TENANT_TABLES
from tests.conftest import PG_APP_ROLE, pg_url

TENANT = [t.name for t in TENANT_TABLES]
FIELDS = ("sku", "name", "description", "category", "price")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a fresh database cloned from the migrated template."""
    template = request.getfixturevalue("pg_template")
    if template is None:
        pytest.skip("PostgreSQL server not reachable (CI sets BULKOPS_REQUIRE_PG=1)")
    name = f"bulkops_t_{uuid.uuid4().hex[:10]}"
    admin = _libpq(pg_url("postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(pg: str) -> Iterator[Store]:
    s = Store(pg_url(pg, user=PG_APP_ROLE))
    yield s
    s.dispose()


@pytest.fixture
def orgs(store: Store) -> tuple[int, int]:
    """Two organizations, each with one product, one user and one token."""
    a = create_organization(store, "org-a", "A")
    b = create_organization(store, "org-b", "B")
    for org, sku in ((a, "A-1"), (b, "B-1")):
        with store.transaction(org, write=True) as tx:
            tx.rows.insert("products", FIELDS, [(sku, f"Product {sku}", None, None, "1.00")])
        user = create_user(store, org, f"admin@{sku.lower()}.example", Role.ADMIN, "x" * 12)
        create_token(store, org, user, "sync")
    return a, b


def _as_app(pg: str) -> psycopg.Connection[Any]:
    return psycopg.connect(_libpq(pg_url(pg, user=PG_APP_ROLE)))


def _products(store: Store, org: int) -> list[tuple[Any, ...]]:
    with store.transaction(org) as tx:
        return tx.rows.iter("products", FIELDS)


# -- the catalog ------------------------------------------------------------------------------


def test_every_tenant_table_forces_row_level_security_with_four_policies(pg: str) -> None:
    with _as_app(pg) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND c.relnamespace = "
            "current_schema()::regnamespace",
            (TENANT,),
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(TENANT)
        assert all(r[1] and r[2] for r in rows), rows
        policies = conn.execute(
            "SELECT tablename, cmd, roles, qual, with_check FROM pg_policies "
            "WHERE tablename = ANY(%s) AND roles = '{public}'",
            (TENANT,),
        ).fetchall()
    for table in TENANT:
        commands = {p[1]: p for p in policies if p[0] == table}
        assert set(commands) == {"SELECT", "INSERT", "UPDATE", "DELETE"}, table
        for policy in commands.values():
            for expression in policy[3:]:
                assert expression is None or "app.current_org" in expression


def test_the_application_role_owns_nothing_and_cannot_bypass_rls(store: Store, pg: str) -> None:
    with _as_app(pg) as conn:
        user, superuser, bypass = conn.execute(
            "SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone() or (None, None, None)
        owned = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles "
            "WHERE rolname = current_user) AND relpersistence <> 't'"
        ).fetchone()
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proowner = (SELECT oid FROM pg_roles "
            "WHERE rolname = current_user)"
        ).fetchone()
    assert (user, superuser, bypass) == (PG_APP_ROLE, False, False)
    assert owned == (0,) and functions == (0,)
    # The store's own sessions run as that role too.
    with store.system() as sa_conn:
        assert sa_conn.exec_driver_sql("SELECT current_user").scalar() == PG_APP_ROLE


def test_a_superuser_url_drops_to_the_application_role(pg: str) -> None:
    privileged = Store(pg_url(pg))
    try:
        with privileged.system() as conn:
            assert conn.exec_driver_sql("SELECT current_user").scalar() == "bulkops_app"
            assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar() == 0
    finally:
        privileged.dispose()


def test_only_a_bulk_chunk_commits_without_waiting_for_the_disk(store: Store) -> None:
    """A chunk's transaction defers its WAL flush (the operation's last commit makes it
    durable); every other transaction waits as usual. Both are scoped to the organization."""
    org = create_organization(store, "org-a", "A")
    for bulk, expected in ((True, "off"), (False, "on")):
        with store.transaction(org, write=True, bulk=bulk) as tx:
            shown = tx.conn.exec_driver_sql(
                "SELECT current_setting('synchronous_commit'), current_setting('app.current_org')"
            ).one()
            assert tuple(shown) == (expected, str(org))
    with store.transaction(org) as tx:  # SET LOCAL: nothing outlives the chunk
        assert tx.conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"


# -- fail closed, and one organization never sees another ---------------------------------------


def test_without_an_organization_every_tenant_table_is_empty_and_inserts_fail(
    store: Store, orgs: tuple[int, int], pg: str, tmp_path: Path
) -> None:
    a, _ = orgs
    execute_import(store, a, "sku,name\nA-2,Two\n", tmp=tmp_path)
    with _as_app(pg) as conn:
        for setting in (None, ""):
            if setting is not None:
                conn.execute("SELECT set_config('app.current_org', '', false)")
            for table in TENANT:
                count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
                assert count == (0,), (table, setting)
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO products (organization_id, sku, name) VALUES (%s, 'X', 'x')", (a,)
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO operation_events (organization_id, operation_id, event, data, "
                "created_at) VALUES (%s, 'x', 'progress', '{}', now())",
                (a,),
            )
    # The data is there all the same, for its organization.
    assert [r[1] for r in _products(store, a)] == ["A-1", "A-2"]


def test_organization_a_cannot_see_or_change_the_rows_of_b(
    store: Store, orgs: tuple[int, int], pg: str
) -> None:
    a, b = orgs
    b_row = _products(store, b)[0]
    b_id = b_row[0]
    with _as_app(pg) as conn:
        conn.execute("SELECT set_config('app.current_org', %s, true)", (str(a),))
        assert [r[0] for r in conn.execute("SELECT sku FROM products")] == ["A-1"]
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM api_tokens").fetchone() == (1,)
        assert conn.execute("UPDATE products SET name = 'x' WHERE id = %s", (b_id,)).rowcount == 0
        assert conn.execute("DELETE FROM products WHERE organization_id = %s", (b,)).rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO products (organization_id, sku, name) VALUES (%s, 'B-9', 'x')", (b,)
            )
        conn.rollback()
        conn.execute("SELECT set_config('app.current_org', %s, true)", (str(a),))
        # ON CONFLICT on B's key: the proposed row is B's, so the insert policy refuses it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO products (organization_id, sku, name) VALUES (%s, 'B-1', 'x') "
                "ON CONFLICT (organization_id, sku) DO UPDATE SET name = 'hacked'",
                (b,),
            )
        conn.rollback()
        conn.execute("SELECT set_config('app.current_org', %s, true)", (str(a),))
        # ON CONFLICT on B's id with an A row: the existing row fails the update policy.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO products (id, organization_id, sku, name) VALUES (%s, %s, 'A-9', "
                "'x') ON CONFLICT (id) DO UPDATE SET name = 'hacked'",
                (b_id, a),
            )
        conn.rollback()
    # Through the store: the batch path (8 rows and more) and the per-record path.
    many = [(b_id, ("B-1", "hacked", None, None, "9.99"))] + [
        (b_id + 1000 + i, (f"N-{i}", "n", None, None, "1.00")) for i in range(9)
    ]
    with store.transaction(a, write=True) as tx:
        tx.rows.update("products", FIELDS, many)
        tx.rows.update("products", FIELDS, many[:1])
        tx.rows.delete("products", [b_id])
        with pytest.raises(DuplicateRow), tx.savepoint():
            tx.rows.insert("products", FIELDS, [v for _, v in many], ids=[i for i, _ in many])
        with pytest.raises(DuplicateRow), tx.savepoint():
            tx.rows.insert("products", FIELDS, [many[0][1]], ids=[b_id])
        assert tx.rows.fetch_existing("products", ("sku",), FIELDS, [("B-1",)]) == {}
        assert tx.rows.by_id("products", FIELDS, [b_id]) == {}
    assert _products(store, b) == [b_row]


def test_a_pooled_connection_never_carries_one_organization_into_another(
    store: Store, orgs: tuple[int, int]
) -> None:
    a, b = orgs
    pids = []
    for org, expected in ((a, ["A-1"]), (b, ["B-1"]), (a, ["A-1"])):
        with store.transaction(org) as tx:
            pids.append(tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            assert [r[1] for r in tx.rows.iter("products", FIELDS)] == expected
        with store.system() as conn:  # the same connection, no organization: nothing at all
            pids.append(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
            assert conn.exec_driver_sql("SELECT count(*) FROM products").scalar() == 0
            assert conn.exec_driver_sql(
                "SELECT current_setting('app.current_org', true)"
            ).scalar() in (None, "")
    assert len(set(pids)) == 1


# -- the engine through the fast path ---------------------------------------------------------


def execute_import(
    store: Store, org: int, content: str, *, tmp: Path, chunk_size: int = 1000
) -> dict[str, Any]:
    folder = tmp / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / "products.csv"
    path.write_text(content, encoding="utf-8")
    ctx = Context(store, Settings(database_url=store.url, data_dir=folder / "data"))
    op = create_operation(
        ctx,
        org,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(chunk_size=chunk_size),
        source=path,
        file_name=path.name,
    )
    return execute(ctx, org, op.id)


def test_staged_inserts_return_ids_in_order_and_reject_a_taken_key(
    store: Store, orgs: tuple[int, int]
) -> None:
    a, _ = orgs
    rows = [(f"S-{i:03d}", f"n{i}", "d, \"q\"\n\\x", None, f"{i + 1}.50") for i in range(50)]
    rows.reverse()  # ids follow the order given, not the key order
    with store.transaction(a, write=True) as tx:
        ids = tx.rows.insert("products", FIELDS, rows)
        assert ids == sorted(ids) and len(set(ids)) == 50
        stored = tx.rows.by_id("products", FIELDS, ids)
        assert [stored[i] for i in ids] == rows
        taken = [*rows[:10], ("A-1", "again", None, None, "1.00")]
        with pytest.raises(DuplicateRow), tx.savepoint():
            tx.rows.insert("products", FIELDS, taken)
        with pytest.raises(DuplicateRow, match="uq_products_key"), tx.savepoint():
            tx.rows.insert("products", FIELDS, taken[-1:])
    assert len(_products(store, a)) == 51


def test_one_transaction_per_chunk(store: Store, orgs: tuple[int, int], tmp_path: Path) -> None:
    a, _ = orgs
    content = "sku,name,price\n" + "".join(f"C-{i:04d},Name {i},{i + 1}.00\n" for i in range(60))
    final = execute_import(store, a, content, tmp=tmp_path, chunk_size=20)
    assert final.status == "completed" and final.created_records == 60
    with store.transaction(a) as tx:
        xids = tx.conn.exec_driver_sql(
            "SELECT xmin::text FROM operation_chunks WHERE operation_id = %s", (final.id,)
        ).all()
        # One audit batch per chunk; its records, each data row exactly once.
        batches = tx.conn.exec_driver_sql(
            "SELECT record_count FROM operation_changes WHERE operation_id = %s ORDER BY id",
            (final.id,),
        ).all()
        records, distinct = tx.conn.exec_driver_sql(
            "SELECT count(*), count(DISTINCT r.value) FROM operation_changes c "
            "CROSS JOIN LATERAL jsonb_array_elements(c.data::jsonb -> 'rows') r "
            "WHERE c.operation_id = %s",
            (final.id,),
        ).one()
    # Three ledger rows written by three different (committed) transactions, not savepoints
    # of one long transaction.
    assert len({x[0] for x in xids}) == 3
    assert [b[0] for b in batches] == [20, 20, 20]
    assert records == distinct == 60


@pytest.mark.parametrize("step", [1, 3])
def test_new_rows_take_their_ids_in_file_order_and_their_audit_names_them(
    store: Store, pg: str, tmp_path: Path, step: int
) -> None:
    # An import into an empty table reserves its ids ahead, a chunk at a time. A sequence
    # that does not step by one (as one shared with another session would not) gives ids
    # that are not consecutive: they still follow the file, and the audit holds them.
    org = create_organization(store, "org-c", "C")
    with psycopg.connect(_libpq(pg_url(pg)), autocommit=True) as conn:
        conn.execute(f"ALTER SEQUENCE products_id_seq INCREMENT BY {step}")
    skus = [f"C-{(i * 37) % 61:04d}" for i in range(60)]
    # Every tenth record invalid: the id reserved for it is left unused.
    prices = ["abc" if i % 10 == 9 else "2.50" for i in range(60)]
    content = "sku,name,price\n" + "".join(
        f"{sku},Name {sku},{price}\n" for sku, price in zip(skus, prices, strict=True)
    )
    final = execute_import(store, org, content, tmp=tmp_path, chunk_size=20)
    assert (final.created_records, final.failed_records) == (54, 6)
    valid = [(i + 2, sku) for i, sku in enumerate(skus) if prices[i] != "abc"]  # (row, sku)
    rows = _products(store, org)
    assert [r[1] for r in rows] == [sku for _, sku in valid]  # by id: the file's order
    ids = [r[0] for r in rows]
    assert all(later - earlier >= step for earlier, later in pairwise(ids))
    with store.transaction(org) as tx:
        audited = tx.audit.page(final.id, newest_first=False, limit=100)
    assert [(a["entity_id"], a["record_index"]) for a in audited] == [
        (row[0], record) for row, (record, _) in zip(rows, valid, strict=True)
    ]


@pytest.mark.parametrize("entity", [e.value for e in SPECS])
def test_the_rows_still_as_written_are_deleted_in_one_statement(
    store: Store, orgs: tuple[int, int], tmp_path: Path, entity: str
) -> None:
    # The rollback of an import compares each row with its after-image on the server: every
    # column type of every entity must cast and compare there, or the rollback would quietly
    # take the slow path.
    a, _ = orgs
    ctx = Context(store, Settings(database_url=store.url, data_dir=tmp_path / "data"))
    needed = references_needed(entity, 20)
    for parent in ("products", "warehouses"):
        if needed[parent]:
            path = tmp_path / f"{parent}.csv"
            write_file(parent, path, needed[parent])
            _import(ctx, a, parent, path)
    path = tmp_path / f"{entity}.csv"
    write_file(entity, path, 20)
    _import(ctx, a, entity, path)
    fields = SPECS[EntityType(entity)].field_names
    with store.transaction(a, write=True) as tx:
        rows = [(r[0], tuple(r[1:])) for r in tx.rows.iter(entity, fields)]
        rows = rows[-20:]  # the fixture's own product comes first
        first = list(rows[0][1])
        # One value changed: a count grows by one, or a name gets a letter more.
        at = next(i for i, v in enumerate(first)
                  if isinstance(v, int) or (isinstance(v, str) and not v[:1].isdigit()))
        first[at] = first[at] + (1 if isinstance(first[at], int) else "x")
        changed = (rows[0][0], tuple(first))
        deleted = tx.rows.delete_unchanged(entity, fields, [changed, *rows[1:]])
        assert deleted == {r[0] for r in rows[1:]}
        assert [r[0] for r in tx.rows.iter(entity, fields)][-1:] == [rows[0][0]]


def _import(ctx: Context, org: int, entity: str, path: Path) -> None:
    op = create_operation(
        ctx, org, operation_type=OperationType.IMPORT, entity_type=EntityType(entity),
        config=OperationConfig(), source=path, file_name=path.name,
    )
    assert execute(ctx, org, op.id).created_records > 0


# -- progress events across processes ------------------------------------------------------------


def test_a_listener_wakes_up_for_an_event_written_by_another_process(
    store: Store, orgs: tuple[int, int], tmp_path: Path
) -> None:
    a, _ = orgs
    op_id = str(uuid.uuid4())
    with store.transaction(a, write=True) as tx:
        tx.operations.insert(
            {
                "id": op_id,
                "operation_type": "import",
                "entity_type": "products",
                "status": "processing",
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                "config": "{}",
                "results": "{}",
            }
        )
    script = (
        "import sys\n"
        "from bulkops.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "with s.transaction(int(sys.argv[2]), write=True) as tx:\n"
        "    tx.events.add(sys.argv[3], 'progress', {'processed_records': 7})\n"
        "s.dispose()\n"
    )
    woke: list[bool] = []
    with store.listen_events() as waiter:
        thread = threading.Thread(target=lambda: woke.append(waiter.wait(op_id, 30)))
        thread.start()
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", script, store.url, str(a), op_id], check=True, timeout=60
        )
        thread.join(timeout=30)
        assert woke == [True] and time.monotonic() - started < 30
        assert waiter.wait(op_id, 0.2) is False  # nothing new
    with store.transaction(a) as tx:
        assert [e["data"] for e in tx.events.after(op_id, 0)] == [{"processed_records": 7}]


# -- roles on a fresh server, login and tokens through the definer functions -------------------


def test_init_sets_up_both_roles_and_the_application_works_as_the_app_role(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.getfixturevalue("pg_template") is None:
        pytest.skip("PostgreSQL server not reachable")
    tag = uuid.uuid4().hex[:8]
    owner, user, database = f"bulkops_t_owner_{tag}", f"bulkops_t_user_{tag}", f"bulkops_t_{tag}"
    app_url = pg_url(database).replace("postgres@", f"{user}:apppw@", 1)
    owner_url = pg_url(database).replace("postgres@", f"{owner}:ownerpw@", 1)
    admin = _libpq(pg_url("postgres"))
    env = {
        "BULKOPS_DATABASE_URL": app_url,
        "BULKOPS_DATABASE_OWNER_URL": owner_url,
        "BULKOPS_DATA_DIR": str(tmp_path / "data"),
    }
    runner = CliRunner()
    try:
        result = runner.invoke(app, ["init", "--admin-url", pg_url("postgres")], env=env)
        assert result.exit_code == 0, result.output
        password = result.output.split("store it now): ")[1].split()[0]
        again = runner.invoke(app, ["init", "--admin-url", pg_url("postgres")], env=env)
        assert again.exit_code == 0, again.output
        with psycopg.connect(admin) as conn:
            roles = dict(
                conn.execute(
                    "SELECT rolname, rolsuper OR rolbypassrls FROM pg_roles "
                    "WHERE rolname = ANY(%s)",
                    ([owner, user],),
                ).fetchall()
            )
        assert roles == {owner: False, user: False}
        with psycopg.connect(_libpq(owner_url)) as conn:
            owners = conn.execute(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                "WHERE relnamespace = 'public'::regnamespace"
            ).fetchall()
        assert owners == [(owner,)]
        store = Store(app_url)
        try:
            principal = authenticate_password(store, "admin@example.com", password)
            token = create_token(store, principal.org_id, principal.user_id or 0, "ci")
            assert authenticate_token(store, token).email == "admin@example.com"
            final = execute_import(
                store, principal.org_id, "sku,name\nP-1,One\n", tmp=tmp_path
            )
            assert final.status == "completed" and final.created_records == 1
            with store.system() as conn:
                assert conn.exec_driver_sql("SELECT current_user").scalar() == user
                assert conn.exec_driver_sql("SELECT count(*) FROM users").scalar() == 0
        finally:
            store.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{user}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def test_a_page_in_id_order_walks_the_primary_key_even_with_stale_statistics(
    store: Store, orgs: tuple[int, int]
) -> None:
    """Right after a bulk import the statistics say the table is nearly empty; a page of an
    export must still read its page through the primary key, not every row of the
    organization sorted again (which made a 1M-row export take 70 s)."""
    org = orgs[0]
    with store.transaction(org, write=True) as tx:
        tx.rows.insert(
            "products", FIELDS, [(f"P-{i:06d}", "Bulk", None, None, "1.00") for i in range(20_000)]
        )
    with store.transaction(org) as tx:
        tx.dialect.walk_by_id(tx.conn)
        plan = "\n".join(
            row[0]
            for row in tx.conn.exec_driver_sql(
                "EXPLAIN SELECT id, sku FROM products WHERE organization_id = %s AND id > 0 "
                "ORDER BY id LIMIT 5000",
                (org,),
            )
        )
        page = tx.rows.iter("products", FIELDS, after_id=0, limit=5000)
    assert "Index Scan using pk_products" in plan and "Sort" not in plan, plan
    assert len(page) == 5000 and page[0][1] == "A-1"


def test_a_batch_update_probes_the_primary_key_even_with_stale_statistics(
    store: Store, orgs: tuple[int, int]
) -> None:
    """An update of a chunk right after a bulk import (statistics say the table is nearly
    empty) must find each row by its primary key, not scan the whole organization for
    every chunk (which made it take 31 ms a chunk instead of 12)."""
    from bulkops.store import postgres

    org = orgs[0]
    with store.transaction(org, write=True) as tx:
        ids = tx.rows.insert(
            "products", FIELDS, [(f"U-{i:06d}", "Bulk", None, None, "1.00") for i in range(20_000)]
        )
    fields = ["name", "price"]
    rows = [(i, ("Renamed", "2.00")) for i in ids[5000:6000]]
    with store.transaction(org, write=True) as tx:
        values = postgres.columns([(i, *v) for i, v in rows], len(fields) + 1)
        plan = "\n".join(
            row[0]
            for row in tx.conn.exec_driver_sql(
                "EXPLAIN " + postgres.update_statement("products", fields), (*values, org)
            )
        )
        tx.rows.update("products", ["sku", *fields], [(i, ("x", *v)) for i, v in rows])
    assert "Index Scan using pk_products" in plan and "Bitmap" not in plan, plan
    assert "Seq Scan on products" not in plan, plan
    with store.transaction(org) as tx:
        stored = tx.rows.by_id("products", FIELDS, ids[4999:6001])
    assert stored[ids[5000]][1:] == ("Renamed", None, None, "2.00")
    assert stored[ids[5999]][1] == "Renamed"
    assert stored[ids[4999]][1] == stored[ids[6000]][1] == "Bulk"


def test_a_batch_holding_the_column_marks_is_written_exactly(
    store: Store, orgs: tuple[int, int]
) -> None:
    """A chunk travels as one text per column, joined by U+001F with NULL as U+001E. A value
    holding one of them (a row written outside bulkops, restored by a rollback) must not shift
    the columns: such a batch is written with plain statements."""
    org = orgs[0]
    rows = [(f"M-{i:03d}", f"n{i}", None, "", f"{i + 1}.00") for i in range(10)]
    rows[3] = ("M-003", "a\x1fb", "\x1e", None, "4.00")
    with store.transaction(org, write=True) as tx:
        ids = tx.rows.insert("products", FIELDS, rows)
        stored = tx.rows.by_id("products", FIELDS, ids)
        assert [stored[i] for i in ids] == rows
        changed = [
            (i, (sku, "x\x1ey", "d\x1f", None, "9.00"))
            for i, (sku, *_) in zip(ids, rows, strict=True)
        ]
        tx.rows.update("products", FIELDS, changed)
        stored = tx.rows.by_id("products", FIELDS, ids)
    assert [stored[i] for i in ids] == [v for _, v in changed]


@pytest.mark.parametrize(
    "values",
    [
        ["SKU-1", "sku-2", "Ünïcode ✓", "with, comma"],
        ["a\x1fb", "c"],  # a value holding the separator: the list goes as it is
        [""],  # one empty value, which string_to_array would drop
        ["", "x", ""],
        [7, 2**40, 0],
    ],
)
def test_an_array_of_keys_reaches_the_server_exactly(pg: str, values: list[Any]) -> None:
    from bulkops.store.postgres import array_param

    sql, param = array_param(values)
    with psycopg.connect(_libpq(pg_url(pg))) as conn:
        got = conn.execute(f"SELECT {sql}", (param,)).fetchone()
    assert got is not None and got[0] == values


def test_rows_are_found_by_keys_the_text_split_could_not_carry(
    store: Store, orgs: tuple[int, int]
) -> None:
    """Keys written outside bulkops may hold the separator, or be empty: a chunk's look-up of
    its current rows still finds exactly theirs (the text split would have shifted or lost
    them)."""
    org = orgs[0]
    odd = ["a\x1fb", "", "plain"]
    with store.transaction(org, write=True) as tx:
        ids = tx.rows.insert("products", FIELDS, [(k, "n", None, None, "1.00") for k in odd])
        for wanted in (odd, [""], ["a\x1fb"], ["plain", "missing"]):
            found = tx.rows.fetch_existing("products", ("sku",), FIELDS, [(k,) for k in wanted])
            assert {k[0]: v[0] for k, v in found.items()} == {
                k: ids[odd.index(k)] for k in wanted if k in odd
            }
