"""A deterministic demo store: customers, purchase lines, stock and sample upload files.

``generate_store()`` builds about two years of a three-store coffee & homeware shop in the original
system's column layout, with enough structure for every model to find something: skewed product
popularity, planted co-purchase bundles (several with a dead-stock product), dead stock, customers
whose purchase rates differ and some who stop buying, ~1 % returns, SMS consent for most. Phone
numbers come only from the North-American 555-0100…0199 range reserved for fiction.

``generate_lines()`` is the fast, vectorised version for benchmarks (millions of lines in seconds).
``python -m preprocessing.synthetic --out data/`` writes the demo and sample files.
"""

from __future__ import annotations

import argparse
import io
import re
import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

TRANSACTION_COLUMNS = [
    "customer_id",
    "transaction_id",
    "purchase_date",
    "product_id",
    "product_name",
    "quantity",
    "price_per_unit",
    "total_amount",
    "Mobile",
    "store",
]
STOCK_COLUMNS = ["product_id", "product_name", "initial_stock", "total_sold", "price"]
CUSTOMER_COLUMNS = [
    "customer_id",
    "first_name",
    "last_name",
    "phone",
    "email",
    "store",
    "sms_consent",
    "sms_consent_date",
]
STORES = pd.DataFrame(
    {
        "store": ["Downtown", "Harbor", "Uptown"],
        "timezone": ["America/New_York", "America/Chicago", "America/Los_Angeles"],
    }
)
_STORE_SHARE = np.array([0.45, 0.33, 0.22])

# Real area codes; with exchange 555 and lines 0100-0199 every number is fictional and valid for phonenumbers.
AREA_CODES = (
    201,
    202,
    203,
    205,
    206,
    207,
    208,
    209,
    210,
    212,
    213,
    214,
    215,
    216,
    217,
    218,
    219,
    224,
    225,
    228,
    229,
    231,
    234,
    239,
    240,
    248,
    251,
    252,
    253,
    254,
    256,
    260,
    262,
    267,
    269,
    270,
    276,
    281,
    301,
    302,
    303,
    304,
    305,
    307,
    308,
    309,
    310,
    312,
    313,
    314,
    315,
    316,
    317,
    318,
    319,
    320,
    321,
    323,
    325,
    330,
    334,
    336,
    337,
    339,
    347,
    351,
    352,
    360,
    361,
    385,
    386,
    401,
    402,
    404,
    405,
    406,
    407,
    408,
    409,
    410,
)

