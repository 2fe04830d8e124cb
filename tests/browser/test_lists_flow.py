"""A marketer's round trip in a real browser: log in, open a customer, filter, export, save a segment, log out."""

import csv
import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import MANAGER

pytestmark = pytest.mark.browser


def test_login_customer_filter_export_segment_logout(page, log_in, shot, tmp_path):
    page.goto("/login")
    shot(page, "login")
    log_in(page)
    shot(page, "dashboard-seeded")

    page.get_by_role("link", name="Customers", exact=True).first.click()
    page.wait_for_url("**/customers")
    assert page.locator("tbody tr").count() == 8
    shot(page, "customers")

    page.get_by_role("link", name="B001").click()
    page.wait_for_url(re.compile(r".*/customers/\d+$"))
    expect(page.get_by_role("heading", name=re.compile("Ada Lovelace"))).to_be_visible()
    shot(page, "customer")

    page.goto("/customers")
    page.get_by_label("Tier", exact=True).select_option("Gold")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*tier=Gold.*"))
    ids = page.locator("tbody tr td:first-child a").all_inner_texts()
    assert ids == ["B001", "B003", "B006"]
    # The live count leaves out the opted-out customer (B003) until the toggle is ticked.
    count = page.locator(".export-count")
    expect(page.locator(".export-count")).to_have_text("2")
    page.get_by_label("Include customers who opted out of SMS").check()
    expect(page.locator(".export-count")).to_have_text("3")
    page.get_by_label("Include customers who opted out of SMS").uncheck()
    expect(page.locator(".export-count")).to_have_text("2")
    assert count.inner_text() == "2"
    page.locator(".export-panel summary").click()
    shot(page, "customers-filtered-export")

    with page.expect_download() as info:
        page.get_by_role("button", name="CSV", exact=True).click()
    download = info.value
    assert re.fullmatch(r"customers-\d{8}-\d{4}\.csv", download.suggested_filename)
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with open(target, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["customer_id"] for r in rows] == ["B001", "B006"]
    assert rows[0]["phone"] == "+12025550100" and rows[0]["tier"] == "Gold" and rows[0]["monetary"] == "100.50"
    assert rows[1]["name"] == "'=cmd|' /C calc'!A0"  # a formula arrives as text

    page.get_by_label("Save these filters as a segment").fill("Gold customers")
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_url("**/segments")
    assert page.get_by_text("Segment 'Gold customers' saved.").is_visible()
    expect(page.locator(".segment-count")).to_have_text("2")
    shot(page, "segments")

    page.goto("/exports")
    assert page.locator("tbody tr").count() == 1 and "tier=Gold" in page.locator("tbody").inner_text()
    shot(page, "exports")

    page.locator(".account-menu").click()  # the account menu holds "Log out"
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/login.*"))
    page.goto("/customers")
    assert "/login" in page.url
    assert page.js_errors == []


def test_manager_sees_own_store_and_sorts(page, log_in, shot):
    log_in(page, MANAGER)
    page.goto("/customers")
    ids = page.locator("tbody tr td:first-child a").all_inner_texts()
    assert ids == ["B001", "B003", "B005", "B007"]  # the North store only
    page.get_by_role("link", name="Spend").click()
    page.wait_for_url(re.compile(r".*sort=-monetary.*"))
    assert page.locator("tbody tr td:first-child a").all_inner_texts() == ["B007", "B005", "B003", "B001"]
    page.get_by_label("Tier", exact=True).select_option("Platinum")
    page.get_by_label("Churn band", exact=True).select_option("High")
    page.get_by_role("button", name="Filter").click()
    assert page.get_by_text("No customer matches these filters").is_visible()
    shot(page, "customers-no-match")
    assert page.js_errors == []
