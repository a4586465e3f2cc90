"""The ``bulkops`` command line, end to end: in-process with Typer's runner, plus real processes.

Each test gets its own SQLite file and data folder; the commands are the ones a user types.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from click.testing import Result
from sqlalchemy import create_engine
from typer.testing import CliRunner

from bulkops.cli import app
from bulkops.store.schema import alembic_config

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()
PRODUCTS = (
    "sku,name,description,category,price\n"
    "P-1,Hammer,\"Steel, 500 g\",Tools,12.50\n"
    "P-2,Saw,,Tools,20.00\n"
    "P-3,Rake,,Garden,7.00\n"
)
WITH_ERRORS = (
    "sku,name,description,category,price\n"
    "E-1,Good,,Tools,1.00\n"
    "E-2,Bad price,,Tools,abc\n"
    "E-3,,,Tools,3.00\n"
)


class Cli:
    """Runs ``bulkops --database-url … ARGS`` in-process against one SQLite file."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.url = f"sqlite:///{tmp_path / 'x.db'}"
        self.env = {"BULKOPS_DATA_DIR": str(tmp_path / "data"), "BULKOPS_DATABASE_URL": ""}
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, columns: int = 80) -> Result:
        env = {key: value for key, value in self.env.items() if value}
        env["COLUMNS"] = str(columns)
        return self.runner.invoke(
            app, ["--database-url", self.url, *args], input=input, env=env,
            catch_exceptions=False,
        )

    def json(self, *args: str) -> Any:
        result = self(*args, "--json")
        return json.loads(result.stdout)

    def file(self, name: str, text: str) -> Path:
        path = self.tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    def export_rows(self, entity: str) -> list[list[str]]:
        target = self.tmp_path / f"export-{entity}.csv"
        result = self("export", entity, "-o", str(target))
        assert result.exit_code == 0, result.output
        return list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def ready(cli: Cli) -> Cli:
    """A database after ``bulkops init`` (one organization, one admin)."""
    result = cli("init")
    assert result.exit_code == 0, result.output
    return cli


def bulkops_executable() -> Path:
    return Path(sys.executable).parent / "bulkops"


# -- init -------------------------------------------------------------------------------


def test_init_prints_a_password_once_and_is_idempotent(cli: Cli) -> None:
    first = cli("init")
    assert first.exit_code == 0, first.output
    assert "Created organization 'default'" in first.stdout
    assert "admin@example.com" in first.stdout
    password_lines = [line for line in first.stdout.splitlines() if "password" in line.lower()]
    assert len(password_lines) == 1
    password = password_lines[0].rsplit(" ", 1)[-1]
    assert len(password) >= 12

    assert f"Created the schema, revision {HEAD} (" in first.output

    second = cli("init")
    assert second.exit_code == 0, second.output
    assert "password" not in second.stdout.lower()
    assert password not in second.output
    assert "Created" not in second.output
    assert f"Schema is up to date, revision {HEAD} (" in second.output