_COLOURS = ("Blue", "Red", "Green", "White", "Black", "Yellow", "Pink", "Grey", "Navy", "Teal", "Orange", "Cream")
_HOMEWARE = (
    ("Mug", 12.0),
    ("Travel Mug", 22.0),
    ("Cup & Saucer", 16.0),
    ("Teapot", 34.0),
    ("Bowl", 14.0),
    ("Plate", 13.0),
    ("Coaster Set", 11.0),
    ("Tea Towel", 9.0),
    ("Tote Bag", 15.0),
    ("Notebook", 8.0),
    ("Candle", 18.0),
    ("Apron", 24.0),
    ("Espresso Cup", 9.0),
    ("Milk Jug", 15.0),
    ("Sugar Bowl", 13.0),
)
_ORIGINS = (
    "Espresso",
    "House Blend",
    "Decaf",
    "Colombian",
    "Ethiopian",
    "Kenyan",
    "Guatemalan",
    "Sumatra",
    "Brazilian",
    "Costa Rican",
    "French Roast",
    "Breakfast Blend",
)
_TEAS = (
    "Earl Grey",
    "Green",
    "Chamomile",
    "Chai",
    "Mint",
    "Rooibos",
    "English Breakfast",
    "Jasmine",
    "Oolong",
    "Lemon Ginger",
    "Darjeeling",
    "Hibiscus",
)
_SYRUPS = (
    "Vanilla",
    "Caramel",
    "Hazelnut",
    "Cinnamon",
    "Peppermint",
    "Gingerbread",
    "Coconut",
    "Maple",
    "Lavender",
    "Salted Caramel",
)
_BAKERY = (
    ("Almond Biscotti", 4.5),
    ("Butter Croissant", 3.2),
    ("Chocolate Cookies", 3.8),
    ("Blueberry Muffin", 3.5),
    ("Lemon Shortbread", 5.5),
    ("Banana Bread", 4.2),
    ("Cinnamon Roll", 3.9),
    ("Scone", 3.0),
    ("Brownie", 3.6),
    ("Carrot Cake Slice", 4.8),
    ("Oat Cookies", 3.4),
    ("Pain au Chocolat", 3.6),
    ("Ginger Snaps", 4.0),
    ("Madeleines", 5.0),
    ("Macarons", 7.5),
    ("Apple Turnover", 3.7),
    ("Cheese Danish", 3.9),
    ("Bagel", 2.5),
    ("Pretzel", 2.8),
    ("Fruit Tart", 5.2),
    ("Rocky Road", 4.1),
    ("Flapjack", 3.3),
    ("Florentines", 6.0),
    ("Panettone", 14.0),
)
_EQUIPMENT = (
    ("Milk Frother", 39.0),
    ("French Press", 32.0),
    ("Pour-Over Dripper", 24.0),
    ("Paper Filters", 6.0),
    ("Burr Grinder", 89.0),
    ("Gooseneck Kettle", 59.0),
    ("Tea Infuser", 9.0),
    ("Coffee Scale", 35.0),
    ("Espresso Tamper", 28.0),
    ("Cold Brew Jar", 29.0),
    ("Moka Pot", 42.0),
    ("Knock Box", 25.0),
    ("Milk Thermometer", 12.0),
    ("Cleaning Tablets", 11.0),
    ("Descaler", 10.0),
    ("Reusable Filter", 14.0),
    ("Glass Carafe", 27.0),
    ("Aeropress", 39.0),
    ("Tea Strainer", 7.0),
    ("Measuring Scoop", 5.0),
)
_PANTRY = (
    ("Honey Jar", 8.5),
    ("Oat Milk", 4.2),
    ("Cocoa Powder", 7.0),
    ("Brown Sugar", 3.5),
    ("Strawberry Jam", 6.5),
    ("Cinnamon Sticks", 5.0),
    ("Marshmallows", 4.0),
    ("Hot Chocolate Mix", 8.0),
    ("Almond Milk", 4.4),
    ("Whipped Cream", 3.9),
    ("Sugar Cubes", 3.0),
    ("Maple Syrup Bottle", 11.0),
    ("Chocolate Sauce", 6.0),
    ("Vanilla Pods", 9.5),
    ("Orange Marmalade", 6.2),
    ("Peanut Butter", 5.8),
    ("Lemon Curd", 6.4),
    ("Golden Syrup", 4.6),
)

# Planted bundles: (products, share of baskets that contain them). The consequents marked dead below
# are overstocked, so the bundle page has dead stock to move; the first one clears the default
# min_support of 0.1.
BUNDLES = (
    (("Espresso Beans", "Almond Biscotti"), 0.11),
    (("House Blend Beans", "Paper Filters"), 0.05),
    (("Earl Grey Tea", "Honey Jar", "Lemon Shortbread"), 0.035),
    (("Vanilla Syrup", "Oat Milk"), 0.035),
    (("Blue Mug", "Navy Coaster Set"), 0.025),
    (("Butter Croissant", "Strawberry Jam"), 0.03),
    (("Chai Tea", "Cinnamon Sticks"), 0.022),
    (("Hot Chocolate Mix", "Marshmallows"), 0.022),
    (("Green Tea", "Tea Infuser", "White Teapot"), 0.02),
    (("French Press", "Colombian Ground"), 0.015),
)
BUNDLE_DEAD_STOCK = (
    "Almond Biscotti",
    "Navy Coaster Set",
    "Strawberry Jam",
    "Cinnamon Sticks",
    "Marshmallows",
    "Tea Infuser",
    "Lemon Shortbread",
    "Paper Filters",
    "Oat Milk",
    "Colombian Ground",
)
# Ten overstocked bundle consequents: the bundle page has at least ten dead-stock products with a real
# rule to move them (the rest of the 15 % dead stock is the least popular tail, bought with nothing).

