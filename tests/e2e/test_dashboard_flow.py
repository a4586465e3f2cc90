"""The review flow in a real browser: upload, review (preview, mapping, reading options),
check (planned changes), apply, and fixing failed rows in place.

Uses the server, worker and browser of ``test_dashboard`` (SQLite, Debian's Chromium).
Screenshots of the review and check pages go to ``docs/screenshots/`` with
``BULKOPS_SCREENSHOTS=1``.
"""

from __future__ import annotations

import io
import re
from typing import Any

from openpyxl import Workbook
from playwright.sync_api import Page, expect

from bulkops import engine
from tests.e2e import test_dashboard as dashboard
from tests.e2e.test_dashboard import XSS, Site, log_in, screenshot
from tests.helpers import run as run_operation
from tests.helpers import write_csv

# The server, worker and browser of the dashboard's tests (one server for this module).
site = dashboard.site
browser = dashboard.browser
page = dashboard.page

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
STATUS = ".title-row [data-field=status]"


def choose_file(
    page: Page,
    name: str,
    content: bytes,
    *,
    entity: str = "products",
    operation: str = "import",
    mime: str = "text/csv",
) -> None:
    """New operation: entity and type, then the file; the upload opens its review page."""
    page.goto("/operations/new")
    page.get_by_label("Entity").select_option(entity)
    page.get_by_label("Type").select_option(operation)
    page.get_by_label("CSV or Excel file").set_input_files(
        {"name": name, "mimeType": mime, "buffer": content}
    )
    expect(page).to_have_url(re.compile(r"/uploads/[0-9a-f-]+$"))


def csv_rows(header: str, rows: list[str]) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def seed(site: Site, tmp_path: Any, name: str, text: str) -> None:
    ctx = engine.Context(site.store, site.settings)
    result = run_operation(ctx, site.org_id, "import", "products", write_csv(tmp_path / name, text))
    assert result.status.value == "completed", result


def wait_until(page: Page, text: str) -> None:
    expect(page.locator(STATUS)).to_have_text(text, timeout=30_000)


def mapping_row(page: Page, header: str) -> Any:
    return page.locator("table.mapping tbody tr").filter(
        has=page.locator(".column-name", has_text=re.compile(f"^{re.escape(header)}$"))
    )


def test_csv_review_check_planned_changes_apply(page: Page, site: Site, tmp_path: Any) -> None:
    seed(
        site,
        tmp_path,
        "seed.csv",
        "sku,name,price\n" + "".join(f"FLOW-C-{i:03d},Old {i},1.00\n" for i in range(10)),
    )
    log_in(page)
    body = csv_rows("sku,name,price", [f"FLOW-C-{i:03d},Product {i},{i + 2}.50" for i in range(40)])
    choose_file(page, "catalogue.csv", body)
    expect(page.locator("table.preview tbody tr")).to_have_count(20)
    expect(page.locator("table.preview tbody")).to_contain_text("FLOW-C-019")
    expect(mapping_row(page, "price").locator(".how")).to_have_text("exact")
    expect(page.get_by_label("Delimiter")).to_have_value(",")
    review_url = page.url
    # Leaving and coming back keeps the upload: the review page is a URL.
    page.goto("/operations")
    page.goto(review_url)
    expect(page.locator("table.preview tbody tr")).to_have_count(20)
    screenshot(page, "review")

    page.get_by_role("button", name="Check", exact=True).click()
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    wait_until(page, "checked")
    plan = page.locator("#planned-changes")
    # What an import can do, said of products: no "delete 0", no "Delete (0)" button.
    expect(plan).to_contain_text("would create 30 products and update 10 products")
    expect(plan.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    rows = plan.locator("table.plan tbody tr")
    expect(rows).to_have_count(25)
    # An update shows before → after, the change highlighted.
    first = rows.first
    expect(first).to_contain_text("FLOW-C-000")
    expect(first.locator("del.before", has_text="1.00")).to_be_visible()
    expect(first.locator("ins.after", has_text="2.50")).to_be_visible()
    assert first.locator("ins.after").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    ) not in ("rgba(0, 0, 0, 0)", "transparent")
    screenshot(page, "check")
    plan.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(15)
    expect(plan.locator("[data-plan-status]")).to_contain_text("Page 2: planned changes 26 to 40")
    expect(rows.first).to_contain_text("FLOW-C-025")
    plan.get_by_role("button", name="Update (10)").click()
    expect(rows).to_have_count(10)
    expect(plan.get_by_role("button", name="Next page")).to_be_disabled()

    page.get_by_role("button", name=re.compile("^Apply: import products now")).click()
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    wait_until(page, "succeeded")
    expect(page.locator("dd[data-field=created_records]")).to_have_text("30")
    expect(page.locator("dd[data-field=updated_records]")).to_have_text("10")
    expect(page.locator("progress[data-field=progress]")).to_have_attribute("value", "100")