def test_init_says_which_revisions_an_upgrade_went_through(cli: Cli) -> None:
    engine = create_engine(cli.url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
    engine.dispose()
    upgraded = cli("init")
    assert upgraded.exit_code == 0, upgraded.output
    assert f"Upgraded the schema from revision 0009 to {HEAD}" in upgraded.output


# -- import, exit codes, --json -----------------------------------------------------------


def test_import_json_prints_only_the_operation_and_exits_0(ready: Cli) -> None:
    path = ready.file("products.csv", PRODUCTS)
    result = ready("import", "products", str(path), "--json")
    assert result.exit_code == 0, result.output
    op = json.loads(result.stdout)  # nothing but JSON on stdout
    assert op["operation_type"] == "import"
    assert op["entity_type"] == "products"
    assert op["status"] == "completed"
    assert op["file_name"] == "products.csv"
    assert (op["total_records"], op["created_records"], op["failed_records"]) == (3, 0 + 3, 0)
    assert op["file_sha256"] and op["file_size_bytes"] == path.stat().st_size
    assert [row[0] for row in ready.export_rows("products")[1:]] == ["P-1", "P-2", "P-3"]


def test_import_with_failed_rows_exits_1_and_names_the_rows(ready: Cli) -> None:
    result = ready("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    assert result.exit_code == 1, result.output
    assert "1 created" in result.stdout and "2 failed" in result.stdout
    assert "row 3 (line 3) [price]" in result.stdout
    assert "row 4 (line 4) [name]" in result.stdout
    assert "bulkops errors" in result.stdout
    # Wrapped at 80 columns with the indent kept, and no line padded with spaces.
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines), lines
    price = next(i for i, line in enumerate(lines) if line.startswith("  row 3 (line 3)"))
    assert lines[price + 1].startswith("  ") and not lines[price + 1].startswith("  row")


def test_rejected_file_exits_2_and_changes_nothing(ready: Cli) -> None:
    path = ready.file("bad.csv", "sku,nmae,price\nX-1,Thing,1.00\n")
    result = ready("import", "products", str(path))
    assert result.exit_code == 2
    assert "rejected" in result.stderr and "nothing was changed" in result.stderr
    assert "Unknown column 'nmae'" in result.stderr
    assert "Did you mean 'name'?" in result.stderr
    assert ready.export_rows("products") == [["sku", "name", "description", "category", "price"]]
    # A stock file given as products: said first, in the command line's words.
    stock = ready.file("stock.csv", "sku,warehouse_code,quantity\nX-1,W-1,3\n")
    wrong = ready("import", "products", str(stock))
    assert wrong.exit_code == 2
    first = wrong.stderr.split("  - ")[1]
    assert " ".join(first.split()) == (
        "These are the columns of inventory, not of products: if the file holds inventory, "
        "import it as inventory."
    )
    assert "--entity-type" not in wrong.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["import", "widgets", "x.csv"],  # unknown entity
        ["import", "products"],  # missing file argument
        ["import", "products", "does-not-exist.csv"],  # no such file
        ["import", "products", "p.csv", "--chunk-size", "0"],  # out of range
        ["import", "products", "p.csv", "--map", "no-equals-sign"],
        ["history", "--since", "yesterday"],
        ["show", "00000000-0000-0000-0000-000000000000"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2(ready: Cli, args: list[str]) -> None:
    ready.file("p.csv", PRODUCTS)
    args = [str(ready.tmp_path / a) if a.endswith(".csv") else a for a in args]
    result = ready(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_validate_only_changes_nothing_and_reports_what_would_happen(ready: Cli) -> None:
    ready("import", "products", str(ready.file("p.csv", PRODUCTS)))
    before = ready.export_rows("products")
    changed = PRODUCTS.replace("Saw,,Tools,20.00", "Saw,,Tools,21.00") + "P-4,New,,x,1.00\n"
    op = ready.json("import", "products", str(ready.file("c.csv", changed)), "--validate-only")
    assert op["status"] == "completed"
    assert op["config"]["validate_only"] is True
    assert (op["created_records"], op["updated_records"], op["unchanged_records"]) == (1, 1, 2)
    assert ready.export_rows("products") == before

    plain = ready("import", "products", str(ready.file("c.csv", changed)), "--validate-only")
    assert plain.exit_code == 0
    assert "Nothing was changed" in plain.stdout
    # What an import can do, not "0 to delete".
    assert "4 checked: 1 to create, 1 to update, 2 unchanged, 0 failing" in plain.stdout


# -- errors, template, export ---------------------------------------------------------------


def test_errors_writes_a_report_that_can_be_fixed_and_imported_again(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    report = ready.tmp_path / "errors.csv"
    result = ready("errors", op["id"], "-o", str(report))
    assert result.exit_code == 0, result.output
    assert "2 failed rows" in result.stderr
    rows = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert rows[0] == ["_row", "_line", "_errors", "sku", "name", "description", "category",
                       "price"]
    assert rows[1][:2] == ["3", "3"] and "price" in rows[1][2] and rows[1][3] == "E-2"
    assert rows[2][:2] == ["4", "4"] and "required" in rows[2][2] and rows[2][3] == "E-3"

    fixed = report.read_text(encoding="utf-8").replace(",abc", ",2.00")
    fixed = fixed.replace("E-3,,", "E-3,Named,")
    again = ready.json("import", "products", str(ready.file("fixed.csv", fixed)))
    assert (again["created_records"], again["failed_records"]) == (2, 0)


def test_a_dash_as_output_file_means_stdout(
    ready: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ready.tmp_path)
    one_bad = "sku,name,description,category,price\nD-1,Good,,Tools,1.00\nD-2,Bad,,Tools,x\n"
    op = ready.json("import", "products", str(ready.file("d.csv", one_bad)))
    for args in (("errors", op["id"]), ("template", "products"), ("export", "products")):
        result = ready(*args, "-o", "-")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(("_row,_line,_errors,sku", "sku,name"))
    assert not (ready.tmp_path / "-").exists()
    result = ready("errors", op["id"], "-o", "errors.csv")
    assert "Wrote 1 failed row to errors.csv." in result.stderr


def test_errors_to_stdout(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    result = ready("errors", op["id"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("_row,_line,_errors,sku")
    assert len(result.stdout.splitlines()) == 3
    assert "To fix them" not in result.stderr  # the hint is for a person at a terminal


@pytest.mark.parametrize(
    ("entity", "header"),
    [
        ("warehouses", "code,name"),
        ("products", "sku,name,description,category,price"),
        ("inventory", "sku,warehouse_code,quantity,reason,notes"),
        ("pricing", "sku,price_tier,price,min_quantity"),
        ("customers", "email,name,company,price_tier"),
    ],
)
def test_template_prints_header_and_one_example_row(cli: Cli, entity: str, header: str) -> None:
    result = cli("template", entity)
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert ",".join(rows[0]) == header
    assert len(rows) == 2 and len(rows[1]) == len(rows[0])


def test_template_file_imports_cleanly(ready: Cli) -> None:
    target = ready.tmp_path / "template.csv"
    assert ready("template", "warehouses", "-o", str(target)).exit_code == 0
    op = ready.json("import", "warehouses", str(target))
    assert (op["created_records"], op["failed_records"]) == (1, 0)


def test_export_round_trips_every_record_unchanged(ready: Cli) -> None:
    tricky = (
        "sku,name,description,category,price\n"
        "T-1,=HYPERLINK(\"http://x\"),\"multi\nline\",@cat,1.00\n"
        "T-2,\"Comma, quoted\",-5.00,+plus,2.50\n"
        "T-3,Plain,'=already quoted,Tools,3\n"
    )
    ready("import", "products", str(ready.file("t.csv", tricky)))
    target = ready.tmp_path / "out.csv"
    result = ready("export", "products", "-o", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    assert "'=HYPERLINK" in text and "'@cat" in text and "'+plus" in text
    assert ",-5.00," in text  # a numeric literal is left alone
    op = ready.json("import", "products", str(target))
    assert (op["total_records"], op["unchanged_records"]) == (3, 3)
    assert (op["created_records"], op["updated_records"], op["failed_records"]) == (0, 0, 0)


def test_a_delete_speaks_of_deleted_products_and_an_export_counts_them(ready: Cli) -> None:
    ready("import", "products", str(ready.file("p.csv", PRODUCTS)))
    gone = ready("delete", "products", str(ready.file("d.csv", "sku\nP-1\nP-404\n")))
    assert gone.exit_code == 1
    # What a delete can do, and the row it could not find named as a product.
    assert "2 processed: 1 deleted, 1 failed" in gone.stdout
    assert "[sku]: Not found: there is no product with sku 'P-404'." in gone.stdout
    exported = ready("export", "products", "-o", str(ready.tmp_path / "o.csv"))
    assert "Exported 2 products to " in exported.stderr


def test_export_json_and_stdout(ready: Cli) -> None:
    ready("import", "products", str(ready.file("p.csv", PRODUCTS)))
    plain = ready("export", "products")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines()[0] == "sku,name,description,category,price"
    assert len(plain.stdout.splitlines()) == 4
    op = ready.json("export", "products", "-o", str(ready.tmp_path / "o.csv"))
    assert (op["operation_type"], op["status"], op["processed_records"]) == ("export",
                                                                            "completed", 3)


# -- history, show ------------------------------------------------------------------------


def test_history_filters(ready: Cli) -> None:
    ok = ready.json("import", "products", str(ready.file("p.csv", PRODUCTS)))
    bad = ready.json("import", "warehouses", str(ready.file("w.csv", "code,name\nW-1,\n")))
    exported = ready.json("export", "products", "-o", str(ready.tmp_path / "o.csv"))

    everything = ready.json("history")
    assert [op["id"] for op in everything] == [exported["id"], bad["id"], ok["id"]]
    assert [op["id"] for op in ready.json("history", "--type", "export")] == [exported["id"]]
    assert [op["id"] for op in ready.json("history", "--entity", "warehouses")] == [bad["id"]]
    assert [op["id"] for op in ready.json("history", "--type", "import", "--entity",
                                          "products")] == [ok["id"]]
    assert [op["id"] for op in ready.json("history", "--limit", "1")] == [exported["id"]]
    assert ready.json("history", "--status", "rolled_back") == []
    assert ready.json("history", "--since", "2999-01-01") == []
    assert len(ready.json("history", "--since", "2000-01-01", "--until", "2999-01-01")) == 3

    ready("rollback", ok["id"])
    rolled = ready.json("history", "--status", "rolled_back")
    assert [op["id"] for op in rolled] == [ok["id"]]

    table = ready("history", columns=200)
    assert table.exit_code == 0
    assert ok["id"][:8] in table.stdout


def test_show_json_is_the_operation_object(ready: Cli) -> None:
    op = ready.json("import", "products", str(ready.file("e.csv", WITH_ERRORS)))
    shown = ready.json("show", op["id"])
    for key in ("id", "operation_type", "entity_type", "status", "file_name", "file_size_bytes",
                "file_sha256", "total_records", "processed_records", "successful_records",
                "failed_records", "unchanged_records", "created_records", "updated_records",
                "deleted_records", "percentage", "estimated_completion", "started_at",
                "completed_at", "created_at", "created_by", "cancelled_at", "cancelled_by",
                "config", "results"):
        assert key in shown, key
    assert shown["id"] == op["id"]
    assert (shown["successful_records"], shown["failed_records"]) == (1, 2)
    assert shown["config"]["chunk_size"] == 1000

    plain = ready("show", op["id"])
    assert plain.exit_code == 0
    assert op["id"] in plain.stdout and "row 3 (line 3)" in plain.stdout


# -- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_and_a_second_rollback_is_refused(ready: Cli) -> None:
    ready("import", "products", str(ready.file("p.csv", PRODUCTS)))
    before = ready.export_rows("products")
    changed = PRODUCTS.replace("Saw,,Tools,20.00", "Saw,,Tools,99.00") + "P-9,New,,x,1.00\n"
    op = ready.json("import", "products", str(ready.file("c.csv", changed)))
    assert (op["updated_records"], op["created_records"]) == (1, 1)
    assert ready.export_rows("products") != before

    undone = ready.json("rollback", op["id"])
    assert undone["status"] == "rolled_back"
    assert ready.export_rows("products") == before
    assert ready.json("show", op["id"])["status"] == "rolled_back"

    again = ready("rollback", op["id"], columns=200)
    assert again.exit_code == 1
    assert "already rolled back" in again.stderr
    assert "Traceback" not in again.output
    assert ready.export_rows("products") == before


def test_rollback_on_error_exits_1_and_changes_nothing(ready: Cli) -> None:
    result = ready("import", "products", str(ready.file("e.csv", WITH_ERRORS)),
                   "--rollback-on-error", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "rolled_back"
    assert len(ready.export_rows("products")) == 1


# -- organizations, users, tokens --------------------------------------------------------------


def test_org_user_and_token(ready: Cli) -> None:
    created = ready("org", "create", "beta", "--name", "Beta GmbH")
    assert created.exit_code == 0, created.output
    assert "beta" in created.stdout

    duplicate = ready("org", "create", "beta")
    assert duplicate.exit_code != 0
    assert "Traceback" not in duplicate.output

    user = ready("user", "create", "Bob@Example.com", "--org", "beta", "--role", "viewer",
                 "--password-stdin", input="correct horse battery staple\n")
    assert user.exit_code == 0, user.output
    assert "bob@example.com" in user.stdout
    assert "correct horse" not in user.output
    assert "password" not in user.stdout.lower()

    generated = ready("user", "create", "eve@example.com", "--org", "beta")
    assert generated.exit_code == 0, generated.output
    assert "Password (shown once)" in generated.stdout

    token = ready("token", "create", "--user", "bob@example.com", "--name", "script")
    assert token.exit_code == 0, token.output
    lines = token.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bo_") and len(lines[0]) > 20
    other = ready("token", "create", "--user", "bob@example.com")
    assert other.stdout.strip() != lines[0]

    missing = ready("token", "create", "--user", "nobody@example.com")
    assert missing.exit_code == 2
    assert "nobody@example.com" in missing.stderr


def test_org_selection_with_two_organizations(ready: Cli) -> None:
    assert ready("org", "create", "beta").exit_code == 0
    path = ready.file("p.csv", PRODUCTS)

    unclear = ready("import", "products", str(path))
    assert unclear.exit_code == 2
    assert "--org" in unclear.stderr and "default" in unclear.stderr and "beta" in unclear.stderr

    unknown = ready("--org", "nope", "import", "products", str(path))
    assert unknown.exit_code == 2
    assert "nope" in unknown.stderr

    op = ready.json("--org", "beta", "import", "products", str(path))
    assert op["created_records"] == 3
    beta = ready.json("--org", "beta", "history")
    assert [item["id"] for item in beta] == [op["id"]]
    assert ready.json("--org", "default", "history") == []

    # one organization never sees another's rows or operations
    default_export = ready.tmp_path / "default.csv"
    assert ready("--org", "default", "export", "products", "-o", str(default_export)).exit_code == 0
    assert len(default_export.read_text(encoding="utf-8").splitlines()) == 1
    shown = ready("--org", "default", "show", op["id"])
    assert shown.exit_code == 2


# -- real processes -----------------------------------------------------------------------------


def test_real_process_init_import_json_and_exit_codes(tmp_path: Path) -> None:
    executable = bulkops_executable()
    assert executable.is_file(), executable
    env = {**os.environ, "BULKOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)
    url = f"sqlite:///{tmp_path / 'x.db'}"

    def bulkops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), "--database-url", url, *args],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
        )

    init = bulkops("init")
    assert init.returncode == 0, init.stderr
    assert "shown once" in init.stdout

    path = tmp_path / "p.csv"
    path.write_text(PRODUCTS, encoding="utf-8")
    imported = bulkops("import", "products", str(path), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["created_records"] == 3

    errors = tmp_path / "e.csv"
    errors.write_text(WITH_ERRORS, encoding="utf-8")
    assert bulkops("import", "products", str(errors)).returncode == 1

    rejected = tmp_path / "r.csv"
    rejected.write_text("sku,colour\nA,red\n", encoding="utf-8")
    result = bulkops("import", "products", str(rejected))
    assert result.returncode == 2
    assert "Unknown column 'colour'" in result.stderr
    assert result.stdout == ""

    usage = bulkops("import", "products")
    assert usage.returncode == 2

    history = bulkops("history", "--json")
    assert history.returncode == 0
    assert len(json.loads(history.stdout)) == 2


def test_real_process_default_database_in_current_folder(tmp_path: Path) -> None:
    env = {**os.environ, "BULKOPS_DATA_DIR": str(tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)
    result = subprocess.run(
        [str(bulkops_executable()), "init"], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bulkops.db").is_file()
