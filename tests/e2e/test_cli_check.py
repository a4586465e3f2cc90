"""Check, then apply on the command line: --check, the planned changes, apply, remembered
mappings (CONTRACT sections 7 and 8)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from tests.e2e.test_cli import Cli
from tests.e2e.test_cli_daily import _run_in_terminal

PRODUCTS = "sku,name,price\nA1,One,1.00\nA2,Two,2.00\nA3,Three,3.00\n"
EDITED = "sku,name,price\nA1,One,1.50\nA2,Two,2.00\nA4,Four,4.00\n"


@pytest.fixture
def ready(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    assert cli("import", "products", str(cli.file("a.csv", PRODUCTS))).exit_code == 0
    return cli


def _check_id(output: str) -> str:
    found = re.search(r"bulkops apply ([0-9a-f]{8})", output)
    assert found, output
    return found.group(1)


def test_check_prints_the_plan_and_the_command_that_applies_it(ready: Cli) -> None:
    result = ready("import", "products", str(ready.file("b.csv", EDITED)), "--check")
    assert result.exit_code == 0, result.output
    out = result.stdout
    # The summary speaks of what would happen, not of rows created, and says it once.
    assert "3 checked: 1 to create, 1 to update, 1 unchanged, 0 failing" in out
    assert out.count("1 to create") == 1
    assert "Nothing was changed" in out and " created," not in out
    assert "row\taction\tkey\tfield\tcurrent\tnew" in out  # not a terminal: TSV
    assert "2\tupdate\tA1\tprice\t1.00\t1.50" in out
    assert "4\tcreate\tA4\tname\t\tFour" in out
    short = _check_id(out)
    assert ready.export_rows("products")[1] == ["A1", "One", "", "", "1.00"]  # nothing changed

    changes = ready("changes", short, "--action", "update")
    assert changes.exit_code == 0 and "A4" not in changes.stdout
    target = ready.tmp_path / "changes.csv"
    assert ready("changes", short, "-o", str(target)).exit_code == 0
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert rows[0] == ["_row", "_action", "sku", "field", "current", "new"]
    assert rows[1] == ["2", "update", "A1", "price", "1.00", "1.50"]
    bad = ready("changes", short, "--action", "upsert")
    assert bad.exit_code == 2 and "create, update, delete" in bad.output

    applied = ready("apply", short, "--json")
    assert applied.exit_code == 0, applied.output
    view = json.loads(applied.stdout)
    assert view["config"]["checked_by"].startswith(short)
    assert (view["created_records"], view["updated_records"]) == (1, 1)
    assert view["results"]["differs_from_check"] == 0
    again = ready("apply", short)
    assert again.exit_code == 1 and view["id"] in again.output
    rollback = ready("rollback", short)
    assert rollback.exit_code == 1 and "changed nothing" in rollback.output


def test_apply_after_a_row_changed_says_how_many_differ(ready: Cli) -> None:
    short = _check_id(
        ready(
            "update", "products", str(ready.file("u.csv", "sku,name\nA1,Uno\nA2,Dos\n")), "--check"
        ).stdout
    )
    assert (
        ready("update", "products", str(ready.file("v.csv", "sku,name\nA2,Dos\n"))).exit_code == 0
    )
    result = ready("apply", short)
    assert result.exit_code == 0, result.output
    assert "1 records ended otherwise than the check planned" in result.stdout


def test_a_saved_mapping_is_used_and_said_unless_refused(ready: Cli) -> None:
    first = ready.file("de.csv", "Artikel,Bezeichnung,price\nB1,Eins,1.00\n")
    result = ready(
        "import", "products", str(first), "--map", "Artikel=sku", "--map", "Bezeichnung=name"
    )
    assert result.exit_code == 0, result.output
    listed = ready("mapping", "list")
    assert "Artikel=sku, Bezeichnung=name" in listed.stdout
    mapping_id = listed.stdout.split()[0]
    second = ready.file("de2.csv", "ARTIKEL,Bezeichnung,price\nB2,Zwei,2.00\n")
    used = ready("import", "products", str(second))
    assert used.exit_code == 0, used.output
    assert f"Using the mapping remembered for this header (mapping {mapping_id})" in used.stderr
    refused = ready("import", "products", str(second), "--no-saved-mapping")
    assert refused.exit_code == 2 and "Unknown column 'ARTIKEL'" in refused.output
    assert ready("mapping", "forget", mapping_id).exit_code == 0
    assert "No remembered mapping" in ready("mapping", "list").stdout
    assert ready("mapping", "forget", mapping_id).exit_code == 2


def test_on_a_terminal_check_asks_before_applying(ready: Cli) -> None:
    env = {**os.environ, "BULKOPS_DATA_DIR": str(ready.tmp_path / "data")}
    env.pop("BULKOPS_DATABASE_URL", None)
    path = ready.file("b.csv", EDITED)
    text, code = _run_in_terminal(
        ["--database-url", ready.url, "import", "products", str(path), "--check"],
        env,
        reply=(b"Apply? [y/N]: ", b"y\n"),  # the whole prompt: then the answer echoes after it
    )
    assert code == 0, text
    assert "Apply? [y/N]: y" in text, text
    start = text.index("The planned changes:")
    table = text[start : text.index("Apply?")].splitlines()[1:]
    assert table[0].split() == ["row", "action", "key", "field", "current", "new"]
    assert all(len(line) <= 80 for line in table), text
    assert any("A1" in line and "1.50" in line for line in table), text
    assert "applies check" in text
    assert ready.export_rows("products")[1] == ["A1", "One", "", "", "1.50"]
