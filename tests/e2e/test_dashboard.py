"""The dashboard in a real browser: Playwright driving Debian's Chromium against a real server.

The server (uvicorn) and the worker run in threads on a SQLite file, as in
``tests/integration/test_api.py``. The browser is launched from ``/usr/bin/chromium`` with
``executable_path`` (Playwright's own browser downloads are blocked); CI installs it.
Screenshots of the main pages go to ``docs/screenshots/`` when ``BULKOPS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from bulkops import engine
from bulkops.asgi import create_app
from bulkops.config import Settings
from bulkops.model import Role
from bulkops.store import Store
from bulkops.workers import worker_main
from tests.integration.test_api import ServerThread

# Assertions wait as long as actions do: two test processes share two cores, and a page that
# updates from a live stream may need more than Playwright's default of 5 s under that load.
expect.set_options(timeout=15_000)

CHROMIUM = Path(os.environ.get("BULKOPS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
MAX_FILE_BYTES = 2_000_000
LONG_RUN = 40_000  # records of a run that is cancelled while it runs
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS = "<script>window.__xss = 1</script>"


@dataclass
class Site:
    url: str
    settings: Settings
    store: Store
    org_id: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("dashboard")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bulkops.db'}",
        data_dir=folder / "data",
        max_file_bytes=MAX_FILE_BYTES,
        secret_key="test-secret-key-for-the-dashboard",
    )
    store = Store(settings.database_url)
    store.migrate()
    org_id = engine.create_organization(store, "acme", "Acme")
    engine.create_user(store, org_id, "editor@acme.example", Role.EDITOR, PASSWORD)
    engine.create_user(store, org_id, "viewer@acme.example", Role.VIEWER, PASSWORD)
    server = ServerThread(
        create_app(settings, sse_poll_seconds=0.05, sse_heartbeat_seconds=0.5)
    )
    url = server.start()
    stop = threading.Event()
    runner = threading.Thread(
        target=worker_main, args=(settings.model_dump(), stop, None, 0.05), daemon=True
    )
    runner.start()
    try:
        yield Site(url, settings, store, org_id)
    finally:
        stop.set()
        server.stop()
        runner.join(30)
        store.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("BULKOPS_REQUIRE_PG") == "1":
            pytest.fail(f"Chromium is required in CI but missing at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[Page]:
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    the_page = context.new_page()
    the_page.on("dialog", lambda dialog: pytest.fail(f"unexpected dialog: {dialog.message}"))
    yield the_page
    context.close()


def screenshot(page: Page, name: str) -> None:
    if os.environ.get("BULKOPS_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def log_in(page: Page, email: str = "editor@acme.example") -> None:
    page.goto("/operations")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/operations$"))


def upload(page: Page, name: str, content: bytes, **options: Any) -> None:
    """New operation: the file is uploaded as it is chosen and opens its review page, where
    the operation starts (Check with ``validate_only``); a refused file stays on the page."""
    page.goto("/operations/new")
    page.get_by_label("Entity").select_option(options.get("entity", "products"))
    page.get_by_label("Type").select_option(options.get("operation", "import"))
    page.get_by_label("CSV or Excel file").set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": content}
    )
    page.locator("#review, #upload-errors:not([hidden])").first.wait_for()
    if "/uploads/" not in page.url or options.get("review_only"):
        return
    if "chunk_size" in options:
        page.get_by_label("Chunk size").fill(str(options["chunk_size"]))
    start = "Check" if options.get("validate_only") else "Apply without checking"
    page.get_by_role("button", name=start, exact=True).click()


def export(
    page: Page, entity: str, file_format: str = "CSV", where: tuple[str, str] | None = None
) -> None:
    """Starts an export from its own page and waits for the export's page."""
    page.goto("/exports/new")
    page.get_by_label("Entity").select_option(entity)
    if where is not None:
        page.get_by_label("Column").select_option(where[0])
        page.get_by_label("Value").fill(where[1])
    page.get_by_label(file_format, exact=True).check()
    page.get_by_role("button", name="Start export").click()
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))


def confirm(page: Page, says: str) -> None:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(says)
    dialog.get_by_role("button", name="Yes, go ahead").click()


def products(count: int, *, bad_every: int = 0, first: int = 0) -> bytes:
    lines = ["sku,name,price"]
    for i in range(first, first + count):
        price = "abc" if bad_every and i % bad_every == bad_every - 1 else f"{i % 90 + 1}.50"
        lines.append(f"DASH-{i:05d},Product {i},{price}")
    return ("\n".join(lines) + "\n").encode()


