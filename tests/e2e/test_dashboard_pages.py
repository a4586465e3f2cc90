"""The dashboard's history, operation and export pages in a real browser (Playwright, Chromium).

Operations are started through the API with the page's session and CSRF token (what the
page's own script does), so these tests look only at how the pages tell the story: history
lines and the day's totals, audit records by key, the export entry, phone width, dark mode.
Screenshots go to ``docs/screenshots/`` when ``BULKOPS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import io
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from playwright.sync_api import Page, expect

from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import PASSWORD, XSS, Site, export, log_in, products, screenshot

# The same server and browser fixtures (module-scoped: one server for this module).
site = dashboard.site
browser = dashboard.browser

ZONE = "Europe/Paris"


@pytest.fixture
def page(browser: Any, site: Site) -> Any:
    context = browser.new_context(
        base_url=site.url,
        viewport={"width": 1280, "height": 900},
        timezone_id=ZONE,
        locale="en-GB",
    )
    context.set_default_timeout(15_000)
    the_page = context.new_page()
    the_page.on("dialog", lambda dialog: pytest.fail(f"unexpected dialog: {dialog.message}"))
    yield the_page
    context.close()


def start(page: Page, name: str, content: bytes, operation: str = "import", **options: Any) -> str:
    """Starts an operation as the dashboard's script does; returns its id."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    fields = {"operation_type": operation, "entity_type": options.pop("entity", "products")}
    fields.update({key: str(value).lower() for key, value in options.items()})
    response = page.request.post(
        "/api/v1/operations",
        multipart={**fields, "file": {"name": name, "mimeType": "text/csv", "buffer": content}},
        headers={"X-CSRF-Token": token},
    )
    assert response.status == 202, response.text()
    return str(response.json()["id"])


