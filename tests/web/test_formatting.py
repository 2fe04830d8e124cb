"""One way to write numbers (issue 21): separators, the store's currency, percentages and plurals.

The filters of portal/formatting.py on their own (no app), then rendered through the app's Jinja
environment the way templates use them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from flask import Flask

from portal import formatting
from portal.formatting import count, money, number, percent, plural, prose

EUR = SimpleNamespace(currency="EUR")
GBP = SimpleNamespace(currency="GBP")


@pytest.mark.parametrize(
    "value, text",
    [
        (3081, "3,081"),
        (1129, "1,129"),
        (5906, "5,906"),
        (0, "0"),
        (12, "12"),
        (1234567, "1,234,567"),
        (None, "—"),
        ("", "—"),
        (1234.0, "1,234"),
    ],
)
def test_counts_have_thousands_separators(value, text):
    assert number(value) == text


def test_measures_keep_their_decimals():
    assert number(1234.56, 1) == "1,234.6"
    assert number(0.5, 2) == "0.50"


@pytest.mark.parametrize(
    "value, store, kw, text",
    [
        (15.49, None, {}, "$15.49"),
        (15.49, EUR, {}, "€15.49"),
        (1234.5, GBP, {}, "£1,234.50"),
        (-8, None, {}, "-$8.00"),
        (0.0083, None, {"digits": 4}, "$0.0083"),
        (0.0083, EUR, {"digits": 4}, "€0.0083"),
        (2, None, {"currency": "CHF"}, "CHF 2.00"),
        (None, None, {}, "—"),
    ],
)
def test_money_carries_the_store_currency(value, store, kw, text):
    assert money(value, store, **kw) == text


def test_money_for_a_store_without_a_currency_is_dollars():
    assert money(1, SimpleNamespace(currency=None)) == "$1.00"


def test_shares_are_percentages():
    assert percent(0.1) == "10 %"
    assert percent(0.0834, 1) == "8.3 %"
    assert percent(None) == "—"


@pytest.mark.parametrize(
    "n, text",
    [(1, "1 rule"), (0, "0 rules"), (2, "2 rules"), (1129, "1,129 rules"), (1.0, "1 rule"), (None, "— rules")],
)
def test_count_agrees_with_the_number(n, text):
    assert count(n, "rule") == text


def test_plural_words():
    assert plural(1, "customer") == "customer"
    assert plural(3, "customer") == "customers"
    assert plural(1, "person", "people") == "person"
    assert plural(2, "person", "people") == "people"
    assert count(1, "dead-stock product") == "1 dead-stock product"


@pytest.mark.parametrize(
    "text, store, out",
    [
        (
            "Put A next to B (5.6x the usual rate; 5906 baskets).",
            None,
            "Put A next to B (5.6x the usual rate; 5,906 baskets).",
        ),
        ("only 15.49 spent in total", None, "only $15.49 spent in total"),
        ("only 15.49 spent in total", EUR, "only €15.49 spent in total"),
        ("1234.5 spent in total", None, "$1,234.50 spent in total"),
        ("no visit for 140 days, 3× their usual gap", None, "no visit for 140 days, 3× their usual gap"),
        ("no visit for 1140 days", None, "no visit for 1,140 days"),
    ],
)
def test_prose_formats_numbers_inside_service_sentences(text, store, out):
    assert prose(text, store) == out


@pytest.mark.parametrize(
    "text", ["product P0107 since 2025", "2026-01-15 and 12:00", "already $15.49 spent", "code 12345", ""]
)
def test_prose_leaves_ids_dates_and_formatted_amounts_alone(text):
    assert prose(text) == text


def test_prose_of_nothing_is_empty():
    assert prose(None) == ""


@pytest.fixture()
def env():
    app = Flask(__name__)
    formatting.register(app, [])
    return app.jinja_env


@pytest.mark.parametrize(
    "source, text",
    [
        ("{{ 1|count('rule') }} mined", "1 rule mined"),
        ("{{ 3081|count('message') }}", "3,081 messages"),
        ("{{ 1129|number }} moved up", "1,129 moved up"),
        ("at {{ 0.0083|money(store, digits=4) }} per segment", "at €0.0083 per segment"),
        ("{{ 'only 15.49 spent in total'|prose(store) }}", "only €15.49 spent in total"),
        ("{{ 0.1|percent }}", "10 %"),
        ("{{ n }} {{ n|plural('customer') }}", "1 customer"),
    ],
)
def test_filters_in_templates(env, source, text):
    assert env.from_string(source).render(store=EUR, n=1) == text


# --- on the pages -----------------------------------------------------------------------------------


def test_customer_pages_write_spend_in_the_store_currency(client, login_as, make_store, make_customer):
    from datetime import datetime, timezone
    from decimal import Decimal

    paris = make_store("Paris", currency="EUR", timezone="Europe/Paris")
    customer = make_customer(
        paris,
        monetary=Decimal("15.49"),
        frequency=3081,
        recency=1129,
        churn_band="High",
        churn_probability=0.93,
        churn_reasons=["only 15.49 spent in total"],
        tier="Bronze",
        scored_at=datetime(2026, 1, 15, tzinfo=timezone.utc),
    )
    login_as("admin")
    detail = client.get(f"/customers/{customer.id}").get_data(as_text=True)
    assert "only €15.49 spent in total" in detail and "only 15.49 spent" not in detail
    assert "€15.49" in detail and "3,081" in detail
    listing = client.get("/customers").get_data(as_text=True)
    # a phone shows each cell as "label value": the label comes from data-label
    assert '<td class="text-end" data-label="Spend">€15.49</td>' in listing
    assert '<td class="text-end" data-label="Purchases">3,081</td>' in listing
    assert '<td class="text-end" data-label="Days since last">1,129</td>' in listing
    assert '<td class="text-end" data-label="Churn risk">93 %</td>' in listing
    assert 'data-label="Tier">Bronze</td>' in listing and 'data-label="Churn band">High</td>' in listing


def test_settings_show_each_share_as_a_percentage(client, login_as):
    login_as("admin")
    html = client.get("/settings").get_data(as_text=True)
    assert 'name="sms.control_share" value="10"' in html  # stored 0.1, shown as 10 %
    assert 'name="churn.high" value="70"' in html  # stored 0.7