def test_login_session_cookie_and_logout(page: Page, site: Site) -> None:
    page.goto("/operations")
    screenshot(page, "login")
    page.get_by_label("Email").fill("editor@acme.example")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile("Wrong email or password"))

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "bulkops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    # The API answers through the cookie; a write without the CSRF header is refused.
    reads = page.request.get("/api/v1/operations")
    assert reads.status == 200
    forged = page.request.post(
        "/api/v1/operations", form={"operation_type": "export", "entity_type": "products"}
    )
    assert forged.status == 403 and "CSRF" in forged.json()["detail"]

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("You have logged out.")
    assert page.request.get("/api/v1/operations").status == 401


def test_import_errors_report_and_rollback(page: Page, site: Site) -> None:
    log_in(page)
    page.goto("/operations/new")
    page.get_by_label("Entity").select_option("products")
    with page.expect_download() as template:
        page.get_by_role("link", name=re.compile("download the products template")).click()
    assert Path(template.value.path()).read_text().startswith("sku,name,description")
    screenshot(page, "new-operation")

    xss_rows = f"DASH-XSS,{XSS},=HYPERLINK(1)\nDASH-XSS2,{XSS},9.99\n".encode()
    body = products(40, bad_every=10).replace(b"price\n", b"price\n" + xss_rows, 1)
    upload(page, f"{XSS}.csv", body)
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    status = page.locator(".title-row [data-field=status]")
    # Failed rows are not hidden under a green "completed": the badge is amber and counts them.
    expect(status).to_have_text("completed with 5 errors", timeout=20_000)
    expect(status).to_have_class(re.compile("outcome-completed_with_errors"))
    assert status.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 241, 204)"
    expect(page.locator("dd[data-field=created_records]")).to_have_text("37")
    expect(page.locator("dd[data-field=failed_records]")).to_have_text("5")
    # A page shown while the import ran reloads itself once it ends: the ended page offers the
    # rollback (a click on a link during that reload would be lost).
    expect(page.get_by_role("button", name="Roll back")).to_be_visible()

    errors = page.locator("table.errors tbody tr")
    expect(errors).to_have_count(5)
    expect(errors.nth(1)).to_contain_text("price")
    expect(errors.nth(1)).to_contain_text("abc")
    # A formula-like value and a <script> are shown as text, never run.
    expect(page.locator("table.errors")).to_contain_text("=HYPERLINK(1)")
    with page.expect_download() as report:
        page.get_by_role("link", name="Download the error report (CSV)").click()
    lines = Path(report.value.path()).read_text().splitlines()
    assert lines[0].startswith("_row,_line,_errors,sku,name,price") and len(lines) == 6

    record = page.locator(".records details", has_text="DASH-XSS2")
    record.locator("summary").click()
    expect(record).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None
    expect(page.locator(".file-name").first).to_contain_text("script")

    page.get_by_role("button", name="Roll back").click()
    confirm(page, "37 created rows will be deleted")
    expect(status).to_have_text("rolled back", timeout=20_000)
    assert page.evaluate("window.__xss") is None
    page.reload()  # the timings say when the rollback ended and who asked for it
    expect(page.locator("section[aria-labelledby=timings-title]")).to_contain_text(
        re.compile(r"Rolled back.+ by editor@acme\.example")
    )

    page.goto("/operations")
    row = page.locator("tr.op-row").first
    expect(row).to_contain_text("rolled back")
    expect(row.locator("td.file-name")).to_contain_text("script")
    # The file name is kept as uploaded, so searching for it finds it (shown as text).
    page.get_by_label("File name").fill(XSS)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.op-row")).to_have_count(1)
    expect(page.locator("tr.op-row td.file-name")).to_contain_text(f"{XSS}.csv")
    expect(page.get_by_label("File name")).to_have_value(XSS)
    page.get_by_label("Outcome").select_option("rolled_back")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.op-row")).to_have_count(1)
    page.get_by_label("Outcome").select_option("completed_with_errors")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.op-row")).to_have_count(0)
    page.get_by_label("Outcome").select_option("")
    page.get_by_label("File name").fill("no such file")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No operation matches these filters.")).to_be_visible()
    assert page.evaluate("window.__xss") is None


def test_upload_problems_are_explained(page: Page, site: Site) -> None:
    log_in(page)
    upload(page, "photo.csv", b"\x89PNG\r\n\x1a\n" + bytes(200))
    box = page.locator("#upload-errors")
    expect(box).to_contain_text("not a CSV or TSV text file")
    upload(page, "ambiguous.csv", b"sku;name,price\nA;B,1.00\n")
    # The remedy names what this page offers, not a command-line flag or an API field.
    expect(box).to_contain_text("Choose the right one under “Delimiter (CSV)”")
    assert "--delimiter" not in box.inner_text() and "`delimiter`" not in box.inner_text()
    expect(page.get_by_label("Delimiter (CSV)")).to_be_visible()
    page.get_by_label("Delimiter (CSV)").select_option(";")  # the choice is used
    page.get_by_role("button", name="Upload and review").click()
    expect(page).to_have_url(re.compile(r"/uploads/[0-9a-f-]+$"))
    expect(page.locator("table.mapping")).to_contain_text("name,price")
    # A misspelt column is not refused: the review suggests the field it resembles.
    upload(page, "typo.csv", b"sku,nmae,price\nA,B,1.00\n", review_only=True)
    expect(page.locator("table.mapping tbody tr").nth(1)).to_contain_text("similar 0.75")
    page.goto("/operations/new")
    page.get_by_label("CSV or Excel file").set_input_files(
        {"name": "huge.csv", "mimeType": "text/csv",
         "buffer": b"sku,name,price\n" + b"x" * (MAX_FILE_BYTES + 10)}
    )
    expect(box).to_contain_text("the limit is")