def ended(page: Page, op_id: str) -> dict[str, Any]:
    """The operation object once it has an outcome."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view: dict[str, Any] = page.request.get(f"/api/v1/operations/{op_id}").json()
        if view["outcome"]:
            return view
        time.sleep(0.1)
    raise AssertionError(f"operation {op_id} did not end")


def totals(page: Page) -> list[int]:
    return [int(t.replace(",", "")) for t in page.locator(".totals dd").all_inner_texts()]


def fits_a_phone(page: Page, path: str) -> None:
    page.goto(path)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{path} is {width}px wide at 390px"


def sku_csv(first: int, count: int, price: str = "1.50", bad: int = 0) -> bytes:
    lines = ["sku,name,category,price"]
    lines += [f"HIS-{i:05d},Item {i},Garden,{price}" for i in range(first, first + count)]
    lines += [f"HIS-BAD-{i},Broken {i},Garden,abc" for i in range(bad)]
    return ("\n".join(lines) + "\n").encode()


def test_history_lines_totals_and_outcome_filter(page: Page, site: Site) -> None:
    log_in(page)
    before = totals(page)
    created = ended(page, start(page, "spring-catalogue.csv", sku_csv(0, 1204)))
    assert created["outcome"] == "succeeded"
    updated = ended(page, start(page, "spring-prices.csv", sku_csv(0, 1204, "2.75", bad=6)))
    assert updated["outcome"] == "completed_with_errors"
    checked = ended(page, start(page, "summer.csv", sku_csv(5000, 12), validate_only=True))
    assert checked["outcome"] == "checked"

    page.goto("/operations")
    # The totals are the day's: three operations more, two imports' records, six failures
    # (a check changes nothing and its failures are predictions).
    assert totals(page) == [before[0] + 3, before[1] + 2408, before[2] + 6]
    expect(page.locator(".totals")).to_contain_text("Records changed today")

    line = page.locator(f"tr[data-op-id='{updated['id']}']")
    badge = line.locator(".badge")
    expect(badge).to_have_text("completed with 6 errors")
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 241, 204)"
    expect(line.locator(".op-what")).to_have_text("import products")
    expect(line.locator(".op-file")).to_have_text("spring-prices.csv")
    expect(line.locator(".op-summary")).to_have_text("1,204 updated · 6 failed")
    expect(line.locator(".op-actor")).to_have_text("editor@acme.example")
    when = line.locator("time")
    expect(when).to_have_text(re.compile(r"^(just now|\d+ min ago)$"))
    # The exact time on hover is the browser's local time (Paris here), not UTC.
    moment = datetime.fromisoformat(when.get_attribute("datetime") or "")
    local = moment.astimezone(ZoneInfo(ZONE))
    title = when.get_attribute("title") or ""
    assert local.strftime("%H:%M:%S") in title and str(local.year) in title, title
    # The server's own wording (before the script runs) is in that zone too, once known.
    html = page.request.get("/operations").text()
    assert re.search(rf'title="{local:%Y-%m-%d %H:%M}:\d\d CES?T"', html), "server fallback"

    check_line = page.locator(f"tr[data-op-id='{checked['id']}']")
    expect(check_line.locator(".badge")).to_have_text("checked")
    grey = check_line.locator(".badge").evaluate("e => getComputedStyle(e).backgroundColor")
    assert grey == "rgb(230, 233, 238)"
    expect(check_line.locator(".op-summary")).to_have_text("12 to create")
    expect(page.locator(f"tr[data-op-id='{created['id']}'] .op-summary")).to_have_text(
        "1,204 created"
    )

    # The filters' labels of one row line up (a date input, taller than a select, pushed its
    # label up), and their controls are of one height.
    tops = page.eval_on_selector_all(
        "form.filters label", "els => els.map(e => Math.round(e.getBoundingClientRect().top))"
    )
    assert tops[:6] == [tops[0]] * 6, tops  # Status … To, one row at this width
    heights = page.eval_on_selector_all(
        "form.filters select, form.filters input",
        "els => els.map(e => Math.round(e.getBoundingClientRect().height))",
    )
    assert len(set(heights)) == 1, heights

    page.get_by_label("Outcome").select_option("completed_with_errors")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.op-row")).to_have_count(1)
    expect(page.locator("tr.op-row .op-file")).to_have_text("spring-prices.csv")
    page.get_by_label("Outcome").select_option("checked")
    page.get_by_label("File name").fill("summer")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tr.op-row")).to_have_count(1)
    expect(page.locator("tr.op-row .op-what")).to_contain_text("import products")

    # The operation page: counts with separators, local times, no Python spellings.
    page.goto(f"/operations/{updated['id']}")
    expect(page.locator("dd[data-field=updated_records]")).to_have_text("1,204")
    config = page.locator("section", has=page.get_by_role("heading", name="Configuration"))
    expect(config).to_contain_text("chunk size1,000")
    expect(config).to_contain_text("validate onlyno")
    text = page.locator("main").inner_text()
    for python_word in ("False", "True", "None"):
        assert not re.search(rf"\b{python_word}\b", text), python_word
    created_time = page.locator("time[data-time=exact]").first
    expect(created_time).to_contain_text(local.strftime("%H:%M:%S"))


def test_audit_records_page_by_cursor_and_search_by_key(page: Page, site: Site) -> None:
    log_in(page)
    body = products(45, first=70_000).replace(b"DASH-70044", XSS.encode())
    op_id = start(page, "audit.csv", body)
    assert ended(page, op_id)["outcome"] == "succeeded"
    page.goto(f"/operations/{op_id}")
    audit = page.locator("#audit")
    keys = audit.locator(".record-key")
    expect(keys).to_have_count(20)
    expect(keys.first).to_have_text("DASH-70000")
    expect(keys.last).to_have_text("DASH-70019")
    expect(audit.get_by_role("link", name="Earlier records")).to_have_count(0)

    audit.get_by_role("link", name="Later records").click()
    expect(keys.first).to_have_text("DASH-70020")
    expect(keys).to_have_count(20)
    audit.get_by_role("link", name="Later records").click()
    expect(keys).to_have_count(5)
    expect(keys.last).to_have_text(XSS)  # a key that looks like markup is shown as text
    expect(audit.get_by_role("link", name="Later records")).to_have_count(0)
    audit.get_by_role("link", name="Earlier records").click()
    expect(keys.first).to_have_text("DASH-70020")
    expect(keys.last).to_have_text("DASH-70039")
    audit.get_by_role("link", name="Earlier records").click()
    expect(keys.first).to_have_text("DASH-70000")
    expect(audit.get_by_role("link", name="Earlier records")).to_have_count(0)

    audit.get_by_label("Find by sku").fill("dash-7003")
    audit.get_by_role("button", name="Find").click()
    expect(keys).to_have_count(10)
    expect(keys.first).to_have_text("DASH-70030")
    expect(audit).to_contain_text("whose sku contains “dash-7003”")
    audit.get_by_label("Find by sku").fill("<script>")
    audit.get_by_role("button", name="Find").click()
    expect(keys).to_have_count(1)
    expect(keys.first).to_have_text(XSS)
    audit.get_by_label("Find by sku").fill("NO-SUCH-SKU")
    audit.get_by_role("button", name="Find").click()
    expect(audit).to_contain_text("No record whose sku contains “NO-SUCH-SKU”.")
    audit.get_by_role("link", name="Show all").click()
    expect(keys).to_have_count(20)
    assert page.evaluate("window.__xss") is None


def test_a_rollback_s_conflicts_say_how_many_and_why(page: Page, site: Site) -> None:
    log_in(page)
    op_id = start(page, "undo.csv", products(12, first=80_000))
    assert ended(page, op_id)["outcome"] == "succeeded"
    later = start(page, "later.csv", b"sku,name\nDASH-80003,Renamed\n", operation="update")
    assert ended(page, later)["updated_records"] == 1
    token = page.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    asked = page.request.post(
        f"/api/v1/operations/{op_id}/rollback", headers={"X-CSRF-Token": token}
    )
    assert asked.status in (200, 202), asked.text()
    deadline = time.monotonic() + 60
    while page.request.get(f"/api/v1/operations/{op_id}").json()["status"] != "rolled_back":
        assert time.monotonic() < deadline, "the rollback did not end"
        time.sleep(0.1)

    page.goto(f"/operations/{op_id}")
    conflicts = page.locator("section[aria-labelledby=conflicts-title]")
    expect(conflicts).to_contain_text("1 row was not restored")
    expect(conflicts.locator(".record-key")).to_have_text(["DASH-80003"])
    conflicts.locator("details summary").first.click()
    expect(conflicts).to_contain_text("(name)")
    expect(page.locator("section[aria-labelledby=timings-title]")).to_contain_text(
        re.compile(r"Rolled back.+ by editor@acme\.example")
    )


def test_export_entry_writes_csv_and_xlsx(page: Page, site: Site) -> None:
    log_in(page)
    ended(page, start(page, "export-source.csv", sku_csv(9000, 30)))
    page.goto("/operations")
    page.get_by_role("link", name="Export", exact=True).first.click()
    expect(page).to_have_url(re.compile("/exports/new$"))
    expect(page.get_by_role("heading", name="Export", exact=True)).to_be_visible()
    page.get_by_label("Entity").select_option("products")
    # A column needs its value.
    page.get_by_label("Column").select_option("sku")
    page.get_by_role("button", name="Start export").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter the value of “sku”")
    screenshot(page, "export")

    export(page, "products", "CSV", where=("sku", "HIS-09007"))
    expect(page.locator(".title-row [data-field=status]")).to_have_text(
        "succeeded", timeout=20_000
    )
    expect(page.locator(".progress-card")).to_contain_text("Rows written1")
    expect(page.locator(".progress-card")).to_contain_text("bytes")
    with page.expect_download() as csv_file:
        page.get_by_role("link", name=re.compile("Download the products export")).click()
    lines = Path(csv_file.value.path()).read_text().splitlines()
    assert lines == ["sku,name,description,category,price", "HIS-09007,Item 9007,,Garden,1.50"]

    export(page, "products", "Excel workbook (.xlsx)", where=("category", "Garden"))
    expect(page.locator(".title-row [data-field=status]")).to_have_text(
        "succeeded", timeout=20_000
    )
    with page.expect_download() as xlsx_file:
        page.get_by_role("link", name=re.compile(r"Download the products export \(Excel")).click()
    sheet = load_workbook(io.BytesIO(Path(xlsx_file.value.path()).read_bytes())).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("sku", "name", "description", "category", "price")
    assert len(rows) - 1 == int(page.locator("dd[data-field=processed_records]").inner_text()
                                .replace(",", ""))
    assert all(row[3] == "Garden" for row in rows[1:]) and len(rows) > 30

    page.goto("/exports/new")
    recent = page.locator(".recent li")
    expect(recent.first).to_contain_text("products (category = Garden), Excel workbook")
    expect(recent.first.get_by_role("link", name=re.compile("^Download"))).to_be_visible()


def test_every_page_fits_a_phone_and_follows_dark_mode(page: Page, site: Site) -> None:
    log_in(page)
    long_name = "quarterly-catalogue-update-for-all-warehouses-and-regions-final-v2-" * 2
    op_id = start(page, f"{long_name}{XSS}.csv", products(30, bad_every=7, first=80_000))
    assert ended(page, op_id)["outcome"] == "completed_with_errors"
    export(page, "products")
    export_id = page.url.rsplit("/", 1)[1]
    ended(page, export_id)

    page.goto("/operations")
    expect(page.locator(f"tr[data-op-id='{op_id}'] .op-file")).to_contain_text(XSS)
    screenshot(page, "history")
    page.goto(f"/operations/{op_id}")
    expect(page.locator(".file-name").first).to_contain_text(XSS)
    page.locator(".records details").first.locator("summary").click()
    screenshot(page, "operation")
    assert page.evaluate("window.__xss") is None

    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/operations", f"/operations/{op_id}", f"/operations/{export_id}",
                 "/exports/new", "/operations/new", "/operations/not-an-operation"):
        fits_a_phone(page, path)
    page.goto("/operations")
    screenshot(page, "history-phone")
    page.goto(f"/operations/{op_id}")
    screenshot(page, "operation-phone")
    page.get_by_role("button", name="Log out").click()
    fits_a_phone(page, "/login")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="dark")
    page.get_by_label("Email").fill("editor@acme.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/operations$"))

    def luminance(css: str) -> float:
        red, green, blue = (int(v) for v in re.findall(r"\d+", css)[:3])
        return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255

    for path, name in (("/operations", "history-dark"), (f"/operations/{op_id}", "operation-dark"),
                       ("/exports/new", "export-dark")):
        page.goto(path)
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        text = page.evaluate("getComputedStyle(document.querySelector('h1')).color")
        card = page.evaluate("getComputedStyle(document.querySelector('.card, .totals div'))"
                             ".backgroundColor")
        assert luminance(background) < 0.15 and luminance(card) < 0.2, (path, background, card)
        assert luminance(text) > 0.8, (path, text)
        screenshot(page, name)
    amber = page.goto("/operations") and page.locator(f"tr[data-op-id='{op_id}'] .badge")
    assert amber
    colour = amber.evaluate("e => getComputedStyle(e).color")
    assert luminance(colour) > 0.6  # light text on a dark amber badge
