"""The demo tour in a real browser: ``flask demo`` data and models, walked through as the admin.

A module-scoped server of its own (not the seeded one of conftest.py): a fresh SQLite file and Models
directory, ``flask demo`` (imports data/ and trains every model), then gunicorn. The admin goes through
the dashboard, a customer, tiers, bundles, churn, models and help, runs a dry-run retention campaign from
the High-risk list to its results, and uploads a sample file on the Imports page. The screenshots are
the ones the README shows (docs/screenshots/*.png, 1300 px wide, full page).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, REPO, browser_page, serve_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SAMPLE = REPO / "data" / "samples" / "transactions_loyalist.csv"
TIERS = ("Platinum", "Gold", "Silver", "Bronze")


@pytest.fixture(scope="module")
def demo_server(chromium_path, tmp_path_factory):
    """The portal on a free port over a database filled by ``flask demo`` (data imported, models trained)."""
    yield from serve_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture()
def tour_page(browser, demo_server):
    page = browser_page(browser, demo_server, width=1300)
    page.set_default_timeout(30_000)
    yield page
    page.context.close()


def _int(text: str) -> int:
    """A count as the page prints it ("1,234") as an int."""
    digits = re.sub(r"[^\d]", "", text)
    assert digits, f"no number in {text!r}"
    return int(digits)


def _kpi(page, label: str):
    """The big number link of the dashboard card whose label is exactly ``label``."""
    card = page.locator(".kpi-card").filter(has=page.locator("div.small", has_text=re.compile(f"^{re.escape(label)}$")))
    return card.locator("a.kpi").first


def test_demo_tour(tour_page, log_in, shot):
    page = tour_page
    log_in(page, ADMIN)

    # --- dashboard: every headline number is filled in and leads to the list behind it
    page.goto("/")
    expect(page.get_by_role("heading", name=re.compile("^Dashboard"))).to_be_visible()
    customers = _int(_kpi(page, "Customers").inner_text())
    assert customers >= 1000  # the demo has 5,000 customers (some may have no purchase)
    high = _int(_kpi(page, "High churn risk").inner_text())
    assert 0 < high < customers
    tier_counts = {t: _int(_kpi(page, t).inner_text()) for t in TIERS}
    assert all(n > 0 for n in tier_counts.values()), tier_counts
    assert sum(tier_counts.values()) <= customers
    assert _kpi(page, "Dead-stock value").inner_text().strip() not in {"", "—"}
    assert _kpi(page, "Revenue, last 30 days").inner_text().strip() not in {"", "—"}
    expect(page.locator("canvas[data-chart='tier-chart']")).to_be_visible()
    shot(page, "dashboard")

    _kpi(page, "High churn risk").click()
    page.wait_for_url(re.compile(r".*/churn\?.*band=High.*"))
    high_card = page.locator(".band-high")
    expect(high_card.get_by_role("heading", name="High risk")).to_be_visible()
    assert _int(high_card.locator(".kpi").inner_text()) == high  # the KPI and the list agree
    rows = page.locator("table.table-striped tbody tr")
    assert rows.count() > 0
    assert set(page.locator("tbody tr td[data-label='Band']").all_inner_texts()) == {"High"}
    shot(page, "churn")

    # --- a customer of that list: tier with the way up, churn band with its reasons
    links = page.locator("tbody tr td:first-child a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(min(links.count(), 10))]
    for href in hrefs:
        page.goto(href)
        if page.locator(".progress-message").count() and page.locator("ul.reasons li").count():
            break
    else:
        pytest.fail("none of the first High-risk customers shows a tier progress message and churn reasons")
    tier_text = page.locator(".card", has=page.get_by_role("heading", name="Loyalty tier")).locator(".kpi").inner_text()
    assert tier_text in (*TIERS, "No tier")
    expect(page.locator(".progress-message")).to_contain_text(re.compile(r"\d"))
    churn_card = page.locator(".card", has=page.get_by_role("heading", name="Churn risk"))
    expect(churn_card.locator(".kpi")).to_contain_text("High")
    expect(churn_card).to_contain_text("Recommended action:")
    assert all(r.strip() for r in page.locator("ul.reasons li").all_inner_texts())
    shot(page, "customer-detail")

    # --- tiers: the same member counts as the dashboard, each with its reward
    page.goto("/tiers")
    expect(page.get_by_role("heading", name="Loyalty tiers")).to_be_visible()
    for tier in TIERS:
        card = page.locator(f".card.tier-{tier.lower()}")
        assert _int(card.locator(".kpi").inner_text()) == tier_counts[tier], tier
        expect(card).to_contain_text("Reward:")
    expect(page.get_by_role("heading", name="What a typical member looks like")).to_be_visible()
    shot(page, "tiers")

    # --- bundles: a suggestion a manager can act on
    page.goto("/bundles")
    expect(page.get_by_role("heading", name="Dead stock and bundles")).to_be_visible()
    pitches = page.locator("#suggestions").get_by_text(re.compile(r"Put .+ next to .+"))
    assert pitches.count() >= 1
    expect(pitches.first).to_be_visible()
    expect(page.locator("#dead-stock")).to_be_visible()
    shot(page, "bundles")

    # --- models: the churn model's holdout metrics
    page.goto("/models")
    churn_model = page.locator("#model-churn")
    table = churn_model.locator("table", has_text="ROC-AUC")
    expect(table).to_be_visible()
    chosen = table.locator("tbody tr.table-success")
    expect(chosen).to_contain_text("(chosen)")
    roc_auc = float(chosen.locator("td").first.inner_text())
    assert 0.5 < roc_auc <= 1.0
    expect(page.locator("#model-segmentation")).to_contain_text("silhouette")
    shot(page, "models")

    # --- help: what the numbers mean, with the trained models listed
    page.goto("/help")
    expect(page.get_by_role("heading", name="Help: what the numbers mean")).to_be_visible()
    expect(page.locator("table.help-models tbody tr").first).to_be_visible()
    expect(page.get_by_role("heading", name="Churn bands and how the churn model is trained")).to_be_visible()
    shot(page, "help")

    # --- campaign, dry run: from the High-risk list to the results
    # Narrowed to the Bronze members at High risk: a dry run records a few messages a second, and the
    # whole High band (thousands) would take minutes.
    page.goto("/churn?band=High")
    page.get_by_label("Tier", exact=True).select_option("Bronze")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r".*tier=Bronze.*"))
    selection = page.locator("table.table-striped tbody tr").count()
    assert selection > 0 and page.locator("a[rel='next']").count() == 0  # one page: the table is the selection
    assert set(page.locator("tbody tr td[data-label='Tier']").all_inner_texts()) == {"Bronze"}
    page.get_by_role("link", name="Send retention offer to this selection").click()
    page.wait_for_url(re.compile(r".*/campaigns\?.*band=High.*"))
    expect(page.get_by_label("Churn band", exact=True)).to_have_value("High")
    expect(page.get_by_label("Tier", exact=True)).to_have_value("Bronze")
    page.get_by_label("Campaign name").fill("Win back High risk")
    page.get_by_label("Message", exact=True).fill(
        "Hi {first_name}, we miss you! 15% off your next visit with code {code}."
    )
    # A small selection: hold out a third so the control group is not rounded away.
    page.get_by_label("Control group (% of the audience, never messaged)").fill("34")
    summary = page.locator("#audience-summary")
    expect(summary.locator("[data-audience='total']")).to_have_text(str(selection), timeout=30_000)
    expect(page.locator("#exclusion-list li[data-exclusion]").first).to_be_visible()
    expect(summary.locator("[data-audience='control']")).not_to_have_text("0", timeout=30_000)
    messages = _int(summary.locator("[data-audience='messages']").inner_text())
    control = _int(summary.locator("[data-audience='control']").inner_text())
    excluded = _int(summary.locator("[data-audience='excluded']").inner_text())
    assert messages > 0 and control > 0
    assert messages + control + excluded == selection  # everyone matched is messaged, held out or excluded
    expect(page.locator("#phone-previews .bubble").first).to_contain_text("we miss you")
    assert "{code}" not in page.locator("#phone-previews .bubble").first.inner_text()
    shot(page, "campaign-builder")

    page.get_by_role("button", name="Save draft and review").click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+/confirm.*"))
    expect(page.get_by_role("heading", name=re.compile("Confirm “Win back High risk”"))).to_be_visible()
    expect(page.get_by_text("Dry run: no Twilio credentials are configured.")).to_be_visible()
    assert _int(page.locator("#confirm-messages").inner_text()) == messages
    held_out = f"{control:,} customer{'s are' if control != 1 else ' is'} held out as the control group"
    expect(page.locator("#confirm-summary")).to_contain_text(held_out)
    first_bubble = page.locator(".phone-preview .bubble").first
    expect(first_bubble).to_contain_text("we miss you")
    assert "{first_name}" not in first_bubble.inner_text() and "{code}" not in first_bubble.inner_text()
    shot(page, "campaign-confirm")

    page.get_by_role("button", name=re.compile(r"^Run dry: record")).click()
    page.wait_for_url(re.compile(r".*/campaigns/\d+$"))
    # The progress bar polls the job and reloads the page when it is done.
    expect(page.locator("#campaign-progress")).to_contain_text(
        f"{messages:,} of {messages:,} messages finished", timeout=180_000
    )
    expect(page.locator("h1 .badge")).to_have_text("done", timeout=30_000)
    expect(page.locator("div.progress > .progress-bar.bg-success").first).to_be_attached()
    counts = page.locator("#delivery-counts")
    expect(counts).to_be_visible()
    sent_box = counts.locator(".border", has=page.locator(".small", has_text=re.compile("^sent$")))
    assert _int(sent_box.locator(".kpi").inner_text()) == messages
    expect(page.get_by_text("Dry run: messages are written to the outbox")).to_be_visible()
    expect(page.locator("dl")).to_contain_text(f"({control:,} customer{'s' if control != 1 else ''}, never messaged)")
    uplift = page.locator("#uplift-table")
    if uplift.count():
        control_row = uplift.locator("tbody tr", has=page.locator("th", has_text=re.compile("^Control$")))
        assert _int(control_row.locator("td").first.inner_text()) == control
    expect(page.locator("#uplift-rate")).not_to_be_empty()
    assert page.locator("#recipients tbody tr td:nth-child(4)", has_text="dry-run").count() > 0
    shot(page, "campaign-results")

    # --- import: upload a sample file and watch its progress bar
    page.goto("/imports")
    page.get_by_label("What the file holds").select_option("transactions")
    page.get_by_label("File (CSV, CSV.GZ or XLSX)").set_input_files(str(SAMPLE))
    page.get_by_role("button", name="Upload and check").click()
    page.wait_for_url(re.compile(r".*/imports/\d+/mapping.*"))
    expect(page.get_by_role("heading", name=f"Check the columns of {SAMPLE.name}")).to_be_visible()
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_url(re.compile(r".*/imports/\d+$"))
    expect(page.get_by_role("heading", name=re.compile(rf"Import #\d+ · {re.escape(SAMPLE.name)}"))).to_be_visible()
    bar = page.locator(".job-progress")
    watched = bar.count() > 0  # a small file may be done before the page is drawn
    if watched:
        expect(bar.locator(".job-status")).to_have_text("done", timeout=180_000)
        shot(page, "import-progress")
    done = page.locator(".alert-success[role='status']")
    expect(done).to_be_visible(timeout=30_000)  # the page reloads with the import's summary
    expect(done).to_contain_text("new")
    expect(page.locator("dl")).to_contain_text("Rows in the file")
    if not watched:
        shot(page, "import-progress")
    assert page.js_errors == []
