"""Dead stock and bundle rules: hand-computed baskets, cross-checks against pandas and mlxtend, bad inputs."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlxtend.frequent_patterns import fpgrowth

from preprocessing.bundling import (
    RULE_COLUMNS,
    STOCK_COLUMNS,
    basket_matrix,
    bundle_rules,
    dead_stock,
    frequent_itemsets,
    min_count,
    pitch,
    product_names,
    rules_for_product,
    suggest_support,
    unknown_products,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def lines_from(baskets, names=None, customer=None):
    """Canonical purchase lines from {transaction_id: [product_id, ...]} (negative ids = returns)."""
    rows = []
    for tx, products in baskets.items():
        for p in products:
            qty = -1.0 if p.startswith("-") else 1.0
            pid = p.lstrip("-")
            rows.append(
                {
                    "customer_id": (customer or {}).get(tx),
                    "transaction_id": tx,
                    "product_id": pid,
                    "product_name": (names or {}).get(pid, f"name {pid}"),
                    "quantity": qty,
                    "price_per_unit": 2.0,
                    "total_amount": 2.0 * qty,
                }
            )
    return pd.DataFrame(rows)


def synthetic_lines(n_baskets, n_products=40, seed=1):
    """Skewed popularity plus a few planted co-purchase groups, so pairs and triples are frequent."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_baskets)
    tx = np.repeat(np.arange(n_baskets), sizes)
    pop = 1.0 / np.arange(1, n_products + 1) ** 0.9
    product = rng.choice(n_products, size=len(tx), p=pop / pop.sum())
    groups = np.array([[3, 17, 29], [5, 22, 36], [8, 30, 39]])
    planted = rng.random(n_baskets) < 0.25
    extra_tx = np.repeat(np.flatnonzero(planted), 3)
    extra_product = groups[rng.integers(0, 3, planted.sum())].ravel()
    keep_extra = rng.random(len(extra_tx)) < 0.8
    tx = np.r_[tx, extra_tx[keep_extra]]
    product = np.r_[product, extra_product[keep_extra]]
    return pd.DataFrame(
        {
            "transaction_id": [f"T{t}" for t in tx],
            "product_id": [f"P{p:02d}" for p in product],
            "product_name": [f"Product {p}" for p in product],
            "quantity": 1.0,
        }
    )


# --------------------------------------------------------------------------- small hand-computed baskets

SMALL = {
    "T1": ["A", "B"],
    "T2": ["A", "B", "C"],
    "T3": ["A", "C"],
    "T4": ["B"],
    "T5": ["A", "B", "B"],
    "T6": ["-C"],
}  # T5 buys B on two lines; T6 only returns C


def test_baskets_are_transactions_with_duplicates_collapsed_and_returns_left_out():
    lines = lines_from(SMALL, customer={"T1": "alice", "T2": "alice", "T3": "bob"})
    X, items = basket_matrix(lines)
    assert list(items) == ["A", "B", "C"]
    assert X.shape == (5, 3)  # T6 only returned goods: no basket; alice's two visits: two baskets
    assert X.dtype == bool
    assert np.asarray(X.sum(axis=0)).ravel().tolist() == [4, 4, 2]


def test_small_baskets_support_confidence_lift_by_hand():
    # n = 5. s(A)=.8 s(B)=.8 s(C)=.4 s(AB)=.6 s(AC)=.4 s(BC)=.2 s(ABC)=.2
    # A->C: conf .4/.8 = .5, lift .5/.4 = 1.25 (kept); A->BC: conf .25 (worse for the same antecedent)
    # B->C: lift (.2/.8)/.4 = .625 < 1; AB->C: lift (.2/.6)/.4 = .83 < 1
    result = bundle_rules(lines_from(SMALL), ["C"], min_support=0.2)
    assert result.message == ""
    assert result.n_baskets == 5
    rules = result.rules
    assert list(rules.columns) == RULE_COLUMNS
    assert len(rules) == 1
    rule = rules.iloc[0]
    assert rule["antecedents"] == ("A",) and rule["consequents"] == ("C",)
    assert rule["support"] == pytest.approx(0.4)
    assert rule["confidence"] == pytest.approx(0.5)
    assert rule["lift"] == pytest.approx(1.25)
    assert rule["baskets"] == 2
    assert rule["antecedent_names"] == "name A" and rule["consequent_names"] == "name C"