def workbook(rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.title = "Artikel"
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def test_xlsx_needs_a_column_mapped_by_hand_and_the_mapping_is_remembered(
    page: Page, site: Site
) -> None:
    log_in(page)
    rows: list[list[Any]] = [["Artikelnummer", "name", "price"]]
    rows += [[f"FLOW-X-{i:03d}", f"Workbook product {i}", f"{i + 1}.25"] for i in range(30)]
    choose_file(page, "artikel.xlsx", workbook(rows), mime=XLSX_TYPE)
    expect(page.get_by_label("Sheet")).to_have_value("Artikel")
    # Required-field gating: sku is mapped by no column, so Check waits.
    missing = page.locator("[data-review-missing]")
    expect(missing).to_contain_text("Required and not mapped: sku")
    check = page.get_by_role("button", name="Check", exact=True)
    expect(check).to_be_disabled()
    expect(page.get_by_role("button", name="Apply without checking")).to_be_disabled()
    row = mapping_row(page, "Artikelnummer")
    expect(row.locator(".how")).to_have_text("no match")
    row.locator("select").select_option("sku")
    expect(row.locator(".how")).to_have_text("your choice")
    expect(missing).to_be_hidden()
    expect(check).to_be_enabled()
    expect(page.locator("table.preview thead")).to_contain_text("→ sku")

    check.click()
    wait_until(page, "checked")
    plan = page.locator("#planned-changes")
    expect(plan.locator("table.plan tbody tr")).to_have_count(25)
    plan.get_by_role("button", name="Next page").click()
    expect(plan.locator("table.plan tbody tr")).to_have_count(5)
    expect(plan.locator("table.plan tbody")).to_contain_text("FLOW-X-029")
    page.get_by_role("button", name=re.compile("^Apply:")).click()
    wait_until(page, "succeeded")
    expect(page.locator("dd[data-field=created_records]")).to_have_text("30")

    # The second upload with this header gets the mapping that operation used.
    body = csv_rows("Artikelnummer,name,price", ["FLOW-X-100,Again,3.00"])
    choose_file(page, "artikel-again.csv", body)
    row = mapping_row(page, "Artikelnummer")
    expect(row.locator("select")).to_have_value("sku")
    expect(row.locator(".how")).to_have_text("saved")
    expect(page.get_by_role("button", name="Check", exact=True)).to_be_enabled()


def test_an_encoding_is_proposed_and_can_be_changed(page: Page, site: Site) -> None:
    log_in(page)
    body = "sku,name,price\nFLOW-E-1,Crème brûlée,4.50\n".encode("windows-1252")
    choose_file(page, "excel.csv", body)
    expect(page.locator("[data-review-notes]")).to_contain_text("windows-1252")
    encoding = page.get_by_label("Encoding")
    expect(encoding).to_have_value("windows-1252")
    preview = page.locator("table.preview tbody")
    expect(preview).to_contain_text("Crème brûlée")
    encoding.select_option("windows-1250")
    expect(preview).to_contain_text("Crčme")
    # Read as UTF-8 the row cannot be read: the preview says so before anything runs.
    encoding.select_option("utf-8")
    expect(preview.locator("tr.unreadable")).to_contain_text("not valid UTF-8")
    expect(page.locator("[data-review-preview-note]")).to_contain_text(
        "1 of them cannot be read with these settings"
    )
    encoding.select_option("windows-1252")
    expect(preview).to_contain_text("Crème brûlée")
    expect(preview.locator("tr.unreadable")).to_have_count(0)
    # The choice is kept for the upload: coming back reads it so.
    page.reload()
    expect(page.get_by_label("Encoding")).to_have_value("windows-1252")
    # An upload that does not exist (or was deleted unused) says so.
    response = page.goto("/uploads/0b7c6c58-0000-4000-8000-000000000000")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Upload not found")).to_be_visible()


def test_fix_three_failed_rows_in_place(page: Page, site: Site) -> None:
    log_in(page)
    lines = [f"FLOW-F-{i:03d},Fixable {i},{'abc' if i in (2, 5, 7) else '1.50'}" for i in range(10)]
    choose_file(page, "fixable.csv", csv_rows("sku,name,price", lines))
    page.get_by_role("button", name="Apply without checking").click()
    wait_until(page, "completed with 3 errors")
    fix = page.locator("#fix-errors")
    inputs = fix.locator("input[data-fix-cell]")
    expect(inputs).to_have_count(3)
    recheck = fix.get_by_role("button", name=re.compile("Re-check"))
    expect(recheck).to_be_disabled()
    for row in (4, 7, 9):  # spreadsheet rows of records 2, 5 and 7
        fix.get_by_label(f"Row {row}, price").fill("2.75")
    expect(recheck).to_have_text("Re-check the 3 fixed rows")
    recheck.click()
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+$"))
    wait_until(page, "checked")
    expect(page.locator("dd[data-field=created_records]")).to_have_text("3")
    expect(page.locator("dd[data-field=failed_records]")).to_have_text("0")
    expect(page.locator(".file-name").first).to_contain_text("fixed-rows-of-fixable.csv")
    rows = page.locator("#planned-changes table.plan tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("FLOW-F-002")
    expect(rows.first.locator("ins.after", has_text="2.75")).to_be_visible()


def test_a_script_file_name_and_header_are_shown_as_text(page: Page, site: Site) -> None:
    log_in(page)
    body = csv_rows(f"sku,name,price,{XSS}", [f"FLOW-S-1,Scripted,1.00,{XSS}"])
    choose_file(page, f"{XSS}.csv", body)
    expect(page.locator("[data-review=file_name]")).to_have_text(f"{XSS}.csv")
    row = mapping_row(page, XSS)
    expect(row.locator("select")).to_have_value("")
    expect(page.locator("table.preview thead")).to_contain_text(XSS)
    expect(page.locator("table.preview tbody")).to_contain_text(XSS)
    page.get_by_role("button", name="Check", exact=True).click()
    wait_until(page, "checked")
    expect(page.locator(".file-name").first).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None


def test_abbreviated_columns_are_suggested_with_a_value_they_hold(
    page: Page, site: Site
) -> None:
    log_in(page)
    body = csv_rows("SKU,Name,Desc,Cat", ["FLOW-A-1,Saw,,", "FLOW-A-2,Drill,Cordless,Tools"])
    choose_file(page, "short-names.csv", body)
    for header, field in (("Desc", "description"), ("Cat", "category")):
        row = mapping_row(page, header)
        expect(row.locator("select")).to_have_value(field)
        expect(row.locator(".how")).to_contain_text("similar")
    # Blank in the first row: the first value shown is the next row's.
    expect(mapping_row(page, "Desc").locator("td.sample")).to_have_text("Cordless")
    expect(mapping_row(page, "Name").locator("td.sample")).to_have_text("Saw")


def test_a_file_of_another_entity_is_said_so_with_a_way_back(page: Page, site: Site) -> None:
    log_in(page)
    choose_file(page, "stock.csv", csv_rows("sku,warehouse_code,quantity", ["A-1,W-1,3"]))
    notice = page.locator("[data-review-other]")
    expect(notice).to_be_visible()
    expect(notice).to_have_text(
        "These are the columns of inventory, not of products. If the file holds inventory, "
        "start again with inventory."
    )
    notice.get_by_role("link", name="start again with inventory").click()
    expect(page).to_have_url(re.compile(r"/operations/new\?entity=inventory$"))
    expect(page.get_by_label("Entity")).to_have_value("inventory")
    # A products file shows no such notice.
    choose_file(page, "products.csv", csv_rows("sku,name", ["A-1,Rake"]))
    expect(page.locator("table.mapping tbody tr")).to_have_count(2)
    expect(page.locator("[data-review-other]")).to_be_hidden()


def test_the_review_and_check_pages_fit_a_phone(page: Page, site: Site) -> None:
    log_in(page)
    header = "sku,name,description,price,a_very_long_column_name_that_goes_on_and_on"
    lines = [f"FLOW-P-{i:03d},Phone {i},{'long words ' * 12},{i}.00,{'x' * 80}" for i in range(30)]
    choose_file(page, "phone.csv", csv_rows(header, lines))
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("table.preview tbody tr")).to_have_count(20)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "review-phone")
    mapping_row(page, "a_very_long_column_name_that_goes_on_and_on").locator(
        "select"
    ).select_option("")
    page.get_by_role("button", name="Check", exact=True).click()
    wait_until(page, "checked")
    expect(page.locator("#planned-changes table.plan tbody tr")).to_have_count(25)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "check-phone")
