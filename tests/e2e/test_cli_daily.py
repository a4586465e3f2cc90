"""The command line as people use it every day (CONTRACT section 8): short ids, a history
that fits 80 columns or pipes as TSV, filters that say what is valid, a missing database
that is not created, account commands, and a "Queued" that names what it waits for.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from bench.generate import write_file

from bulkops.config import Settings
from bulkops.engine import (
    Context,
    OperationConfig,
    authenticate_password,
    close_context,
    create_operation,
    get_operation,
    open_context,
    release_lease,
    resume_orphaned,
)
from bulkops.engine.scheduling import try_start
from bulkops.errors import AuthenticationFailed
from bulkops.model import EntityType, OperationStatus, OperationType, Outcome
from tests.e2e.test_cli import PRODUCTS, WITH_ERRORS, Cli, bulkops_executable

LONG_NAME = "<img src=x> spring catalogue for every warehouse of the north region, final.csv"


@pytest.fixture
def ready(tmp_path: Path) -> Cli:
    """A database after ``bulkops init`` (one organization, one admin)."""
    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    return cli


def _context(cli: Cli) -> Context:
    return open_context(Settings(database_url=cli.url, data_dir=cli.tmp_path / "data"))


def _run_in_terminal(
    args: list[str],
    env: dict[str, str],
    columns: int = 80,
    *,
    reply: tuple[bytes, bytes] | None = None,
) -> tuple[str, int]:
    """Run the real ``bulkops`` with its output on a pseudo-terminal ``columns`` wide; with
    ``reply`` (prompt, answer), type the answer once the prompt shows. Returns the screen
    (colours and cursor moves left out) and the exit code."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(bulkops_executable()), *args],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
        env={**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm"},
    )
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            screen += data
            if reply is not None and reply[0] in screen:
                os.write(master, reply[1])
                reply = None
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(master)
    text = screen.decode("utf-8", "replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text), code


def test_history_fits_80_columns_on_a_terminal(ready: Cli) -> None:
    ok = ready.json("import", "products", str(ready.file(LONG_NAME, PRODUCTS)))
    failed = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    exported = ready.json("export", "products", "-o", str(ready.tmp_path / "out.csv"))
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    screen, code = _run_in_terminal(["--database-url", ready.url, "history"], env)
    assert code == 0, screen

    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), screen
    assert len(lines) == 4, screen  # header + one line per operation
    assert lines[0].split() == ["id", "outcome", "operation", "file", "counts", "when"]
    # An export counts the rows it wrote.
    assert lines[1].startswith(exported["id"][:8]) and " 4 rows " in lines[1], lines[1]
    newest, oldest = lines[2], lines[3]
    assert newest.startswith(failed["id"][:8]) and "with errors" in newest
    assert "1 new · 2 failed" in newest
    assert oldest.startswith(ok["id"][:8]) and "succeeded" in oldest
    assert "<img src=x> spring" in oldest and "…" in oldest  # as uploaded, cut to fit
    assert ok["id"] not in screen  # short ids only


def test_history_cuts_counts_only_where_the_file_names_cannot_give_them_room(ready: Cli) -> None:
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    def history() -> list[str]:
        screen, code = _run_in_terminal(["--database-url", ready.url, "history"], env)
        assert code == 0, screen
        lines = [line for line in screen.splitlines() if line.strip()]
        assert all(len(line) <= 80 for line in lines), screen
        return lines

    short = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    assert ready.json("rollback", short["id"])["status"] == "rolled_back"
    # Short file names leave the counts room to be whole.
    (line,) = history()[1:]
    assert "e.csv" in line and "1 new · 1 undone · 2 failed" in line, line

    long = ready.json("import", "products", str(ready.file(LONG_NAME, WITH_ERRORS)))
    assert ready.json("rollback", long["id"])["status"] == "rolled_back"
    # A long one takes what the counts do not need of their 22 characters, cut to fit.
    for line in history()[1:]:
        assert "1 new · 1 undone · 2 …" in line, line
    assert "<img src=x> s…" in history()[1]


def test_a_rollback_with_a_conflict_on_a_terminal_counts_what_it_undid(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))
    sku = PRODUCTS.splitlines()[1].split(",")[0]
    later = ready.json("update", "products", str(ready.file("u.csv", f"sku,name\n{sku},New\n")))
    assert later["updated_records"] == 1
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    screen, code = _run_in_terminal(["--database-url", ready.url, "rollback", op["id"]], env)

    assert code == 1, screen  # a conflict is left
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines), screen
    # The bar counts the records restored and the conflict, not the import's counters.
    assert any(line.startswith("rollback") and "✓2 ✗1" in line for line in lines), screen
    assert "2 rolled back, 1 conflict" in " ".join(screen.split())
    assert f"bulkops errors {op['id'][:8]} --conflicts -o conflicts.csv" in screen