def test_best_rule_per_antecedent_breaks_confidence_ties_by_lift():
    baskets = {
        "T1": ["A", "C"],
        "T2": ["A", "C"],
        "T3": ["A", "D"],
        "T4": ["A", "D"],
        "T5": ["C"],
        "T6": ["C"],
        **{f"T{i}": ["B"] for i in range(7, 11)},
    }
    # A->C and A->D both have confidence .5; lift 1.25 vs 2.5 -> A->D wins
    rules = bundle_rules(lines_from(baskets), ["C", "D"], min_support=0.2).rules
    assert rules[["antecedents", "consequents"]].values.tolist() == [[("A",), ("D",)]]
    assert rules.iloc[0]["lift"] == pytest.approx(2.5)


def test_thresholds_filter_rules():
    lines = lines_from(SMALL)
    assert bundle_rules(lines, ["C"], min_support=0.2, min_confidence=0.6).rules.empty
    assert bundle_rules(lines, ["C"], min_support=0.2, min_lift=1.3).rules.empty
    # lift >= 0.5 lets B->C (conf .25, lift .625) in as well
    loose = bundle_rules(lines, ["C"], min_support=0.2, min_lift=0.5).rules
    assert set(loose["antecedents"]) == {("A",), ("B",), ("A", "B")}


def test_lookup_rules_for_a_product():
    baskets = {"T1": ["A", "C"], "T2": ["A", "C"], "T3": ["B", "D"], "T4": ["B", "D"], "T5": ["E"]}
    rules = bundle_rules(lines_from(baskets), ["C", "D"], min_support=0.2).rules
    assert rules_for_product(rules, "B")["consequents"].tolist() == [("D",)]
    assert rules_for_product(rules, "E").empty


def test_pitch_reads_as_an_action_with_numbers():
    rule = {"antecedents": ("E",), "consequents": ("M",), "confidence": 0.38, "lift": 2.14, "baskets": 412}
    names = {"E": "Espresso Beans", "M": "Blue Mug"}
    assert pitch(rule, names) == (
        "Put *Blue Mug* next to *Espresso Beans*: 38 % of baskets with Espresso Beans "
        "also take Blue Mug (2.1x the usual rate; 412 baskets)."
    )
    two = {"antecedents": ("E", "F"), "consequents": ("M",), "confidence": 0.5, "lift": 1.0, "baskets": 3}
    assert pitch(two, {**names, "F": "Filter Papers"}).startswith(
        "Put *Blue Mug* next to *Espresso Beans* and *Filter Papers*: "
        "50 % of baskets with Espresso Beans and Filter Papers"
    )


# ----------------------------------------------------------------- nothing found: a suggestion, not an exception


def test_default_support_finds_nothing_and_suggests_one_that_does():
    lines = synthetic_lines(3000)
    dead = ["P29", "P36"]
    result = bundle_rules(lines, dead)  # original defaults: 10 % support
    assert result.rules.empty
    assert result.suggested_support is not None and result.suggested_rules > 0
    pct = f"{result.suggested_support * 100:.3g} %"
    assert result.message == f"no rule at 10 % support; {result.suggested_rules} rules at {pct}"
    at_suggestion = bundle_rules(lines, dead, min_support=result.suggested_support, max_len=2)
    assert not at_suggestion.rules.empty
    assert at_suggestion.message == ""


def test_suggested_rule_count_matches_pair_rules_at_that_support():
    lines = synthetic_lines(3000)
    X, items = basket_matrix(lines)
    support, n_rules = suggest_support(X, items, ["P29", "P36"], below=0.1)
    pairs = independent_pair_rules(lines, {"P29", "P36"}, support, 0.05, 1.0)
    assert n_rules == len(pairs)


