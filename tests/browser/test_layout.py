"""Every page fits a phone (390 px) and a desk (1366 px): no sideways panning, lists readable as cards.

A demo store of its own (``flask demo``: 5,000 customers, every model trained) plus one dry-run campaign
that was sent (results, recipients) and one draft (the confirm page), so each page shows real data. The
admin opens every GET page and the document must be no wider than the window. Wide tables may scroll
inside their own box (a cohort matrix on a phone), never the page. Phone screenshots (the top 2,400 px)
are written next to the desktop ones of the demo tour: docs/screenshots/<name>-phone.png.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN, SCREENSHOTS, browser_page, run_long, serve_demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PHONE, DESK = 390, 1366
PHONE_SHOT_HEIGHT = 2400  # the first screens of a phone page: full pages of 50 cards would be 16,000 px
TEMPLATE = "Hi {first_name}, we miss you! 15% off your next visit with code {code}."
# (path, screenshot name at phone width or None); {sent}, {draft} are the campaigns made by the fixture.
PAGES = [
    ("/", "dashboard"),
    ("/customers", "customers"),
    ("/customers/1", "customer-detail"),
    ("/tiers", "tiers"),
    ("/bundles", "bundles"),
    ("/churn", "churn"),
    ("/campaigns", "campaign-builder"),
    ("/campaigns/{sent}", "campaign-results"),
    ("/campaigns/{draft}/confirm", "campaign-confirm"),
    ("/imports", "imports"),
    ("/imports/1", None),
    ("/models", "models"),
    ("/help", "help"),
    ("/users", None),
    ("/users/1", None),
    ("/stores", None),
    ("/stores/1", None),
    ("/settings", "settings"),
    ("/audit", None),
    ("/segments", "segments"),
    ("/exports", None),
    ("/account/password", None),
    ("/flows", None),
    ("/flows/1", None),
    ("/flows/replies", None),
    ("/campaigns/templates", None),
    ("/account/tokens", None),
    ("/account/mail", None),
    ("/admin/mail", None),
    ("/admin/webhooks", None),
    ("/api/v1/docs", None),
]


def _campaigns(env):
    """One dry-run campaign sent to the Bronze members at High risk, and one to the Medium band left as a draft."""
    created = {}
    for key, name, audience in (
        ("sent", "Win back Bronze", "band=High&tier=Bronze"),
        ("draft", "Medium risk reminder", "band=Medium"),
    ):
        out = run_long(
            ["-m", "flask", "campaign", "create", name, "--filter", audience, "--template", TEMPLATE], env, 120
        )
        created[key] = int(out.stdout.strip().splitlines()[-1])
    run_long(["-m", "flask", "campaign", "send", str(created["sent"]), "--yes"], env, 300)
    _campaigns.ids = created


@pytest.fixture(scope="module")
def layout_server(chromium_path, tmp_path_factory):
    yield from serve_demo(tmp_path_factory.mktemp("layout"), prepare=[_campaigns])


def _logged_in(browser, base, width, log_in):
    page = browser_page(browser, base, width=width)
    page.set_default_timeout(30_000)
    log_in(page, ADMIN)
    return page


def _phone_shot(page, name: str) -> None:
    """docs/screenshots/<name>-phone.png: the top of the page as a phone shows it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = min(PHONE_SHOT_HEIGHT, page.evaluate("document.documentElement.scrollHeight"))
    page.screenshot(
        path=str(SCREENSHOTS / f"{name}-phone.png"),
        full_page=True,
        clip={"x": 0, "y": 0, "width": PHONE, "height": height},
    )