def test_show_fits_80_columns_and_keeps_every_value_whole(ready: Cli) -> None:
    # A mapping longer than a line: it wraps between its columns too.
    renamed = WITH_ERRORS.replace(
        "sku,name,description", "Item number,Product name,Long description", 1
    )
    op = ready.json(
        "import", "products", str(ready.file(LONG_NAME, renamed)),
        "--map", "Item number=sku", "--map", "Product name=name",
        "--map", "Long description=description",
    )
    assert len(json.dumps({"mapping": op["config"]["mapping"]})) > 80 - 17
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    screen, code = _run_in_terminal(["--database-url", ready.url, "show", op["id"][:8]], env)

    assert code == 0, screen
    lines = screen.splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    # The checksum is on a line of its own where it does not fit beside its label: whole,
    # ready to copy; every other value starts in one column after the labels.
    assert "  " + op["file_sha256"] in lines, screen
    at = {line.split(":", 1)[0]: line for line in lines if re.match(r"^[a-z_0-9]+: ", line)}
    assert at["id"].endswith(op["id"]) and at["status"].endswith(" completed"), screen
    assert len({len(line) - len(line.split(":", 1)[1].lstrip()) for line in at.values()}) == 1
    assert at["cancelled_at"].endswith(" -"), screen  # not Python's None
    # The configuration wraps between its items, under the value column, never inside one.
    start = lines.index(at["config"])
    config = [lines[start], *lines[start + 1:]]
    config = config[: next(i for i, line in enumerate(config) if line.startswith("Operation"))]
    assert len(config) > 1 and all(line.startswith(" " * 17) for line in config[1:]), screen
    text = " ".join(line.split(":", 1)[1].strip() if i == 0 else line.strip()
                    for i, line in enumerate(config))
    assert json.loads(text) == op["config"], text


def test_errors_on_a_terminal_say_how_to_fix_them_in_a_file(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    screen, code = _run_in_terminal(["--database-url", ready.url, "errors", op["id"]], env)

    assert code == 0, screen
    assert screen.startswith("_row,_line,_errors,sku"), screen
    hint = " ".join(screen.split())
    assert (
        f"2 failed rows. To fix them in a spreadsheet: bulkops errors {op['id'][:8]} -o "
        "errors.xlsx (or errors.csv), then import that file as it is."
    ) in hint, screen


def test_history_through_a_pipe_is_tab_separated_with_a_header(ready: Cli) -> None:
    ok = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))

    result = ready("history")

    assert result.exit_code == 0
    header, row = result.stdout.splitlines()
    columns = header.split("\t")
    assert columns[:7] == [
        "id", "created_at", "operation_type", "entity_type", "status", "outcome", "file_name"
    ]
    values = dict(zip(columns, row.split("\t"), strict=True))
    assert values["id"] == ok["id"]  # the whole id, for scripts
    assert values["outcome"] == "succeeded"
    assert values["created_records"] == "3"


def test_unknown_filter_values_exit_2_listing_the_valid_ones(ready: Cli) -> None:
    for option, wrong, closest in (
        ("--status", "complted", "completed"),
        ("--type", "imprt", "import"),
        ("--entity", "product", "products"),
    ):
        result = ready("history", option, wrong)
        assert result.exit_code == 2, (option, result.output)
        assert f"'{wrong}' is not a valid {option} value" in result.output
        assert f"Did you mean '{closest}'?" in result.output
    assert "rolled_back" in ready("history", "--status", "foo").output  # the valid ones


def test_an_operation_is_named_by_a_unique_prefix_of_its_id(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))

    shown = ready.json("show", op["id"][:8])
    assert shown["id"] == op["id"]
    report = ready("errors", op["id"][:6])
    assert report.exit_code == 0

    too_short = ready("show", op["id"][:5])
    assert too_short.exit_code == 2 and "at least 6 characters" in too_short.output
    unknown = ready("show", "ffffff" if not op["id"].startswith("ffffff") else "eeeeee")
    assert unknown.exit_code == 2 and "No operation whose id starts with" in unknown.output

    rolled = ready.json("rollback", op["id"][:7])
    assert rolled["id"] == op["id"] and rolled["status"] == "rolled_back"