def test_nothing_to_bundle_says_why():
    lines = lines_from(SMALL)
    assert bundle_rules(lines, []).message == "no dead stock to bundle"
    assert "was ever sold" in bundle_rules(lines, ["NEVER-SOLD"]).message
    empty = bundle_rules(lines.iloc[0:0], ["C"])
    assert empty.n_baskets == 0 and empty.rules.empty and "no baskets" in empty.message
    lonely = bundle_rules(lines_from({"T1": ["A"], "T2": ["C"]}), ["C"])
    assert lonely.rules.empty and "rarely bought with anything" in lonely.message


# --------------------------------------------------------------------------- cross-checks on mid-size synthetic data


def independent_pair_rules(lines, dead, min_support, min_confidence, min_lift):
    """Pair rules product -> dead product, counted with a pandas self-merge (no sparse algebra)."""
    baskets = lines[lines["quantity"] > 0][["transaction_id", "product_id"]].drop_duplicates()
    n = baskets["transaction_id"].nunique()
    single = baskets["product_id"].value_counts()
    pairs = baskets.merge(baskets, on="transaction_id", suffixes=("_a", "_c"))
    pairs = pairs[pairs["product_id_a"] != pairs["product_id_c"]]
    counts = pairs.groupby(["product_id_a", "product_id_c"]).size().rename("count").reset_index()
    counts["support"] = counts["count"] / n
    counts["confidence"] = counts["support"] / (counts["product_id_a"].map(single) / n)
    counts["lift"] = counts["confidence"] / (counts["product_id_c"].map(single) / n)
    keep = (
        (counts["count"] >= min_count(min_support, n))
        & counts["product_id_c"].isin(dead)
        & (counts["confidence"] >= min_confidence)
        & (counts["lift"] >= min_lift)
    )
    return counts[keep]


def test_pair_rules_equal_an_independent_pandas_count():
    lines = synthetic_lines(4000, seed=3)
    dead = {"P17", "P22", "P30", "P39", "P12"}
    ours = bundle_rules(lines, dead, min_support=0.01, min_confidence=0.05, min_lift=1.0, max_len=2).rules
    pairs = independent_pair_rules(lines, dead, 0.01, 0.05, 1.0)
    best = pairs.sort_values(
        ["confidence", "lift", "support", "product_id_c"], ascending=[False, False, False, True]
    ).drop_duplicates("product_id_a")
    assert len(best) > 10  # the check means something
    expected = {
        (a,): ((c,), n, conf, lift)
        for a, c, n, conf, lift in best[["product_id_a", "product_id_c", "count", "confidence", "lift"]].itertuples(
            index=False
        )
    }
    got = {r.antecedents: (r.consequents, r.baskets, r.confidence, r.lift) for r in ours.itertuples()}
    assert got.keys() == expected.keys()
    for key, (cons, baskets, conf, lift) in expected.items():
        assert got[key][0] == cons and got[key][1] == baskets
        assert got[key][2] == pytest.approx(conf, rel=1e-12) and got[key][3] == pytest.approx(lift, rel=1e-12)


@pytest.mark.parametrize("min_support, max_len", [(0.01, 3), (0.005, 3), (0.02, None), (0.01, 2), (0.01, 1)])
def test_frequent_itemsets_equal_mlxtend_fpgrowth(min_support, max_len):
    X, items = basket_matrix(synthetic_lines(5000, seed=2))
    ours = frequent_itemsets(X, items, min_support, max_len=max_len)
    dense = pd.DataFrame(X.toarray(), columns=list(items))
    theirs = fpgrowth(dense, min_support=min_support, use_colnames=True, max_len=max_len)
    assert list(ours.columns) == ["support", "itemsets"]
    assert all(isinstance(s, frozenset) for s in ours["itemsets"])
    if max_len != 1:
        assert ours["itemsets"].map(len).max() == (max_len or 4)  # larger itemsets really were mined
    ours_d = dict(zip(ours["itemsets"], ours["support"]))
    theirs_d = dict(zip(theirs["itemsets"], theirs["support"]))
    assert len(ours_d) == len(ours)  # no itemset reported twice
    assert ours_d.keys() == theirs_d.keys()
    assert all(ours_d[k] == pytest.approx(theirs_d[k], rel=1e-12) for k in ours_d)