def _overflow(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def _widest(page) -> list[str]:
    """The elements that stick out to the right of the window (outside scroll boxes), for the failure message."""
    return page.evaluate("""() => {
      const w = window.innerWidth, out = [];
      for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > w + 1 && r.width > 0 && !el.closest('.table-responsive')) {
          out.push(el.tagName.toLowerCase() + '.' + String(el.className).slice(0, 40) + ' → ' + Math.round(r.right));
        }
      }
      return out.slice(0, 5);
    }""")


@pytest.mark.parametrize("width", [PHONE, DESK], ids=["phone", "desk"])
def test_no_page_is_wider_than_the_window(browser, layout_server, log_in, width):
    page = _logged_in(browser, layout_server, width, log_in)
    # a saved segment, so /segments lists one with its live count
    page.goto("/customers?band=High")
    page.get_by_label("Save these filters as a segment").fill(f"High risk ({width})")
    page.get_by_role("button", name="Save segment").click()
    expect(page.get_by_role("link", name=f"High risk ({width})")).to_be_visible()

    too_wide = []
    for path, name in PAGES:
        url = path.format(**_campaigns.ids)
        response = page.goto(url)
        assert response.status == 200, f"{url}: {response.status}"
        page.wait_for_load_state("networkidle")
        document, window = _overflow(page)
        if document > window:
            too_wide.append(f"{url}: {document} px in a {window} px window, sticking out: {_widest(page)}")
        if name and width == PHONE:
            _phone_shot(page, name)
    assert not too_wide, "pages pan sideways:\n" + "\n".join(too_wide)
    assert page.js_errors == []
    page.context.close()


def test_phone_customer_list_shows_tier_risk_and_spend(browser, layout_server, log_in):
    page = _logged_in(browser, layout_server, PHONE, log_in)
    page.goto("/customers?sort=-monetary")
    rows = page.locator("#customer-list tbody tr")
    assert rows.count() > 0
    first = rows.first
    for label in ("Customer", "Name", "Tier", "Spend", "Churn risk", "Churn band"):
        cell = first.locator(f"td[data-label='{label}']")
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE, f"{label} is off-screen: {box}"
        # the card names each value: the label is drawn before it (CSS ::before from data-label)
        shown = page.evaluate("(el) => getComputedStyle(el, '::before').content", cell.element_handle())
        assert shown == f'"{label}"', f"{label}: {shown}"
    assert re.fullmatch(r"\$[\d,]+\.\d\d", first.locator("td[data-label='Spend']").inner_text().strip())
    assert re.fullmatch(r"\d+ %|—", first.locator("td[data-label='Churn risk']").inner_text().strip())
    # one card per customer: the rows stack, so the second starts below the first
    if rows.count() > 1:
        assert rows.nth(1).bounding_box()["y"] >= first.bounding_box()["y"] + first.bounding_box()["height"] - 1
    assert page.js_errors == []
    page.context.close()


def test_desk_tables_fit_their_column(browser, layout_server, log_in):
    """At 1366 px the tables that were cut off (tier profile, import history, stores) need no inner scroll."""
    page = _logged_in(browser, layout_server, DESK, log_in)
    for url, table in (("/tiers", "#tier-profile"), ("/imports", "#import-history"), ("/stores", "#store-list")):
        page.goto(url)
        box = page.locator(table).locator("xpath=..")
        scroll, client = box.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
        assert scroll <= client + 1, f"{url} {table}: {scroll} px of table in a {client} px column"
    page.context.close()


def test_tier_charts_draw_only_tiers(browser, layout_server, log_in):
    """/tiers and the dashboard: no bar with a null label, and the customers below the bar (3,871 of 5,000
    in the demo) do not set the scale and flatten the four tiers."""
    page = _logged_in(browser, layout_server, DESK, log_in)
    for url, chart in (("/tiers", "tier-dist"), ("/", "tier-chart")):
        page.goto(url)
        spec = page.evaluate(f"JSON.parse(document.getElementById('{chart}').textContent)")
        assert spec["labels"] == ["Platinum", "Gold", "Silver", "Bronze"], url
        y_max = page.evaluate(f"Chart.getChart(document.querySelector(\"canvas[data-chart='{chart}']\")).scales.y.max")
        assert y_max < 2 * max(spec["datasets"][0]["data"]), url
    page.context.close()


def test_forecast_lines_are_distinguishable(browser, layout_server, log_in):
    """Dashboard outlook: actual and expected differ in colour and dash; the interval is a shaded band."""
    page = _logged_in(browser, layout_server, DESK, log_in)
    page.goto("/")
    datasets = page.evaluate("""() => Chart.getChart(document.querySelector("canvas[data-chart='outlook-chart']"))
        .data.datasets.map(d => ({label: d.label, color: d.borderColor, dash: d.borderDash, fill: d.fill}))""")
    by_label = {d["label"]: d for d in datasets}
    actual = next(d for label, d in by_label.items() if label.startswith("Actual"))
    expected = next(d for label, d in by_label.items() if label.startswith("Expected"))
    assert actual["color"] != expected["color"] and actual["dash"] != expected["dash"]
    assert by_label["Upper bound"]["fill"] == "-1"  # the band between the bounds
    assert (
        page.evaluate(
            "Chart.getChart(document.querySelector(\"canvas[data-chart='outlook-chart']\"))"
            ".options.plugins.legend.display"
        )
        is True
    )
    page.context.close()
