"""The bundles page: dead stock with its data errors, rules mined from stored baskets, the lookup, roles."""

import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from portal.models import BundleRule, Job, ModelRecord, Product, StockLevel
from portal.services import bundles as bundle_service
from portal.services import settings as settings_service
from preprocessing import bundling
from preprocessing.suggestions import dead_stock_suggestions
from tests.conftest import post_form

NAMES = {
    "ESP": "Espresso Beans",
    "MUG": "Blue Mug",
    "OAT": "Oat Milk",
    "VAN": "Vanilla Syrup",
    "NEW": "Gift Card",
    **{f"F{i:02d}": f"Filler {i}" for i in range(12)},
}
# initial stock, units sold, price: MUG and VAN are dead stock (sold < 60 %), the rest sell
STOCK = {
    "ESP": (1000, 900, 15.5),
    "MUG": (200, 30, 9.0),
    "OAT": (400, 300, 3.0),
    "VAN": (100, 20, None),
    **{f"F{i:02d}": (100, 80, 2.0) for i in range(12)},
}


def planted_lines(n=400, seed=11):
    """Baskets where 15 % of espresso baskets also take a Blue Mug and oat milk comes with vanilla syrup.

    Espresso is in 40 % of baskets, espresso + mug in 6 % (below the default 10 % support), oat milk +
    vanilla in about 5 %; fillers fill the rest. Gift cards sell but are in no stock file.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n):
        basket = set(rng.choice(list(NAMES)[5:], size=int(rng.integers(1, 4)), replace=False))
        if t < 160:
            basket.add("ESP")
            if t < 24:
                basket.add("MUG")
        elif t < 164:
            basket.add("MUG")
        if 150 <= t < 170 or 300 <= t < 320:
            basket.add("OAT")
            if t % 2 == 0:
                basket.add("VAN")
        if t % 50 == 0:
            basket.add("NEW")
        for p in sorted(basket):
            rows.append(
                (
                    f"C{t % 60:03d}",
                    f"T{t:05d}",
                    pd.Timestamp("2026-01-01") + pd.Timedelta(hours=5 * t),
                    p,
                    NAMES[p],
                    1.0,
                    2.0,
                    2.0,
                )
            )
    return pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "transaction_id",
            "purchase_date",
            "product_id",
            "product_name",
            "quantity",
            "price_per_unit",
            "total_amount",
        ],
    )


def seed_stock(db, store, stock=STOCK, extra=()):
    """Stock rows for ``store``: {product id: (initial, sold, price)}; extra = (id, name, initial, sold)."""
    products = dict(db.session.execute(select(Product.external_id, Product)).all())
    for pid, (initial, sold, price) in stock.items():
        products[pid].price = price
        db.session.add(
            StockLevel(product_id=products[pid].id, store_id=store.id, initial_stock=initial, total_sold=sold)
        )
    for pid, name, initial, sold in extra:
        product = Product(external_id=pid, name=name)
        db.session.add(product)
        db.session.flush()
        db.session.add(StockLevel(product_id=product.id, store_id=store.id, initial_stock=initial, total_sold=sold))
    db.session.commit()


@pytest.fixture()
def store_with_stock(db, seed_lines):
    lines = planted_lines()
    store = seed_lines(lines)
    seed_stock(
        db,
        store,
        extra=[("ZERO", "Zero Stock Tray", 0, 3), ("NOINIT", "Mystery Jar", None, 2), ("GHOST", "Ghost Teapot", 50, 0)],
    )
    return store, lines


def page(client, path="/bundles"):
    response = client.get(path)
    assert response.status_code == 200
    return unescape(response.get_data(as_text=True))


def text_of(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


# --------------------------------------------------------------------------- empty states


def test_empty_states_without_stock_or_rules(client, login_as):
    login_as("manager")
    html = page(client)
    assert "No stock file yet" in html and "No bundle rules yet" in html
    assert "Mine bundles" in html  # a manager may mine


def test_mining_without_a_stock_file_fails_with_a_reason(client, login_as, seed_lines):
    store = seed_lines(planted_lines())
    login_as("manager", store=store)
    response = post_form(
        client,
        "/bundles/mine",
        {"min_baskets": "10", "min_confidence": "5", "min_lift": "1", "dead_stock_ratio": "60"},
        token_from="/bundles",
        follow_redirects=True,
    )
    html = unescape(response.get_data(as_text=True))
    assert "No stock file imported yet" in html


# --------------------------------------------------------------------------- dead stock


def test_dead_stock_list_data_errors_and_unknown_products(client, login_as, store_with_stock):
    store, _ = store_with_stock
    login_as("manager", store=store)
    html = page(client)
    dead = html.split('class="table table-sm table-striped dead-stock-table"')[1].split("</table>")[0]
    # worst ratio first: the ghost teapot never sold, then vanilla (20 %), the mug (15 %)
    rows = re.findall(r"<tr>(.*?)</tr>", dead, re.S)[1:]
    assert [re.search(r"<td>(.*?) <span", r).group(1) for r in rows] == ["Ghost Teapot", "Blue Mug", "Vanilla Syrup"]
    mug = text_of(rows[1])
    assert "200" in mug and "30" in mug and "15.0 %" in mug and "$1,530.00" in mug  # (200 - 30) x $9
    assert "no price" in text_of(rows[2])
    assert "3 of 19 stock rows are dead stock" in text_of(html)
    errors = text_of(html.split('class="table table-sm stock-errors"')[1].split("</table>")[0])
    assert "Zero Stock Tray" in errors and "initial_stock is 0" in errors
    assert "Mystery Jar" in errors and "initial_stock missing" in errors
    unknown = text_of(html.split('class="table table-sm unknown-products"')[1].split("</table>")[0])
    assert "Gift Card" in unknown and "8" in unknown  # sold in 8 baskets (every 50th of 400)


def test_dead_stock_report_matches_the_pure_module(app, store_with_stock):
    store, lines = store_with_stock
    report = bundle_service.dead_stock_report(None)
    stock = pd.DataFrame(
        [(pid, NAMES[pid], i, s, p) for pid, (i, s, p) in STOCK.items()]
        + [
            ("ZERO", "Zero Stock Tray", 0, 3, None),
            ("NOINIT", "Mystery Jar", None, 2, None),
            ("GHOST", "Ghost Teapot", 50, 0, None),
        ],
        columns=["product_id", "product_name", "initial_stock", "total_sold", "price"],
    )
    pure = bundling.dead_stock(stock, price_column="price")
    assert [d["product_id"] for d in report.dead] == pure.dead["product_id"].tolist()
    assert [d["sold_ratio"] for d in report.dead] == pytest.approx(pure.dead["sold_ratio"].tolist())
    assert sorted(e["product_id"] for e in report.errors) == sorted(pure.errors["product_id"])
    unknown = bundling.unknown_products(lines, stock)
    assert [[u["product_id"], u["total_sold"], u["transactions"]] for u in report.unknown] == unknown[
        ["product_id", "total_sold", "transactions"]
    ].values.tolist()
    assert report.value_tied_up == pytest.approx(170 * 9.0)
    assert report.unpriced == 2  # vanilla and the ghost teapot have no price


def test_dead_stock_ratio_setting_and_search(client, login_as, store_with_stock):
    store, _ = store_with_stock
    settings_service.update({"bundles.dead_stock_ratio": "0.18"})
    login_as("manager", store=store)
    html = text_of(page(client))
    assert "2 of 19 stock rows are dead stock (sold less than 18 %)" in html  # the mug (15 %) and the ghost (0 %)
    html = text_of(page(client, "/bundles?q=ghost"))
    assert "1 of 19 stock rows are dead stock" in html and "Blue Mug 200" not in html


def test_manager_sees_only_their_store_stock(client, login_as, store_with_stock, make_store):
    login_as("manager", store=make_store("Elsewhere"))
    html = page(client)
    assert "No stock file yet" in html and "Ghost Teapot" not in html


# --------------------------------------------------------------------------- mining through the page


def mine(client, baskets, confidence=5, lift=1, ratio=60, follow=True):
    return post_form(
        client,
        "/bundles/mine",
        {
            "min_baskets": str(baskets),
            "min_confidence": str(confidence),
            "min_lift": str(lift),
            "dead_stock_ratio": str(ratio),
        },
        token_from="/bundles",
        follow_redirects=follow,
    )


def stored_rules(db):
    model = bundle_service.active_model()
    rules = db.session.scalars(select(BundleRule).where(BundleRule.model_id == model.id)).all()
    return model, {(tuple(r.antecedents), tuple(r.consequents)): r for r in rules}


def pure_stock():
    """The stock rows of ``store_with_stock`` that can be divided, as the pure module reads them."""
    rows = [(pid, NAMES[pid], i, s, p) for pid, (i, s, p) in STOCK.items()] + [("GHOST", "Ghost Teapot", 50, 0, None)]
    frame = pd.DataFrame(rows, columns=["product_id", "product_name", "initial_stock", "total_sold", "price"])
    return bundling.dead_stock(frame, price_column="price")


def test_mined_suggestions_equal_the_pure_module_and_read_as_actions(client, login_as, db, store_with_stock):
    store, lines = store_with_stock
    login_as("manager", store=store)
    response = mine(client, 10)
    assert response.status_code == 200
    html = unescape(response.get_data(as_text=True))
    assert "done" in html

    expected = dead_stock_suggestions(lines, pure_stock(), min_baskets=10)
    model, got = stored_rules(db)
    assert len(got) == len(expected) == 2  # one per dead-stock item bought with something: the mug, the syrup
    for r in expected.itertuples():
        rule = got[(r.antecedents, (r.product_id,))]
        assert (rule.support, rule.confidence, rule.lift) == pytest.approx((r.support, r.confidence, r.lift))
        assert rule.baskets == r.baskets and rule.consequent_names == r.product_name
    espresso = got[(("ESP",), ("MUG",))]
    assert espresso.baskets == 24 and espresso.confidence == pytest.approx(24 / 160)
    assert model.manifest["params"]["min_baskets"] == 10
    assert model.manifest["params"]["min_support"] == pytest.approx(10 / 400)
    assert model.manifest["data_window"]["baskets"] == 400
    assert model.manifest["data_window"]["from"].startswith("2026-01-01")
    assert model.manifest["metrics"]["stock_value_to_clear"] == pytest.approx(1530.0)

    html = text_of(page(client))
    assert (
        "Put Blue Mug next to Espresso Beans: 15 % of baskets with Espresso Beans also take Blue Mug "
        "(2.1x the usual rate; 24 baskets)."
    ) in html
    assert "bought together in ≥ 10 baskets (support ≥ 2.5 % here)" in html
    assert "$1,530.00 of stock they can clear" in html
    models = text_of(page(client, "/models"))
    assert "2 bundle rules" in models and "minimum support 2.5 %" in models and "400 baskets" in models


def test_suggestions_move_only_dead_stock_once_per_item_most_stock_value_first(client, login_as, db, store_with_stock):
    store, _ = store_with_stock
    login_as("manager", store=store)
    mine(client, 10)
    _, got = stored_rules(db)
    dead = {"MUG", "VAN", "GHOST"}
    consequents = [r.consequents for r in sorted(got.values(), key=lambda r: r.id)]
    assert all(len(c) == 1 and c[0] in dead for c in consequents)  # espresso, oat milk sell: never asked to move
    assert len({c[0] for c in consequents}) == len(consequents)  # once per dead-stock item
    html = page(client)
    table = html.split("bundle-table")[1].split("</table>")[0]
    cells = [
        text_of(c).strip()
        for c in re.findall(r'<td data-label="Dead stock to move" class="dead-item">(.*?)</td>', table)
    ]
    assert cells == [
        "dead stock Blue Mug (15 % sold)",
        "dead stock Vanilla Syrup (20 % sold)",
    ]  # $1,530 first, no price last
    values = [text_of(c) for c in re.findall(r'data-label="Stock value">(.*?)</td>', table)]
    assert values == ["$1,530.00", "no price"]


def test_too_many_baskets_finds_nothing_and_the_page_suggests_fewer(client, login_as, db, store_with_stock):
    store, lines = store_with_stock
    login_as("admin")
    html = text_of(unescape(mine(client, 30).get_data(as_text=True)))  # the mug is in 24 baskets with espresso
    assert dead_stock_suggestions(lines, pure_stock(), min_baskets=30).empty
    assert "No suggestion with at least 30 baskets behind it; 2 with 15 baskets" in html
    assert "Mine with 15 baskets" in html
    assert db.session.scalar(select(ModelRecord).where(ModelRecord.name == "bundles")) is None
    assert db.session.scalar(select(BundleRule)) is None

    # the suggested count, one click away, finds them
    button = page(client).split('class="alert alert-warning nothing-found"')[1].split("</form>")[0]
    values = dict(re.findall(r'name="(\w+)" value="([^"]*)"', button))
    assert values["min_baskets"] == "15" and values["dead_stock_ratio"] == "60.0"
    html = text_of(unescape(client.post("/bundles/mine", data=values, follow_redirects=True).get_data(as_text=True)))
    assert "No suggestion with at least 30" not in html and "Put Blue Mug next to Espresso Beans" in html
    # a later run that finds nothing keeps those suggestions and says so
    html = text_of(unescape(mine(client, 500).get_data(as_text=True)))
    assert "No suggestion with at least 500 baskets" in html and "kept because this one found nothing" in html
    assert "Put Blue Mug next to Espresso Beans" in html


def test_suggestions_open_ranked_by_stock_value_and_sort_by_lift(client, login_as, db, store_with_stock):
    store, _ = store_with_stock
    login_as("manager", store=store)
    mine(client, 10)
    _, got = stored_rules(db)

    def order(html):
        table = html.split("bundle-table")[1].split("</table>")[0]
        return [text_of(a) for a in re.findall(r'<div class="small text-body-secondary">(.*?)</div>', table)]

    assert order(page(client)) == ["Espresso Beans → Blue Mug", "Oat Milk → Vanilla Syrup"]
    by_lift = sorted(got.values(), key=lambda r: (-r.lift, -r.id))
    assert order(page(client, "/bundles?sort=-lift")) == [
        f"{r.antecedent_names} → {r.consequent_names}" for r in by_lift
    ]
    assert order(page(client, "/bundles?sort=-lift"))[0] == "Oat Milk → Vanilla Syrup"


def test_demo_store_has_ten_dead_stock_items_with_a_suggestion_at_defaults(app, db, seed_lines):
    """The demo store (data/demo_*.csv, what ``flask demo`` imports) mined with the default settings."""
    data = Path(__file__).resolve().parents[2] / "data"
    lines = pd.read_csv(
        data / "demo_transactions.csv",
        dtype={"customer_id": str, "transaction_id": str, "product_id": str},
        parse_dates=["purchase_date"],
    )
    store = seed_lines(lines.drop(columns=["Mobile", "store"]))
    stock = pd.read_csv(data / "demo_stock.csv", dtype={"product_id": str})
    known = dict(db.session.execute(select(Product.external_id, Product)).all())
    for row in stock.itertuples():
        product = known.get(row.product_id) or Product(external_id=row.product_id, name=row.product_name)
        product.price = row.price
        db.session.add(product)
        db.session.flush()
        db.session.add(
            StockLevel(
                product_id=product.id, store_id=store.id, initial_stock=row.initial_stock, total_sold=row.total_sold
            )
        )
    db.session.commit()

    result = bundle_service.train()
    assert result["params"]["min_baskets"] == 10 and result["params"]["min_confidence"] == 0.05
    model, got = stored_rules(db)
    dead = set(pure_dead := bundling.dead_stock(stock, price_column="price").dead["product_id"])
    moved = [r.consequents[0] for r in sorted(got.values(), key=lambda r: r.id)]
    assert len(set(moved)) == len(moved) >= 10
    assert set(moved) <= dead
    values = [model.manifest["dead_stock"][pid]["stock_value"] for pid in moved]
    assert values == sorted(values, reverse=True)
    assert len(pure_dead) == model.manifest["metrics"]["dead_products"]


def test_lookup_by_name_or_id(client, login_as, store_with_stock):
    store, _ = store_with_stock
    login_as("manager", store=store)
    mine(client, 10)

    def answer(query):
        html = page(client, f"/bundles?product={query}")
        return text_of(html.split('id="lookup"')[1].split('id="suggestions"')[0])

    assert "Put Blue Mug next to Espresso Beans: 15 % of baskets" in answer("espresso")
    assert "Put Blue Mug next to Espresso Beans" in answer("esp")  # an id, any case
    assert "Put Vanilla Syrup next to Oat Milk" in answer("OAT MILK")
    filler = answer("Filler 3")
    assert (
        "No dead stock is bought often enough with Filler 3 (in 10 baskets or more)" in filler and "Put" not in filler
    )
    assert "No product matches “kumquat”" in answer("kumquat")


def test_lookup_service_returns_the_rules_of_the_product(app, store_with_stock):
    bundle_service.train(min_baskets=10)
    found = bundle_service.lookup("oat milk")
    assert [(r.antecedents, r.consequents) for r in found.rules] == [(["OAT"], ["VAN"])]
    assert found.products == [{"product_id": "OAT", "product_name": "Oat Milk"}]


def test_cli_train_bundles_uses_the_settings(runner, db, store_with_stock):
    settings_service.update({"bundles.min_baskets": "22"})
    result = runner.invoke(args=["train", "bundles"])
    assert result.exit_code == 0, result.output
    assert "bundle suggestion" in result.output and "at least 22 baskets" in result.output
    _, got = stored_rules(db)
    assert list(got) == [(("ESP",), ("MUG",))]  # 24 baskets; vanilla with oat milk has 20


# --------------------------------------------------------------------------- form validation, roles, CSRF


def test_parameters_are_validated_next_to_the_fields(client, login_as, db, store_with_stock):
    login_as("admin")
    response = post_form(
        client,
        "/bundles/mine",
        {"min_baskets": "0", "min_confidence": "a lot", "min_lift": "1", "dead_stock_ratio": "150"},
        token_from="/bundles",
    )
    assert response.status_code == 400
    html = unescape(response.get_data(as_text=True))
    assert "Must be between 1 and 100000." in html and "Must be between 1 and 100." in html
    assert "Enter a number, e.g. 0.5." in html
    assert html.count("invalid-feedback") == 3
    response = post_form(
        client,
        "/bundles/mine",
        {"min_baskets": "2.5", "min_confidence": "5", "min_lift": "1", "dead_stock_ratio": "60"},
        token_from="/bundles",
    )
    assert response.status_code == 400 and "Enter a whole number of baskets" in response.get_data(as_text=True)
    assert db.session.scalar(select(Job)) is None


def test_marketer_reads_but_cannot_mine(client, login_as, store_with_stock):
    login_as("marketer")
    html = page(client)
    assert "Managers and admins can mine bundles" in html and 'action="/bundles/mine"' not in html
    assert mine(client, 10, follow=False).status_code == 403


def test_manager_can_mine_and_csrf_is_required(client, login_as, store_with_stock):
    store, _ = store_with_stock
    login_as("manager", store=store)
    refused = client.post(
        "/bundles/mine", data={"min_baskets": "10", "min_confidence": "5", "min_lift": "1", "dead_stock_ratio": "60"}
    )
    assert refused.status_code == 400  # no CSRF token
    response = mine(client, 10, follow=False)
    assert response.status_code == 302 and "/bundles?job=" in response.headers["Location"]