def test_min_count_matches_mlxtend_float_comparison():
    for n in (7, 30, 100, 3000, 25900):
        for s in (0.1, 0.05, 0.01, 0.005, 1 / 3):
            c = min_count(s, n)
            assert c / n >= s and (c == 1 or (c - 1) / n < s)


# --------------------------------------------------------------------------- dead stock


def test_dead_stock_ratio_threshold_and_stock_value():
    stock = pd.DataFrame(
        {
            "product_id": ["A", "B", "C", "D"],
            "product_name": ["a", "b", "c", "d"],
            "initial_stock": [100, 100, 50, 10],
            "total_sold": [10, 60, 25, 30],
            "price_per_unit": [2.0, 1.0, 4.0, 1.0],
        }
    )
    report = dead_stock(stock)
    assert list(report.dead.columns) == STOCK_COLUMNS
    # A .1, C .5 dead (worst first); B exactly .6 is not below the threshold; D sold more than stocked
    assert report.dead["product_id"].tolist() == ["A", "C"]
    assert report.dead["sold_ratio"].tolist() == pytest.approx([0.1, 0.5])
    assert report.dead["stock_value"].tolist() == pytest.approx([90 * 2.0, 25 * 4.0])
    assert report.healthy["product_id"].tolist() == ["B", "D"]
    assert report.errors.empty
    assert dead_stock(stock, threshold=0.4).dead["product_id"].tolist() == ["A"]


def test_dead_stock_without_price_leaves_stock_value_empty():
    stock = pd.DataFrame({"product_id": ["A"], "initial_stock": [10], "total_sold": [1]})
    report = dead_stock(stock)
    assert report.dead["product_id"].tolist() == ["A"]
    assert report.dead["stock_value"].isna().all()


def test_empty_stock_file_gives_empty_lists():
    for stock in (pd.DataFrame(), pd.DataFrame(columns=["product_id", "initial_stock", "total_sold"])):
        report = dead_stock(stock)
        assert report.dead.empty and report.healthy.empty and report.errors.empty
        assert list(report.dead.columns) == STOCK_COLUMNS