def test_an_ambiguous_prefix_lists_the_candidates(ready: Cli) -> None:
    ctx = _context(ready)
    org_id = ctx.store.accounts.list_organizations()[0]["id"]
    ids = [
        create_operation(
            ctx, org_id, operation_type=OperationType.EXPORT, entity_type=EntityType.PRODUCTS,
            config=OperationConfig(),
        ).id
        for _ in range(2)
    ]
    close_context(ctx)
    twins = ["abcdef01" + ids[0][8:], "abcdef02" + ids[1][8:]]
    with sqlite3.connect(ready.tmp_path / "x.db") as conn:
        for old, new in zip(ids, twins, strict=True):
            conn.execute("UPDATE operations SET id = ? WHERE id = ?", (new, old))

    ambiguous = ready("show", "abcdef")

    assert ambiguous.exit_code == 2
    assert "names several operations" in ambiguous.output
    assert twins[0] in ambiguous.output and twins[1] in ambiguous.output
    assert ready.json("show", "abcdef02")["id"] == twins[1]


def test_a_missing_database_is_reported_and_not_created(tmp_path: Path) -> None:
    env = {**os.environ, "BULKOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)
    (tmp_path / "p.csv").write_text(PRODUCTS, encoding="utf-8")

    for args in (["history"], ["import", "products", "p.csv"], ["user", "list"]):
        result = subprocess.run(
            [str(bulkops_executable()), *args], capture_output=True, text=True, env=env,
            cwd=tmp_path, timeout=120, check=False,
        )
        assert result.returncode == 2, (args, result.stderr)
        assert "There is no bulkops database at bulkops.db" in result.stderr
        assert "bulkops init" in result.stderr
        assert "no such table" not in result.stderr
        assert not (tmp_path / "bulkops.db").exists()


def test_version(tmp_path: Path) -> None:
    result = Cli(tmp_path)("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("bulkops ") and result.stdout.split()[1][0].isdigit()


def test_user_list_and_a_new_password_for_a_lost_one(ready: Cli) -> None:
    assert ready("user", "create", "ann@example.com", "--org", "default").exit_code == 0
    listed = ready("user", "list", "--json")
    assert [(u["email"], u["role"]) for u in json.loads(listed.stdout)] == [
        ("admin@example.com", "admin"),
        ("ann@example.com", "editor"),
    ]

    generated = ready("user", "passwd", "admin@example.com")
    assert generated.exit_code == 0
    password = generated.stdout.split("Password (shown once):")[1].split()[0]
    given = ready("user", "passwd", "ann@example.com", "--password-stdin",
                  input="a long enough secret\n")
    assert given.exit_code == 0 and "shown once" not in given.stdout

    ctx = _context(ready)
    try:
        assert authenticate_password(ctx.store, "admin@example.com", password).email
        assert authenticate_password(ctx.store, "ann@example.com", "a long enough secret")
        try:
            authenticate_password(ctx.store, "ann@example.com", "the old one")
            raise AssertionError("a wrong password was accepted")
        except AuthenticationFailed:
            pass
    finally:
        close_context(ctx)
    assert ready("user", "passwd", "nobody@example.com").exit_code == 2


def test_token_list_and_revoke(ready: Cli) -> None:
    none = ready("token", "list")
    assert none.exit_code == 0 and "No API tokens yet" in none.stdout, none.stdout
    assert "bulkops token create" in none.stdout
    assert json.loads(ready("token", "list", "--json").stdout) == []
    created = ready("token", "create", "--user", "admin@example.com", "--name", "nightly")
    token = created.stdout.strip()
    listed = json.loads(ready("token", "list", "--json").stdout)
    assert [(t["name"], t["user"], t["revoked_at"]) for t in listed] == [
        ("nightly", "admin@example.com", None)
    ]
    assert token not in ready("token", "list").stdout  # the secret is never shown again

    assert ready("token", "revoke", str(listed[0]["id"])).exit_code == 0

    listed = json.loads(ready("token", "list", "--json").stdout)
    assert listed[0]["revoked_at"] is not None
    assert ready("token", "revoke", "999").exit_code == 2


def test_queued_names_the_operation_it_waits_for_and_only_when_it_waits(ready: Cli) -> None:
    alone = ready("import", "products", str(ready.file("p.csv", PRODUCTS)))
    assert "Queued" not in alone.output

    ctx = _context(ready)
    org_id = ctx.store.accounts.list_organizations()[0]["id"]
    running = create_operation(
        ctx, org_id, operation_type=OperationType.IMPORT, entity_type=EntityType.PRODUCTS,
        config=OperationConfig(), source=ready.file("q.csv", PRODUCTS), file_name="q.csv",
    )
    # Another process runs it and holds its lease (for a minute).
    assert try_start(ctx.store, org_id, running.id, "other-host:1", 60.0,
                     status=OperationStatus.PROCESSING)
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    proc = subprocess.Popen(
        [str(bulkops_executable()), "--database-url", ready.url, "import", "products",
         str(ready.file("r.csv", PRODUCTS))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    while not any("Queued" in line for line in seen):
        line = proc.stderr.readline()
        assert line, f"the import ended without waiting: {seen}"
        seen.append(line)
    assert f"waits for operation {running.id[:8]} (running)" in seen[-1]

    release_lease(ctx, org_id, running.id, "other-host:1")  # that process is gone
    close_context(ctx)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, rest
    assert "Queued" not in rest  # said once


def _interrupted_import(ready: Cli, signals: int) -> tuple[subprocess.CompletedProcess[str], str]:
    """A real ``bulkops import`` of 100k products, sent SIGINT (as Ctrl-C sends it to the
    whole foreground process group) ``signals`` times once a few chunks are in."""
    source = ready.tmp_path / "big.csv"
    write_file("products", source, 100_000)
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    proc = subprocess.Popen(
        [str(bulkops_executable()), "--database-url", ready.url, "import", "products",
         str(source), "--chunk-size", "500"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(ready.tmp_path / "x.db", timeout=30) as conn:
            row = conn.execute("SELECT id, processed_records FROM operations").fetchone()
        if row and row[1] >= 5_000:
            break
        assert proc.poll() is None and time.monotonic() < deadline, "it ended before Ctrl-C"
        time.sleep(0.01)
    for _ in range(signals):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), str(row[0])


def test_ctrl_c_cancels_the_import_says_what_next_and_exits_130(ready: Cli) -> None:
    done, op_id = _interrupted_import(ready, signals=1)

    assert done.returncode == 130, done.stderr
    assert f"Interrupted: operation {op_id} is cancelled" in done.stderr
    assert f"bulkops rollback {op_id[:8]}" in done.stderr
    ctx = _context(ready)
    try:
        org_id = ctx.store.accounts.list_organizations()[0]["id"]
        op = get_operation(ctx, org_id, op_id)
        assert op.status is OperationStatus.CANCELLED and op.outcome is Outcome.CANCELLED
        assert 5_000 <= op.created_records < 100_000
        with ctx.store.transaction(org_id) as tx:
            assert tx.rows.count("products") == op.created_records  # nothing after the cancel
        # What the server's workers do every few seconds: a cancelled operation is not theirs.
        assert resume_orphaned(ctx, org_id) == []
        assert get_operation(ctx, org_id, op_id).status is OperationStatus.CANCELLED
    finally:
        close_context(ctx)
    # And with the server's own worker running (it polls twice a second and takes over the
    # lease of a dead process of this host at once): still cancelled, nothing more written.
    _serve_for(ready, seconds=6)
    ctx = _context(ready)
    try:
        again = get_operation(ctx, org_id, op_id)
        assert again.status is OperationStatus.CANCELLED
        assert again.processed_records == op.processed_records
        with ctx.store.transaction(org_id) as tx:
            assert tx.rows.count("products") == op.created_records
    finally:
        close_context(ctx)
    assert ready.json("rollback", op_id[:8])["status"] == "rolled_back"


def _serve_for(ready: Cli, *, seconds: float) -> None:
    """Run ``bulkops serve`` (with its embedded worker) on the database for a while."""
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(bulkops_executable()), "--database-url", ready.url, "serve", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        time.sleep(seconds)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGINT)
        _, log = proc.communicate(timeout=30)
    assert "worker started" in log, log


def test_a_second_ctrl_c_during_the_cancel_leaves_the_database_consistent(ready: Cli) -> None:
    done, op_id = _interrupted_import(ready, signals=3)

    assert done.returncode == 130, done.stderr
    ctx = _context(ready)
    try:
        org_id = ctx.store.accounts.list_organizations()[0]["id"]
        op = get_operation(ctx, org_id, op_id)
        assert op.status is OperationStatus.CANCELLED
        with ctx.store.transaction(org_id) as tx:
            assert tx.rows.count("products") == op.created_records
            assert sum(tx.ledger.committed(op_id, "apply").values()) == op.processed_records
    finally:
        close_context(ctx)


def test_serve_says_where_to_go_and_how_to_log_in(ready: Cli) -> None:
    env = {
        **os.environ,
        "BULKOPS_DATA_DIR": str(ready.tmp_path / "data"),
        "COLUMNS": "80",
        "TERM": "xterm",
    }
    env.pop("BULKOPS_DATABASE_URL", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(bulkops_executable()), "--database-url", ready.url, "serve", "--port", "0"],
        stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, close_fds=True, env=env,
    )
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 60
        while b"Stop with Ctrl-C" not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                screen += os.read(master, 65536)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        os.close(master)
    text = screen.decode().replace("\r\n", "\n")
    lines = text.splitlines()
    assert lines[0].startswith("bulkops is running: open http://127.0.0.1:"), text
    assert "Log in as admin@example.com" in text  # the admin `init` made
    assert "bulkops user passwd admin@example.com" in text and "/docs" in text
    assert all(len(line) <= 80 for line in lines), text


def test_history_filters_by_outcome_and_the_summary_says_it(ready: Cli) -> None:
    ok = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))
    failing = ready("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    checked = ready.json(
        "import", "products", str(ready.file("c.csv", PRODUCTS)), "--validate-only"
    )
    assert failing.exit_code == 1
    assert "completed with errors" in failing.stdout.splitlines()[0]

    def listed(*outcomes: str) -> set[str]:
        args = [a for o in outcomes for a in ("--outcome", o)]
        return {item["id"] for item in ready.json("history", *args)}

    with_errors = listed("completed_with_errors")
    assert len(with_errors) == 1 and ok["id"] not in with_errors
    assert listed("succeeded") == {ok["id"]}
    assert listed("checked") == {checked["id"]}
    assert listed("succeeded", "checked") == {ok["id"], checked["id"]}
    assert listed("rolled_back") == set()

    wrong = ready("history", "--outcome", "succeded")
    assert wrong.exit_code == 2
    assert "Did you mean 'succeeded'" in wrong.output and "completed_with_errors" in wrong.output


def test_cli_operations_record_who_started_them(ready: Cli) -> None:
    mine = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))
    assert re.fullmatch(r"cli:[^@\s]+@\S+", mine["actor"]), mine["actor"]
    assert mine["created_by"] is None
    shown = ready("show", mine["id"][:8]).stdout
    assert re.search(rf"^actor: +{re.escape(mine['actor'])}$", shown, re.M), shown

    admin = ready.json("--as", "ADMIN@example.com", "export", "products")
    assert admin["actor"] == "admin@example.com" and admin["created_by"] is not None

    again = str(ready.file("q.csv", PRODUCTS))
    stranger = ready("--as", "nobody@example.com", "import", "products", again)
    assert stranger.exit_code == 2 and "bulkops user list" in stranger.output
    assert len(ready.json("history")) == 2  # nothing was started for the stranger