def test_live_progress_and_cancel(page: Page, site: Site) -> None:
    log_in(page)
    # 40,000 chunks of one record: the run lasts long enough to cancel on a fast machine too.
    upload(page, "long.csv", products(LONG_RUN, first=10_000), chunk_size=1)
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    status = page.locator(".title-row [data-field=status]")
    expect(status).to_have_text("running", timeout=20_000)
    expect(page.locator("[data-field=rate]")).not_to_have_text("—")
    processed = page.locator("span[data-field=processed_records]")
    expect(processed).not_to_have_text("0")
    page.get_by_role("button", name="Cancel operation").click()
    confirm(page, "Rows it has already written stay written")
    expect(status).to_have_text("cancelled", timeout=20_000)
    created = int(page.locator("dd[data-field=created_records]").inner_text().replace(",", ""))
    assert 0 < created < LONG_RUN


def test_export_and_phone_width(page: Page, site: Site) -> None:
    log_in(page)
    export(page, "warehouses")
    expect(page.locator(".title-row [data-field=status]")).to_have_text(
        "succeeded", timeout=20_000
    )
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download the warehouses export")).click()
    assert Path(download.value.path()).read_text().splitlines()[0] == "code,name"

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/operations")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_viewer_sees_no_actions(page: Page, site: Site) -> None:
    log_in(page, "viewer@acme.example")
    expect(page.get_by_role("link", name="New operation", exact=True)).to_have_count(1)  # nav
    page.goto("/exports/new")
    expect(page.get_by_role("alert")).to_contain_text("may read but not start exports")
    expect(page.get_by_role("button", name="Start export")).to_have_count(0)
    page.goto("/operations/new")
    expect(page.get_by_role("alert")).to_contain_text("may read but not start operations")


def test_the_page_shows_the_exact_total_of_records_while_it_runs(page: Page, site: Site) -> None:
    from tests.integration.test_totals import awkward_products

    log_in(page)
    upload(page, "awkward.csv", awkward_products(LONG_RUN).encode(), chunk_size=1)
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    status = page.locator(".title-row [data-field=status]")
    expect(status).to_have_text("running", timeout=20_000)
    expect(page.locator("span[data-field=processed_records]")).not_to_have_text("0")
    # More lines than records (quoted line breaks, blank rows): the total is the records'.
    expect(page.locator("span[data-field=total_records]")).to_have_text(f"{LONG_RUN:,}")
    page.get_by_role("button", name="Cancel operation").click()
    confirm(page, "Rows it has already written stay written")
    expect(status).to_have_text("cancelled", timeout=20_000)
    expect(page.locator("span[data-field=total_records]")).to_have_text(f"{LONG_RUN:,}")


def test_an_export_page_shows_an_export_s_facts_and_a_dry_run_offers_no_undo(
    page: Page, site: Site
) -> None:
    log_in(page)
    export(page, "warehouses")
    expect(page.locator(".title-row [data-field=status]")).to_have_text(
        "succeeded", timeout=20_000
    )
    counters = page.locator(".progress-card dl.counters")
    expect(counters).to_contain_text("Rows written")
    expect(counters).to_contain_text("File size")
    for import_word in ("Created", "Updated", "Unchanged", "Failed"):
        expect(counters).not_to_contain_text(import_word)
    expect(page.get_by_role("button", name="Roll back")).to_have_count(0)
    expect(page.get_by_text("Audit records")).to_have_count(0)
    download = page.get_by_role("link", name=re.compile("Download the warehouses export"))
    expect(download).to_be_visible()
    screenshot(page, "export-operation")

    upload(page, "check.csv", products(12, first=900), validate_only=True)
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    expect(page.locator(".title-row [data-field=status]")).to_have_text("checked", timeout=20_000)
    expect(page.get_by_text("not yet")).to_have_count(0)  # the page as it ended (reloaded)
    expect(page.locator(".dry-run-note")).to_contain_text("nothing was changed")
    expect(page.locator(".progress-card dl.counters")).to_contain_text("Would be created")
    # What an import can do: no "Would be deleted" tile, which would always say 0.
    expect(page.locator(".progress-card dl.counters")).not_to_contain_text("deleted")
    expect(page.get_by_role("button", name="Roll back")).to_have_count(0)
    screenshot(page, "dry-run")
