"""Campaign pages in a real browser, at 390 px and 1366 px: "Send an offer" opens the builder with a filled
template and an audience of one; times carry the store's zone; progress moves while a campaign sends; the
results panel gives the real reason there is no conclusion.

A module-scoped server of its own (gunicorn, one process with threads, jobs in a child process as
``make run`` does): two stores in America/Chicago with 20 opted-in customers each, one manager per
store (each width uses its own store, so one run's frequency cap never empties the other's audience),
quiet hours off and a send rate of 2 messages a second, so the progress has time to be watched.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import _run, browser_page, gunicorn, server_env

pytestmark = pytest.mark.browser

PHONE, DESK = 390, 1366
PASSWORD = "amber-falcon-river-47"
STORES = {PHONE: "Lakeside", DESK: "Riverside"}

SEED = r'''
from datetime import datetime, timezone
from app import create_app
from portal.extensions import db
from portal.models import Customer, Store
from portal.services import settings

app = create_app()
with app.app_context():
    for s, name in enumerate(("Lakeside", "Riverside")):
        store = Store(name=name, timezone="America/Chicago", sender_name=name, phone_region="US")
        db.session.add(store)
        db.session.flush()
        for i in range(20):
            db.session.add(Customer(
                external_id=f"{name[0]}{i + 1:03d}", name=f"{['Ada', 'Ben', 'Cy', 'Di'][i % 4]} {name} {i}",
                phone=f"+1202555{s * 100 + i + 200:04d}", store_id=store.id, sms_consent="opted_in",
                sms_consent_at=datetime(2025, 1, 1, tzinfo=timezone.utc), sms_consent_source="import",
                churn_band="High"))
    db.session.commit()
    errors = settings.update(
        {"sms.quiet_start": "00:00", "sms.quiet_end": "00:00", "sms.rate_per_second": "2"}, "browser-tests")
    assert not errors, errors
'''


@pytest.fixture(scope="module")
def campaign_server(chromium_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("campaign-pages")
    port, env = server_env(tmp, "campaigns")
    _run(["-m", "flask", "init-db"], env)
    _run(["-"], env, input=SEED)
    for store in STORES.values():
        email = f"boss@{store.lower()}.example.com"
        args = ["-m", "flask", "users", "create", email, "--role", "manager", "--store", store, "--password-stdin"]
        _run(args, env, input=PASSWORD + "\n")
    with gunicorn(env, tmp, port, "campaign pages", 60) as base:
        yield base


def _fits(page) -> None:
    """Nothing on the page's own content (``main``) sticks out of the window, so it never pans sideways.

    The navigation bar is the layout's (tests/browser/test_layout.py); it is left out here so this test
    names the campaign pages' own culprits.
    """
    culprits = page.evaluate("""() => {
      const w = window.innerWidth, out = [];
      for (const el of document.querySelectorAll('main *')) {
        const r = el.getBoundingClientRect();
        if (r.right > w + 1 && r.width > 0 && !el.closest('.table-responsive')) {
          out.push(el.tagName.toLowerCase() + '#' + el.id + '.' + String(el.className).slice(0, 40)
                   + ' → ' + Math.round(r.right));
        }
      }
      const main = document.querySelector('main');
      if (main.scrollWidth > main.clientWidth + 1) { out.push('main scrolls: ' + main.scrollWidth); }
      return out.slice(0, 6);
    }""")
    assert not culprits, f"{page.url}: wider than the {page.viewport_size['width']} px window: {culprits}"


@pytest.mark.parametrize("width", [PHONE, DESK], ids=["phone", "desk"])
def test_send_an_offer_progress_and_the_real_reason(browser, campaign_server, shot, width):
    store = STORES[width]
    page = browser_page(browser, campaign_server, width=width, height=900)
    page.set_default_timeout(30_000)
    page.goto("/login")
    page.get_by_label("E-mail").fill(f"boss@{store.lower()}.example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)

    # --- "Send an offer" (the link the customer page and churn rows carry): template and audience of one
    one = f"{store[0]}003"
    page.goto(f"/campaigns?customer={one}&purpose=win_back")
    template = page.get_by_label("Message", exact=True)
    expect(template).to_have_value(re.compile(r"^Hi \{first_name\}, we miss you at \{store\}!"))
    expect(page.get_by_label("Campaign name")).to_have_value(f"Win-back for {one}")
    expect(page.locator("#target-customer")).to_contain_text(f"Exactly one customer: {one}")
    summary = page.locator("#audience-summary")
    expect(summary.locator("[data-audience='total']")).to_have_text("1")
    expect(summary.locator("[data-audience='eligible']")).to_have_text("1")
    expect(page.locator("#phone-previews .bubble").first).to_contain_text(f"we miss you at {store}!")
    _fits(page)
    shot(page, f"campaign-send-an-offer-{'phone' if width == PHONE else 'desk'}")

    # another store's customer: said plainly, not an empty audience without a word
    other = f"{STORES[DESK if width == PHONE else PHONE][0]}003"
    page.goto(f"/campaigns?customer={other}&purpose=win_back")
    expect(page.locator("#audience-error")).to_contain_text(f"No customer with the id “{other}” in your stores")

    # --- a campaign to the whole store: confirm (times in the store's zone), send, watch the progress
    page.goto("/campaigns?purpose=win_back&band=High")
    page.get_by_label("Campaign name").fill(f"Win back {store}")
    expect(summary.locator("[data-audience='messages']")).to_have_text("18")  # 20, 2 held out (10 %)
    page.get_by_role("button", name="Save draft and review").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+/confirm$"))
    expect(page.locator("#confirm-expires")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d 23:59 C[SD]T$"))
    expires = page.locator("#confirm-expires").inner_text()
    _fits(page)
    page.get_by_role("button", name=re.compile(r"^Run dry: record 18 messages")).click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    expect(page.locator("#campaign-expires")).to_have_text(expires)  # the same words as the confirm page

    seen = set()
    deadline = time.monotonic() + 90
    progress = page.locator("#campaign-progress")
    while time.monotonic() < deadline:
        match = re.match(r"(\d+) of 18 messages finished", progress.inner_text())
        if match:
            seen.add(int(match.group(1)))
        if 18 in seen:
            break
        time.sleep(0.3)
    between = sorted(n for n in seen if 0 < n < 18)
    assert between, f"the page showed only {sorted(seen)}: no progress while sending"
    assert 18 in seen
    expect(page.locator("h1 .badge")).to_have_text("done", timeout=30_000)

    # --- results: the actual reason, with the real counts, and what to expect
    page.reload()
    expect(page.locator("#uplift-rate")).to_contain_text(
        "The groups are too small to conclude: 18 messaged and 2 in the control group; each group needs at least 30."
    )
    expect(page.locator("#results-expected")).to_contain_text("No reliable result can be expected")
    _fits(page)
    shot(page, f"campaign-progress-results-{'phone' if width == PHONE else 'desk'}")

    # --- the list: sent, redeemed, revenue and lift per campaign
    page.goto("/campaigns")
    row = page.locator("#campaign-list tbody tr").first
    expect(row.locator("td[data-label='Sent']")).to_have_text("18")
    expect(row.locator("td[data-label='Redeemed']")).to_have_text("0")
    expect(row.locator("td[data-label='Revenue']")).to_have_text("$0.00")
    expect(row.locator("td[data-label='Lift']")).to_have_text("too few customers")
    _fits(page)

    # --- a dry run is a rehearsal of the real thing: the 18 it "sent" are now inside the frequency cap
    page.goto("/campaigns?band=High")
    cap = page.locator("[data-exclusion='frequency_cap']")
    expect(cap).to_contain_text("Messaged (or dry-run messaged) within the frequency cap: 18")
    expect(summary.locator("[data-audience='eligible']")).to_have_text("2")  # the control group got nothing
    assert page.js_errors == []
    page.context.close()
