"""The automations pages in a real browser, at 390 px and 1366 px: switch a flow on, see who it would
message today with every exclusion counted and three real example messages, edit it (a bad placeholder
is refused with the reason), and read the results panel's honest "not enough data yet".

A module-scoped server of its own (gunicorn, as ``make run`` does): one store in America/Chicago with
24 customers in the High churn band (4 of them opted out), and its manager.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import _run, browser_page, gunicorn, server_env

pytestmark = pytest.mark.browser

PHONE, DESK = 390, 1366
PASSWORD = "amber-falcon-river-47"
MANAGER = "boss@lakeside.example.com"

SEED = r'''
from datetime import datetime, timedelta, timezone
from app import create_app
from portal.extensions import db
from portal.models import Customer, Store
from portal.services import settings

app = create_app()
with app.app_context():
    db.create_all()  # the schema of portal/models.py (migrations are tested in tests/web/test_migrations.py)
    store = Store(name="Lakeside", timezone="America/Chicago", sender_name="Lakeside", phone_region="US")
    db.session.add(store)
    db.session.flush()
    for i in range(24):
        db.session.add(Customer(
            external_id=f"L{i + 1:03d}", name=f"{['Ada', 'Ben', 'Cy', 'Di'][i % 4]} Lake {i}",
            phone=f"+1202555{i + 300:04d}", store_id=store.id,
            sms_consent="opted_out" if i % 6 == 5 else "opted_in",
            sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc), sms_consent_source="import",
            churn_band="High", last_purchase_at=datetime.now() - timedelta(days=50)))
    db.session.commit()
    errors = settings.update({"sms.quiet_start": "00:00", "sms.quiet_end": "00:00"}, "browser-tests")
    assert not errors, errors
'''


@pytest.fixture(scope="module")
def flows_server(chromium_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flows-pages")
    port, env = server_env(tmp, "flows")
    _run(["-"], env, input=SEED)
    args = ["-m", "flask", "users", "create", MANAGER, "--role", "manager", "--store", "Lakeside", "--password-stdin"]
    _run(args, env, input=PASSWORD + "\n")
    with gunicorn(env, tmp, port, "flows pages", 60) as base:
        yield base


def _fits(page) -> None:
    """The page's own content is no wider than the window (the shared navbar is the layout test's business)."""
    main, window = page.evaluate("[document.querySelector('main').scrollWidth, window.innerWidth]")
    assert main <= window, f"{page.url}: the content is {main} px wide in a {window} px window"


@pytest.mark.parametrize("width", [PHONE, DESK], ids=["phone", "desk"])
def test_flows_page_switch_preview_edit_results(browser, flows_server, shot, width):
    page = browser_page(browser, flows_server, width=width, height=900)
    page.set_default_timeout(30_000)
    page.goto("/login")
    page.get_by_label("E-mail").fill(MANAGER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    label = "phone" if width == PHONE else "desk"

    page.goto("/flows")
    row = page.locator("[data-flow='birthday']")
    expect(row.locator("[data-state]")).to_have_text(re.compile("On|Off"))
    for kind in ("win_back", "near_tier", "tier_up", "bundle", "second_purchase", "birthday"):
        expect(page.locator(f"[data-flow='{kind}']")).to_have_count(1)
    _fits(page)
    shot(page, f"flows-list-{label}")

    # Switch the birthday flow on, then off again (each width flips it once, whatever the other did).
    before = row.locator("[data-state]").inner_text()
    row.get_by_role("button", name=re.compile("Switch (on|off) Birthday")).click()
    expect(page.locator(".alert-success")).to_contain_text("Birthday is")
    expect(page.locator("[data-flow='birthday'] [data-state]")).not_to_have_text(before)

    # The win-back flow: 24 named, 4 opted out, 20 would enter (messages and a random control group).
    page.get_by_role("link", name="Win-back").click()
    page.wait_for_url(re.compile(r".*/flows/\d+$"))
    expect(page.locator("#preview-summary")).to_contain_text("The rule names 24 customers; 20 would enter today")
    expect(page.locator("#preview-exclusions")).to_contain_text("Opted out: 4")
    examples = page.locator("#preview-examples li")
    expect(examples).to_have_count(3)
    expect(examples.first).to_contain_text("We miss you")
    expect(examples.first).to_contain_text("Reply STOP to opt out")
    expect(page.locator("#not-enough")).to_contain_text("No customer has entered this flow yet")
    _fits(page)
    shot(page, f"flows-detail-{label}")

    # Edit: an unknown placeholder is refused with the reason, a good template is saved.
    page.get_by_role("link", name="Edit").click()
    message = page.get_by_label("Message")
    message.fill("Hi {first_name}, {gift}")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".invalid-feedback")).to_contain_text("Unknown placeholder {gift}")
    _fits(page)
    message = page.get_by_label("Message")
    message.fill("We miss you, {first_name}! {store} has 15% off for you: code {code} until {expires}.")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/flows/\d+$"))
    expect(page.locator(".alert-success")).to_contain_text("Win-back saved")
    assert not page.js_errors, page.js_errors