def test_ctrl_c_during_a_rollback_stops_it_and_a_second_rollback_goes_on(ready: Cli) -> None:
    source = ready.tmp_path / "many.csv"
    write_file("products", source, 60_000)
    imported = ready.json("import", "products", str(source), "--chunk-size", "50")
    op_id = imported["id"]
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    proc = subprocess.Popen(
        [str(bulkops_executable()), "--database-url", ready.url, "rollback", op_id[:8]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(ready.tmp_path / "x.db", timeout=30) as conn:
            restored = conn.execute("SELECT rolled_back_records FROM operations").fetchone()[0]
        if restored and restored >= 1_000:
            break
        assert proc.poll() is None and time.monotonic() < deadline, "it ended before Ctrl-C"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130, err
    assert f"the rollback of operation {op_id} stopped after restoring" in err
    assert f"bulkops rollback {op_id[:8]}" in err
    ctx = _context(ready)
    try:
        org_id = ctx.store.accounts.list_organizations()[0]["id"]
        op = get_operation(ctx, org_id, op_id)
        assert op.status is OperationStatus.CANCELLED
        assert 1_000 <= op.rolled_back_records < 60_000
        with ctx.store.transaction(org_id) as tx:
            assert tx.rows.count("products") == 60_000 - op.rolled_back_records
        assert resume_orphaned(ctx, org_id) == []  # a person stopped it: no worker goes on
        assert get_operation(ctx, org_id, op_id).status is OperationStatus.CANCELLED
    finally:
        close_context(ctx)
    _serve_for(ready, seconds=6)  # the server's worker does not go on with it either
    ctx = _context(ready)
    try:
        assert get_operation(ctx, org_id, op_id).rolled_back_records == op.rolled_back_records
    finally:
        close_context(ctx)

    again = ready.json("rollback", op_id[:8])
    assert (again["status"], again["rolled_back_records"]) == ("rolled_back", 60_000)
    assert ready.export_rows("products") == [
        ["sku", "name", "description", "category", "price"]
    ]


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_s_help_has_an_example_and_flags_look_like_flags(tmp_path: Path) -> None:
    import typer

    from bulkops.cli.app import app

    commands = _commands(typer.main.get_command(app))
    assert len(commands) >= 20
    for command in commands:
        result = Cli(tmp_path)(*command, "--help", columns=100)
        assert result.exit_code == 0, command
        assert "Example: bulkops" in result.stdout or "Example: BULKOPS_" in result.stdout, command
    help_text = subprocess.run(
        [str(bulkops_executable()), "import", "--help"], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "80"}, check=True,
    ).stdout
    assert "Default: 1000." in help_text  # --chunk-size, from the configuration's default
    assert "<bool>" not in help_text and "HEADER=FIELD" in help_text


def test_every_command_s_summary_is_one_line_that_the_command_list_wraps(tmp_path: Path) -> None:
    import typer

    from bulkops.cli.app import app

    # The command list shows a summary as written: a line break in it broke a sentence in
    # two there ("... a note on each column" / "and Excel data validation.").
    top = typer.main.get_command(app)
    groups = [top, *(c for c in top.commands.values() if hasattr(c, "commands"))]  # type: ignore[attr-defined]
    for group in groups:
        for name, command in group.commands.items():  # type: ignore[attr-defined]
            summary = (command.help or "").strip().split("\n\n")[0]
            assert summary and "\n" not in summary, (name, summary)


def test_a_rejected_file_s_problems_wrap_at_words_on_a_terminal(ready: Cli) -> None:
    path = ready.file("words.csv", "Item SKU,Product name,Unit price\nX-1,Thing,1.00\n")
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)

    screen, code = _run_in_terminal(
        ["--database-url", ready.url, "import", "products", str(path)], env
    )

    assert code == 2, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    assert lines[0] == "The file was rejected; nothing was changed:", screen
    assert all(len(line) <= 80 for line in lines), screen
    # Each problem is an item; its text goes on under itself, cut only between words.
    items = [line for line in lines[1:] if line.startswith("  - ")]
    assert len(items) == 4 and all(
        line.startswith(("  - ", "    ")) for line in lines[1:]
    ), screen
    joined = " ".join(line.strip() for line in lines[1:])
    assert "Did you mean 'sku'? Rename it, or map it with --map 'Item SKU=sku'." in joined
    assert "Missing required columns: sku, name." in joined

    # Through a pipe, one line a problem (for scripts).
    piped = subprocess.run(
        [str(bulkops_executable()), "--database-url", ready.url, "import", "products",
         str(path)],
        capture_output=True, text=True, env={**env, "COLUMNS": "80"},
    )
    assert piped.returncode == 2
    problems = [line for line in piped.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4 and len(piped.stderr.splitlines()) == 5, piped.stderr
    assert any(len(line) > 80 for line in problems)


def test_the_cli_words_a_file_problem_s_remedy_with_its_flags(ready: Cli) -> None:
    typo = ready("import", "products", str(ready.file("t.csv", "sku,name,prce\nA,B,1.00\n")))
    assert typo.exit_code == 2
    assert "Unknown column 'prce' (column 3). Did you mean 'price'?" in typo.output
    assert "Rename it, or map it with --map 'prce=price'." in typo.output
    assert "`mapping`" not in typo.output
    tie = ready("import", "products", str(ready.file("d.csv", "sku;name,price\nA;B,1\n")))
    assert tie.exit_code == 2 and "Give it with --delimiter." in tie.output


def test_the_cli_words_the_encoding_remedy_with_its_flag(ready: Cli) -> None:
    excel = ready.tmp_path / "excel.csv"
    excel.write_bytes("sku,name\nW-1,Crème brûlée\n".encode("windows-1252"))
    refused = ready("import", "products", str(excel))
    assert refused.exit_code == 2
    assert "looks like Windows-1252: byte 0xE8 at row 2" in refused.output
    assert "Give it with --encoding windows-1252." in refused.output
    assert "`encoding" not in refused.output
    done = ready.json("import", "products", str(excel), "--encoding", "windows-1252")
    assert done["created_records"] == 1