_FIRST = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Elijah",
    "Sophia",
    "James",
    "Isabella",
    "William",
    "Mia",
    "Benjamin",
    "Amelia",
    "Lucas",
    "Harper",
    "Henry",
    "Evelyn",
    "Alexander",
    "Abigail",
    "Mateo",
    "Emily",
    "Daniel",
    "Ella",
    "Michael",
    "Scarlett",
    "Ethan",
    "Grace",
    "Jacob",
    "Chloe",
    "Logan",
    "Victoria",
    "Jackson",
    "Riley",
    "Levi",
    "Aria",
    "Sebastian",
    "Lily",
    "Jack",
    "Aurora",
    "Owen",
    "Zoey",
    "Samuel",
    "Nora",
    "Aiden",
    "Hannah",
    "David",
    "Layla",
    "Joseph",
    "Zoe",
    "Carter",
    "Stella",
    "Wyatt",
    "Lucy",
    "John",
    "Maya",
    "Luke",
    "Priya",
    "Wei",
    "Aisha",
    "Carlos",
    "Fatima",
    "Hiroshi",
    "Ngozi",
    "Diego",
    "Mei",
    "Omar",
    "Sofia",
    "Rahul",
    "Yuki",
    "Kwame",
)
_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Chen",
    "Patel",
    "Kim",
    "Okafor",
    "Singh",
    "Tanaka",
    "Cohen",
    "Murphy",
    "O'Brien",
    "Novak",
)