def test_bad_stock_rows_are_reported_never_divided():
    stock = pd.DataFrame(
        {
            "product_id": ["Z", "N", "M", "S", "X", "OK", "DUP", "DUP"],
            "initial_stock": [0, -5, None, 10, "ten", 10, 10, 12],
            "total_sold": [3, 1, 2, None, 1, 2, 1, 1],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a division by zero would warn
        report = dead_stock(stock)
    reasons = dict(zip(report.errors["product_id"], report.errors["reason"]))
    assert reasons["Z"] == "initial_stock is 0"
    assert reasons["N"] == "initial_stock is negative"
    assert reasons["M"] == "initial_stock missing"
    assert reasons["S"] == "total_sold missing"
    assert reasons["X"] == "initial_stock is not a number"
    assert (report.errors["product_id"] == "DUP").sum() == 2
    assert report.dead["product_id"].tolist() == ["OK"]
    assert report.healthy.empty
    assert not np.isinf(report.dead["sold_ratio"]).any()


def test_duplicated_product_names_with_different_ids_stay_separate():
    stock = pd.DataFrame(
        {"product_id": ["M1", "M2"], "product_name": ["Mug", "Mug"], "initial_stock": [10, 10], "total_sold": [1, 9]}
    )
    report = dead_stock(stock)
    assert report.errors.empty
    assert report.dead["product_id"].tolist() == ["M1"] and report.healthy["product_id"].tolist() == ["M2"]

    baskets = {"T1": ["E", "M1"], "T2": ["E", "M1"], "T3": ["E", "M2"], "T4": ["M2"], "T5": ["F"]}
    lines = lines_from(baskets, names={"E": "Espresso", "M1": "Mug", "M2": "Mug", "F": "Filter"})
    names = product_names(lines)
    assert names["M1"] == "Mug (M1)" and names["M2"] == "Mug (M2)" and names["E"] == "Espresso"
    rules = bundle_rules(lines, ["M1"], min_support=0.2).rules
    assert rules[["antecedents", "consequents"]].values.tolist() == [[("E",), ("M1",)]]
    assert rules.iloc[0]["consequent_names"] == "Mug (M1)"
    assert rules.iloc[0]["confidence"] == pytest.approx(2 / 3)  # M2's basket with E does not count for M1


def test_product_in_stock_but_never_sold_is_dead_and_sold_products_without_stock_are_listed():
    stock = pd.DataFrame(
        {
            "product_id": ["A", "B", "GHOST"],
            "product_name": ["a", "b", "ghost"],
            "initial_stock": [10, 10, 5],
            "total_sold": [8, 9, 0],
        }
    )
    lines = lines_from({"T1": ["A", "B", "NEW"], "T2": ["NEW", "-A"], "T3": ["A"]}, names={"NEW": "New thing"})
    report = dead_stock(stock)
    assert report.dead["product_id"].tolist() == ["GHOST"]
    assert report.dead["sold_ratio"].tolist() == [0.0]
    unknown = unknown_products(lines, stock)
    assert unknown[["product_id", "product_name", "total_sold", "transactions"]].values.tolist() == [
        ["NEW", "New thing", 2.0, 2]
    ]
    result = bundle_rules(lines, report.dead["product_id"])
    assert result.rules.empty and "was ever sold" in result.message


def test_stock_file_with_names_only_matches_sales_by_name():
    stock = pd.DataFrame({"product_name": ["Mug", "Cup"], "initial_stock": [10, 10], "total_sold": [1, 9]})
    lines = lines_from({"T1": ["M", "C", "X"]}, names={"M": "Mug", "C": "Cup", "X": "Saucer"})
    assert dead_stock(stock).dead["product_name"].tolist() == ["Mug"]
    assert unknown_products(lines, stock)["product_id"].tolist() == ["X"]


def test_preprocessing_bundling_does_not_import_flask():
    code = "import sys, preprocessing.bundling; sys.exit('flask' in sys.modules)"
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def uci_lines():
    path = DATA / "online_retail_uci.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    raw = pd.read_csv(path, dtype={"InvoiceNo": str, "StockCode": str, "Description": str})
    return raw.rename(
        columns={
            "InvoiceNo": "transaction_id",
            "StockCode": "product_id",
            "Description": "product_name",
            "Quantity": "quantity",
        }
    )


@pytest.mark.slow
def test_uci_baskets_itemsets_and_rules(uci_lines):
    X, items = basket_matrix(uci_lines)
    bought = uci_lines[uci_lines["quantity"] > 0]
    assert not bought["transaction_id"].str.startswith("C").any()  # invoices starting C are returns
    assert X.shape[0] == bought["transaction_id"].nunique()

    ours = frequent_itemsets(X, items, 0.02, max_len=3)
    dense = pd.DataFrame(X.toarray(), columns=list(items))
    theirs = fpgrowth(dense, min_support=0.02, use_colnames=True, max_len=3)
    assert dict(zip(ours["itemsets"], ours["support"])) == pytest.approx(
        dict(zip(theirs["itemsets"], theirs["support"]))
    )

    # dead stock: the quarter of products that sell fewest units
    units = bought.groupby("product_id")["quantity"].sum()
    dead = units[units <= units.quantile(0.25)].index
    default = bundle_rules(uci_lines, dead)
    assert default.rules.empty and default.message.startswith("no rule at 10 % support; ")
    support = default.suggested_support
    assert support is not None and 0.001 <= support <= 0.02
    found = bundle_rules(uci_lines, dead, min_support=support)
    rules = found.rules
    assert len(rules) > 0 and found.message == ""
    assert rules["consequents"].map(lambda c: bool(set(c) & set(dead))).all()
    assert (rules["confidence"] >= 0.05).all() and (rules["lift"] >= 1.0).all()
    assert (rules["baskets"] >= min_count(support, found.n_baskets)).all()
    assert rules["antecedents"].is_unique
    assert pitch(rules.iloc[0], found.names).startswith("Put *")