def product_catalog(seed: int = 42) -> pd.DataFrame:
    """~300 products with names, ids, category, list price and a Zipf popularity weight (sums to 1)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, float]] = []
    rows += [(f"{o} Beans", "coffee", 14.0) for o in _ORIGINS] + [(f"{o} Ground", "coffee", 13.0) for o in _ORIGINS]
    rows += [(f"{t} Tea", "tea", 7.5) for t in _TEAS] + [(f"{t} Tea Bags", "tea", 5.5) for t in _TEAS]
    rows += [(f"{s} Syrup", "pantry", 8.0) for s in _SYRUPS]
    rows += [(n, "bakery", p) for n, p in _BAKERY] + [(n, "equipment", p) for n, p in _EQUIPMENT]
    rows += [(n, "pantry", p) for n, p in _PANTRY]
    rows += [(f"{c} {item}", "homeware", p) for item, p in _HOMEWARE for c in _COLOURS]
    rows = rows[:300]
    names = np.array([r[0] for r in rows], dtype=object)
    base = np.array([r[2] for r in rows])
    jitter = rng.uniform(0.85, 1.2, len(rows))
    price = np.floor(base * jitter) + rng.choice([0.49, 0.99, 0.5, 0.0], len(rows), p=[0.3, 0.4, 0.2, 0.1])
    # Popularity: Zipf over a shuffled order, with the bundle antecedents among the popular ones.
    order = rng.permutation(len(rows))
    antecedents = [b[0][0] for b in BUNDLES]
    for name in reversed(antecedents):
        i = int(np.flatnonzero(names == name)[0])
        order = np.concatenate([[i], order[order != i]])
    rank = np.empty(len(rows), dtype=int)
    rank[order] = np.arange(len(rows))
    weight = 1.0 / (rank + 3.0) ** 1.1
    return pd.DataFrame(
        {
            "product_id": [f"P{i + 1:04d}" for i in range(len(rows))],
            "product_name": names,
            "category": [r[1] for r in rows],
            "price": price.round(2),
            "popularity": weight / weight.sum(),
        }
    )


def _phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct fictional numbers, E.164: +1 NPA 555 01XX."""
    slots = rng.choice(len(AREA_CODES) * 100, size=n, replace=False)
    npa = np.asarray(AREA_CODES)[slots // 100]
    return np.array([f"+1{a}555{100 + s % 100:04d}" for a, s in zip(npa, slots)], dtype=object)


def generate_store(
    n_customers: int = 5000, days: int = 730, seed: int = 42, end: date = date(2026, 10, 31)
) -> dict[str, pd.DataFrame]:
    """The demo store: 'transactions', 'stock', 'customers', 'stores' frames (original column layout).

    Transactions carry local store time (naive) in ``purchase_date``; money is USD. Everything is a
    function of the arguments: the same call gives the same frames (and the same CSV bytes).
    """
    rng = np.random.default_rng(seed)
    catalog = product_catalog(seed)
    end_ts = pd.Timestamp(end) + pd.Timedelta(hours=21)
    start_ts = end_ts - pd.Timedelta(days=days)

    # Customers: a third were already customers when the data starts, the rest join evenly over the two
    # years (so about 8 % are New, first purchase in the last 90 days). About 31 % are regulars (a
    # basket every ~2.5 weeks), the rest occasional (one every ~200 days); rates are gamma-distributed
    # within each group. Some stop buying for good (15 % of regulars, 70 % of the others), so churn has
    # signal and the store looks like a real one as of its last day (lifecycle, preprocessing.lifecycle,
    # with the trained models: about 8 % New, 34 % Active, 15 % At risk, 13 % Lapsing, 30 % Lost), and
    # about a fifth of customers reach 15 purchases.
    join = np.where(rng.random(n_customers) < 0.35, rng.uniform(0, 60, n_customers), rng.uniform(0, days, n_customers))
    regular = rng.random(n_customers) < 0.31
    rate = np.where(regular, rng.gamma(4.0, 1 / 70, n_customers), rng.gamma(3.0, 1 / 600, n_customers))  # per day
    churner = rng.random(n_customers) < np.where(regular, 0.15, 0.7)
    lifetime = np.where(churner, rng.exponential(200.0, n_customers) + 20, np.inf)
    stop = np.minimum(join + lifetime, days)
    n_baskets = 1 + rng.poisson(rate * (stop - join))
    cust_idx = np.repeat(np.arange(n_customers), n_baskets)
    first = np.r_[0, np.cumsum(n_baskets)[:-1]]
    offset = rng.uniform(0, 1, len(cust_idx)) * (stop - join)[cust_idx] + join[cust_idx]
    offset[first] = join  # the first basket is the day they joined
    home = rng.choice(3, size=n_customers, p=_STORE_SHARE)
    store_idx = np.where(rng.random(len(cust_idx)) < 0.88, home[cust_idx], rng.integers(0, 3, len(cust_idx)))

    # Anonymous baskets (no loyalty card): ~3 % of baskets.
    n_anon = int(len(cust_idx) * 0.03)
    cust_idx = np.r_[cust_idx, np.full(n_anon, -1)]
    offset = np.r_[offset, rng.uniform(0, days, n_anon)]
    store_idx = np.r_[store_idx, rng.choice(3, size=n_anon, p=_STORE_SHARE)]
    when = _shop_time(rng, start_ts, offset)

    lines = _fill_baskets(rng, catalog, len(cust_idx))
    basket = lines["basket"].to_numpy()
    lines["customer"] = cust_idx[basket]
    lines["when"] = when[basket]
    lines["store_idx"] = store_idx[basket]
    lines = _add_returns(rng, lines, end_ts)

    order = np.lexsort((lines["line_in_basket"].to_numpy(), lines["basket"].to_numpy(), lines["when"].to_numpy()))
    lines = lines.iloc[order].reset_index(drop=True)
    basket_codes, _ = pd.factorize(lines["basket"])
    tx_ids = np.array([f"T{i + 1:06d}" for i in range(basket_codes.max() + 1)], dtype=object)

    customer_ids = np.array([f"C{i + 1:05d}" for i in range(n_customers)], dtype=object)
    has_phone = rng.random(n_customers) < 0.94
    phones = np.where(has_phone, _phones(rng, n_customers), "")
    cust = lines["customer"].to_numpy()
    known = cust >= 0
    mobile = np.where(known, phones[np.where(known, cust, 0)], "")
    mobile = np.where(rng.random(len(lines)) < 0.15, "", mobile)  # the till did not always record it
    product = lines["product"].to_numpy()
    price = catalog["price"].to_numpy()[product]
    qty = lines["quantity"].to_numpy().astype(int)
    transactions = pd.DataFrame(
        {
            "customer_id": np.where(known, customer_ids[np.where(known, cust, 0)], ""),
            "transaction_id": tx_ids[basket_codes],
            "purchase_date": lines["when"].dt.floor("s").to_numpy(),
            "product_id": catalog["product_id"].to_numpy()[product],
            "product_name": catalog["product_name"].to_numpy()[product],
            "quantity": qty,
            "price_per_unit": price,
            "total_amount": np.round(qty * price, 2),
            "Mobile": mobile,
            "store": STORES["store"].to_numpy()[lines["store_idx"].to_numpy()],
        }
    )
    stock = _stock(rng, catalog, transactions)
    customers = _customers(rng, customer_ids, phones, home, transactions, end_ts)
    return {"transactions": transactions, "stock": stock, "customers": customers, "stores": STORES.copy()}


def _shop_time(rng: np.random.Generator, start: pd.Timestamp, day_offset: np.ndarray) -> np.ndarray:
    """Opening-hours timestamps (07:00-20:59, busier mornings) for fractional day offsets from start."""
    day = pd.Timestamp(start.date()) + pd.to_timedelta(np.floor(day_offset) + 1, unit="D")
    hour = rng.choice(
        np.arange(7, 21), size=len(day_offset), p=np.array([6, 10, 10, 8, 7, 8, 7, 6, 6, 7, 8, 7, 5, 5]) / 100
    )
    seconds = hour * 3600 + rng.integers(0, 3600, len(day_offset))
    return (day + pd.to_timedelta(seconds, unit="s")).to_numpy()


def _fill_baskets(rng: np.random.Generator, catalog: pd.DataFrame, n_baskets: int) -> pd.DataFrame:
    """Lines for n baskets: planted bundles first, then Zipf-popular extras; one line per product."""
    names = catalog["product_name"].to_numpy()
    index = {n: i for i, n in enumerate(names)}
    basket_parts, product_parts = [], []
    for products, share in BUNDLES:
        chosen = np.flatnonzero(rng.random(n_baskets) < share)
        for name in products:
            basket_parts.append(chosen)
            product_parts.append(np.full(len(chosen), index[name]))
    has_bundle = np.zeros(n_baskets, dtype=bool)
    for part in basket_parts:
        has_bundle[part] = True
    extras = np.where(has_bundle, rng.poisson(0.1, n_baskets), 1 + rng.poisson(0.1, n_baskets))
    basket_parts.append(np.repeat(np.arange(n_baskets), extras))
    product_parts.append(rng.choice(len(names), size=int(extras.sum()), p=catalog["popularity"].to_numpy()))
    lines = pd.DataFrame({"basket": np.concatenate(basket_parts), "product": np.concatenate(product_parts)})
    lines = lines.drop_duplicates(["basket", "product"]).sort_values(["basket", "product"], kind="stable")
    bakery = catalog["category"].to_numpy()[lines["product"].to_numpy()] == "bakery"
    lines["quantity"] = (1 + rng.poisson(np.where(bakery, 0.8, 0.25))).astype(float)
    lines["line_in_basket"] = lines.groupby("basket").cumcount()
    return lines.reset_index(drop=True)


def _add_returns(rng: np.random.Generator, lines: pd.DataFrame, end_ts: pd.Timestamp) -> pd.DataFrame:
    """~1 % of customer lines come back a few days later as their own basket with a negative quantity."""
    eligible = np.flatnonzero(lines["customer"].to_numpy() >= 0)
    picked = rng.choice(eligible, size=int(len(lines) * 0.01), replace=False)
    back = lines.iloc[np.sort(picked)].copy()
    back["quantity"] = -back["quantity"]
    delay = pd.to_timedelta(rng.integers(1, 21, len(back)), unit="D")
    back["when"] = np.minimum(back["when"] + delay, end_ts - pd.Timedelta(minutes=5))
    back["basket"] = lines["basket"].max() + 1 + np.arange(len(back))
    back["line_in_basket"] = 0
    return pd.concat([lines, back], ignore_index=True)


def _stock(rng: np.random.Generator, catalog: pd.DataFrame, transactions: pd.DataFrame) -> pd.DataFrame:
    """Stock file: 15 % dead stock (sold ratio < 0.6): the bundle consequents plus the least popular products."""
    sold = transactions.groupby("product_id")["quantity"].sum().reindex(catalog["product_id"], fill_value=0)
    sold = sold.clip(lower=0).to_numpy()
    n = len(catalog)
    names = catalog["product_name"].to_numpy()
    dead = np.isin(names, BUNDLE_DEAD_STOCK) | (sold == 0)
    n_dead = int(round(0.15 * n))
    tail = [i for i in np.argsort(-catalog["popularity"].to_numpy() + rng.uniform(0, 1e-4, n))[::-1] if not dead[i]]
    dead[tail[: max(0, n_dead - int(dead.sum()))]] = True
    ratio = np.where(dead, rng.uniform(0.08, 0.5, n), rng.uniform(0.66, 0.97, n))
    initial = np.ceil(np.maximum(sold, 1) / ratio) + rng.integers(0, 6, n)
    initial = np.where(sold == 0, rng.integers(20, 150, n), initial)
    return pd.DataFrame(
        {
            "product_id": catalog["product_id"],
            "product_name": names,
            "initial_stock": initial.astype(int),
            "total_sold": sold.astype(int),
            "price": catalog["price"],
        }
    )


def _customers(rng, customer_ids, phones, home, transactions, end_ts) -> pd.DataFrame:
    """Customers file: names, fictional phone, example.com e-mail, home store, SMS consent (yes/no/blank)."""
    n = len(customer_ids)
    first = np.asarray(_FIRST, dtype=object)[rng.integers(0, len(_FIRST), n)]
    last = np.asarray(_LAST, dtype=object)[rng.integers(0, len(_LAST), n)]
    slug = pd.Series(first + "." + last).str.lower().str.replace("'", "", regex=False)
    email = (slug + pd.Series(np.arange(1, n + 1)).astype(str) + "@example.com").to_numpy(dtype=object)
    email = np.where(rng.random(n) < 0.85, email, "")
    joined = (
        transactions[transactions["customer_id"] != ""]
        .groupby("customer_id")["purchase_date"]
        .min()
        .reindex(customer_ids)
    )
    answer = rng.choice(np.array(["yes", "no", ""], dtype=object), size=n, p=[0.72, 0.12, 0.16])
    answer = np.where(phones == "", "", answer)
    span = (end_ts - joined).dt.total_seconds().to_numpy() / 86400
    consent_day = joined + pd.to_timedelta(np.floor(rng.uniform(0, 1, n) * np.minimum(span, 60)), unit="D")
    consent_date = np.where(answer != "", consent_day.dt.strftime("%Y-%m-%d").to_numpy(dtype=object), "")
    return pd.DataFrame(
        {
            "customer_id": customer_ids,
            "first_name": first,
            "last_name": last,
            "phone": phones,
            "email": email,
            "store": STORES["store"].to_numpy()[home],
            "sms_consent": answer,
            "sms_consent_date": consent_date,
        }
    )


def generate_lines(n_lines: int, seed: int = 0, end: date = date(2026, 10, 31), days: int = 730) -> pd.DataFrame:
    """``n_lines`` purchase lines in the demo layout, fully vectorised, for import benchmarks.

    One customer per ~16 lines with gamma-distributed activity, ~2.5 lines per basket, Zipf products.
    Returns a frame with TRANSACTION_COLUMNS (purchase_date as datetime64, quantity/prices float).
    """
    rng = np.random.default_rng(seed)
    catalog = product_catalog(42)
    n_customers = max(1, n_lines // 16)
    sizes = 1 + rng.poisson(1.5, n_lines // 2 + 1)
    n_baskets = int(np.searchsorted(np.cumsum(sizes), n_lines)) + 1
    sizes = sizes[:n_baskets]
    sizes[-1] -= int(sizes.sum() - n_lines)
    basket = np.repeat(np.arange(n_baskets), sizes)
    weights = rng.gamma(0.65, 1.0, n_customers)
    cust = rng.choice(n_customers, size=n_baskets, p=weights / weights.sum())
    anonymous = rng.random(n_baskets) < 0.04
    end_ts = pd.Timestamp(end) + pd.Timedelta(hours=21)
    seconds = np.sort(rng.integers(0, days * 86400, n_baskets))
    when = (end_ts - pd.Timedelta(days=days)).to_datetime64() + seconds.astype("timedelta64[s]")
    product = rng.choice(len(catalog), size=n_lines, p=catalog["popularity"].to_numpy())
    qty = 1 + rng.poisson(0.3, n_lines)
    qty[rng.random(n_lines) < 0.01] *= -1
    price = catalog["price"].to_numpy()[product]
    cust_ids = np.strings.add("C", np.strings.zfill(np.arange(1, n_customers + 1).astype("U"), 7)).astype(object)
    tx_ids = np.strings.add("T", np.strings.zfill(np.arange(1, n_baskets + 1).astype("U"), 9)).astype(object)
    slots = rng.integers(0, len(AREA_CODES) * 100, n_customers)
    phones = np.strings.add(
        np.strings.add("+1", np.asarray(AREA_CODES)[slots // 100].astype("U")),
        np.strings.add("5550", (100 + slots % 100).astype("U")),
    ).astype(object)
    line_cust = cust[basket]
    line_anon = anonymous[basket]
    store = rng.choice(3, size=n_baskets, p=_STORE_SHARE)[basket]
    return pd.DataFrame(
        {
            "customer_id": np.where(line_anon, "", cust_ids[line_cust]),
            "transaction_id": tx_ids[basket],
            "purchase_date": when[basket],
            "product_id": catalog["product_id"].to_numpy()[product],
            "product_name": catalog["product_name"].to_numpy()[product],
            "quantity": qty,
            "price_per_unit": price,
            "total_amount": np.round(qty * price, 2),
            "Mobile": np.where(line_anon, "", phones[line_cust]),
            "store": STORES["store"].to_numpy()[store],
        }
    )


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def to_csv_bytes(frame: pd.DataFrame, **kwargs) -> bytes:
    """CSV bytes with fixed formatting (ISO dates, '\\n' line ends) so the same frame gives the same bytes."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", date_format="%Y-%m-%d %H:%M:%S", **kwargs)
    return buffer.getvalue().encode("utf-8")


def write_demo(out: Path, n_customers: int = 5000, seed: int = 42) -> list[Path]:
    """Write demo_transactions/stock/customers/stores.csv and the sample files under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = generate_store(n_customers=n_customers, seed=seed)
    written = []
    for name in ("transactions", "stock", "customers", "stores"):
        path = out / f"demo_{name}.csv"
        path.write_bytes(to_csv_bytes(store[name]))
        written.append(path)
    written += write_samples(out / "samples", seed=seed)
    return written


def write_samples(out: Path, seed: int = 42) -> list[Path]:
    """Small files (~200 lines) in every supported layout for the upload page's "try a sample"."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    small = generate_store(n_customers=40, days=365, seed=seed + 1)
    tx = small["transactions"].head(200).copy()
    rng = np.random.default_rng(seed + 2)
    files: dict[str, bytes] = {}

    loyalist = tx[TRANSACTION_COLUMNS[:-1]]  # the original nine columns, no store
    files["transactions_loyalist.csv"] = to_csv_bytes(loyalist)

    numeric_customer = tx["customer_id"].str.slice(1).replace("", np.nan).astype(float) + 12000
    invoice = 560000 + pd.factorize(tx["transaction_id"])[0]
    uci = pd.DataFrame(
        {
            "InvoiceNo": np.where(tx["quantity"] < 0, "C", "") + invoice.astype(str),
            "StockCode": tx["product_id"].str.replace("P", "2", regex=False),
            "Description": tx["product_name"].str.upper(),
            "Quantity": tx["quantity"].astype(int),
            "InvoiceDate": [f"{d.month}/{d.day}/{d.year} {d.hour}:{d.minute:02d}" for d in tx["purchase_date"]],
            "UnitPrice": tx["price_per_unit"],
            "CustomerID": numeric_customer.map(lambda v: "" if np.isnan(v) else f"{v:.1f}"),
            "Country": "United States",
        }
    )
    files["transactions_uci.csv"] = to_csv_bytes(uci)

    daily = tx[tx["customer_id"] != ""].assign(day=tx["purchase_date"].dt.strftime("%Y%m%d"))
    cdnow = daily.groupby(["customer_id", "day"], as_index=False).agg(
        quantity=("quantity", "sum"), amount=("total_amount", "sum")
    )
    cdnow = pd.DataFrame(
        {
            "customer": cdnow["customer_id"].str.slice(1),
            "date": cdnow["day"],
            "quantity": cdnow["quantity"].astype(int),
            "amount": cdnow["amount"].round(2),
        }
    )
    files["transactions_cdnow.csv"] = to_csv_bytes(cdnow)

    accented = {
        "Cream Mug": "Crème Mug",
        "Almond Biscotti": "Biscotti à l'amande",
        "Brownie": "Brownie façon maison",
        "Espresso Beans": "Café Espresso Beans",
        "Macarons": "Macarons Pâtissier",
    }
    semi = pd.DataFrame(
        {
            "receipt": tx["transaction_id"],
            "date": tx["purchase_date"].dt.strftime("%d.%m.%Y %H:%M"),
            "sku": tx["product_id"],
            "item": tx["product_name"].replace(accented),
            "qty": tx["quantity"].astype(int).astype(str),
            "unit_price": tx["price_per_unit"].map(lambda v: f"{v:.2f}".replace(".", ",")),
            "client": tx["customer_id"],
            "phone": tx["Mobile"].str.replace(r"^\+1(\d{3})(\d{3})(\d{4})$", r"(\1) \2-\3", regex=True),
        }
    )
    files["transactions_semicolon_latin1.csv"] = to_csv_bytes(semi, sep=";").decode("utf-8").encode("latin-1")

    stock = small["stock"].head(60)
    files["stock.csv"] = to_csv_bytes(stock)
    customers = small["customers"].copy()
    styles = rng.integers(0, 3, len(customers))
    digits = customers["phone"].str.slice(2)
    customers["phone"] = np.select(
        [customers["phone"] == "", styles == 0, styles == 1],
        [
            "",
            customers["phone"],
            "(" + digits.str.slice(0, 3) + ") " + digits.str.slice(3, 6) + "-" + digits.str.slice(6),
        ],
        digits.str.slice(0, 3) + "." + digits.str.slice(3, 6) + "." + digits.str.slice(6),
    )
    files["customers.csv"] = to_csv_bytes(customers)

    bad = (
        loyalist.head(30)
        .copy()
        .astype({"quantity": object, "total_amount": object, "price_per_unit": object, "purchase_date": object})
    )
    bad["purchase_date"] = bad["purchase_date"].astype(str)
    bad.loc[3, "purchase_date"] = "yesterday"
    bad.loc[8, "purchase_date"] = "2026-02-30 10:00:00"
    bad.loc[12, "total_amount"] = "twelve"
    bad.loc[15, "price_per_unit"] = "N/A"
    bad.loc[17, "quantity"] = ""
    bad.loc[21, "Mobile"] = "555-1234"
    bad.loc[24, "Mobile"] = "+44 7700 900123"  # UK drama range: not a real number
    bad.loc[27, ["price_per_unit", "total_amount"]] = ""
    files["transactions_with_errors.csv"] = to_csv_bytes(bad)

    written = []
    for name, payload in files.items():
        (out / name).write_bytes(payload)
        written.append(out / name)
    xlsx = out / "transactions.xlsx"
    _write_xlsx(xlsx, loyalist)
    written.append(xlsx)
    return written


def _write_xlsx(path: Path, frame: pd.DataFrame) -> None:
    """Typed cells (dates, numbers, text ids/phones) on the first sheet and a notes sheet after it."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Sales"
    ws.append(list(frame.columns))
    for row in frame.itertuples(index=False):  # openpyxl writes row by row
        values = list(row)
        values[2] = values[2].to_pydatetime()
        ws.append(values)
    notes = wb.create_sheet("Notes")
    notes.append(["Demo export from the Loyalist sample store; only the first sheet is imported."])
    buffer = io.BytesIO()
    wb.save(buffer)
    path.write_bytes(_fixed_zip_times(buffer.getvalue()))


def _fixed_zip_times(payload: bytes) -> bytes:
    """Rewrite an .xlsx with fixed entry times and document dates, so the sample file is reproducible."""
    source = zipfile.ZipFile(io.BytesIO(payload))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2026-01-01T00:00:00Z", data)
            target.writestr(
                zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0)),
                data,
                compress_type=zipfile.ZIP_DEFLATED,
            )
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m preprocessing.synthetic --out data/``."""
    parser = argparse.ArgumentParser(description="Write the deterministic demo store and sample files.")
    parser.add_argument("--out", type=Path, default=Path("data"))
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for path in write_demo(args.out, n_customers=args.customers, seed=args.seed):
        print(f"{path}\t{path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
