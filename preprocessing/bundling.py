"""Dead stock and the bundles that could move it.

Two questions, answered from plain DataFrames:

* Which products are dead stock? (`dead_stock`: sold ratio below a threshold, from the stock file.)
* What is bought together with them? (`bundle_rules`: association rules over real transactions.)

Baskets are encoded in ``preprocessing.baskets`` and itemsets counted in ``preprocessing.itemsets``
(why not mlxtend's own miners is explained there); this module picks the rules that move dead stock
and words them for a manager. ``basket_matrix``, ``product_names``, ``frequent_itemsets`` and
``min_count`` are re-exported here for callers of the bundling API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mlxtend.frequent_patterns import association_rules
from scipy import sparse

from preprocessing.baskets import _as_id, basket_matrix, product_names
from preprocessing.itemsets import _upper_pairs, frequent_itemsets, min_count

DEAD_STOCK_THRESHOLD = 0.6
# Supports tried, highest first, when the asked-for support finds nothing.
SUPPORT_LADDER = (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)
PRICE_COLUMNS = ("price_per_unit", "unit_price", "price", "cost")
STOCK_COLUMNS = ["product_id", "product_name", "initial_stock", "total_sold", "sold_ratio", "stock_value"]
ERROR_COLUMNS = ["product_id", "product_name", "initial_stock", "total_sold", "reason"]
RULE_COLUMNS = [
    "antecedents",
    "consequents",
    "antecedent_names",
    "consequent_names",
    "support",
    "confidence",
    "lift",
    "baskets",
]


# --------------------------------------------------------------------------- dead stock


@dataclass
class StockReport:
    """Stock file split into dead stock, healthy stock and rows we refused to compute on.

    `dead` and `healthy` have STOCK_COLUMNS (stock_value is NaN without a price column);
    `errors` has ERROR_COLUMNS, one row per bad stock row with every reason, "; "-joined.
    """

    dead: pd.DataFrame
    healthy: pd.DataFrame
    errors: pd.DataFrame
    threshold: float = DEAD_STOCK_THRESHOLD


def dead_stock(
    stock: pd.DataFrame, threshold: float = DEAD_STOCK_THRESHOLD, price_column: str | None = None
) -> StockReport:
    """Find products selling below `threshold` of their initial stock, without guessing bad rows.

    Args:
        stock: one row per product: `product_id` and/or `product_name`, `initial_stock`,
            `total_sold` (units), optionally a unit price (`price_column`, or the first of
            PRICE_COLUMNS present) to value the unsold units.
        threshold: sold_ratio = total_sold / initial_stock below this is dead stock.
    Returns:
        StockReport. Rows with initial_stock missing/0/negative/not a number, total_sold
        missing/negative/not a number, no product key, or a key listed twice go to `errors`
        and are never divided by. Dead rows are sorted worst ratio first.
    """
    if stock.empty:
        empty = pd.DataFrame(columns=STOCK_COLUMNS)
        return StockReport(empty, empty.copy(), pd.DataFrame(columns=ERROR_COLUMNS), threshold)
    if "initial_stock" not in stock or "total_sold" not in stock:
        raise ValueError("stock file needs columns initial_stock and total_sold")
    if "product_id" not in stock and "product_name" not in stock:
        raise ValueError("stock file needs a product_id or product_name column")

    missing = pd.Series(np.nan, index=stock.index, dtype=object)
    pid = _as_id(stock["product_id"]) if "product_id" in stock else missing
    name = _as_id(stock["product_name"]) if "product_name" in stock else missing
    raw_init, raw_sold = stock["initial_stock"], stock["total_sold"]
    init = pd.to_numeric(raw_init, errors="coerce").astype(float)
    sold = pd.to_numeric(raw_sold, errors="coerce").astype(float)
    key = pid.fillna(name)
    dup_count = key.map(key.value_counts()).fillna(0)

    reasons = [
        (raw_init.isna(), "initial_stock missing"),
        (raw_init.notna() & init.isna(), "initial_stock is not a number"),
        (init == 0, "initial_stock is 0"),
        (init < 0, "initial_stock is negative"),
        (raw_sold.isna(), "total_sold missing"),
        (raw_sold.notna() & sold.isna(), "total_sold is not a number"),
        (sold < 0, "total_sold is negative"),
        (key.isna(), "no product_id or product_name"),
        (dup_count > 1, "product listed more than once in the stock file"),
    ]
    reason = pd.Series("", index=stock.index, dtype=object)
    for mask, text in reasons:
        reason = reason.where(~mask.to_numpy(), reason + np.where(reason == "", "", "; ") + text)
    bad = (reason != "").to_numpy()

    frame = pd.DataFrame(
        {"product_id": pid, "product_name": name, "initial_stock": init, "total_sold": sold}, index=stock.index
    )
    errors = (
        frame[bad]
        .assign(initial_stock=raw_init[bad], total_sold=raw_sold[bad], reason=reason[bad])
        .reset_index(drop=True)
    )

    ok = frame[~bad].copy()
    ok["sold_ratio"] = ok["total_sold"] / ok["initial_stock"]
    price_column = price_column or next((c for c in PRICE_COLUMNS if c in stock), None)
    if price_column is not None:
        price = pd.to_numeric(stock.loc[~bad, price_column], errors="coerce").astype(float)
        ok["stock_value"] = (ok["initial_stock"] - ok["total_sold"]).clip(lower=0) * price
    else:
        ok["stock_value"] = np.nan
    is_dead = ok["sold_ratio"] < threshold
    dead = (
        ok[is_dead]
        .sort_values(["sold_ratio", "stock_value"], ascending=[True, False], kind="stable")
        .reset_index(drop=True)
    )
    healthy = ok[~is_dead].sort_values("sold_ratio", kind="stable").reset_index(drop=True)
    return StockReport(dead[STOCK_COLUMNS], healthy[STOCK_COLUMNS], errors[ERROR_COLUMNS], threshold)


def _purchases(lines: pd.DataFrame) -> pd.DataFrame:
    """Sales lines that put a product in a basket: ids present, quantity not <= 0 (returns out)."""
    missing = [c for c in ("transaction_id", "product_id") if c not in lines]
    if missing:
        raise ValueError(f"purchase lines need columns {missing}")
    keep = lines["transaction_id"].notna() & lines["product_id"].notna()
    if "quantity" in lines:
        keep &= ~(pd.to_numeric(lines["quantity"], errors="coerce") <= 0)
    return lines[keep.to_numpy()]


def unknown_products(lines: pd.DataFrame, stock: pd.DataFrame) -> pd.DataFrame:
    """List products that were sold but have no stock record, so nobody guesses their stock.

    Matched on product_id; stock rows that only carry a product_name match on the name.
    Returns product_id, product_name, total_sold (units), transactions, most sold first.
    """
    sold = _purchases(lines)
    pid = _as_id(sold["product_id"])
    name = _as_id(sold["product_name"]) if "product_name" in sold else pd.Series(np.nan, index=sold.index)
    stock_ids = _as_id(stock["product_id"]) if "product_id" in stock else pd.Series(dtype=object)
    if "product_name" in stock:
        stock_names = _as_id(stock["product_name"])[stock_ids.reindex(stock.index).isna()]
    else:
        stock_names = pd.Series(dtype=object)
    known = pid.isin(stock_ids.dropna()) | name.isin(stock_names.dropna())
    qty = pd.to_numeric(sold["quantity"], errors="coerce") if "quantity" in sold else pd.Series(1.0, index=sold.index)
    rest = pd.DataFrame(
        {"product_id": pid, "product_name": name, "quantity": qty, "transaction_id": sold["transaction_id"]}
    )[~known.to_numpy()]
    out = rest.groupby("product_id", sort=True).agg(
        product_name=("product_name", "first"),
        total_sold=("quantity", "sum"),
        transactions=("transaction_id", "nunique"),
    )
    return out.sort_values("total_sold", ascending=False, kind="stable").reset_index()


# --------------------------------------------------------------------------- rules


@dataclass
class BundleResult:
    """Best bundle rule per antecedent, and what to try when the support found nothing.

    `rules` has RULE_COLUMNS: antecedents/consequents are sorted tuples of product_id,
    *_names the same products ' + '-joined, support and confidence fractions, baskets the
    number of baskets containing every product of the rule. `message` is "" when rules were found.
    """

    rules: pd.DataFrame
    n_baskets: int
    min_support: float
    min_confidence: float
    min_lift: float
    message: str = ""
    suggested_support: float | None = None
    suggested_rules: int = 0
    names: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))


def _fmt_pct(fraction: float) -> str:
    return f"{fraction * 100:.3g} %"


def suggest_support(
    matrix: sparse.spmatrix,
    items: Sequence,
    dead_product_ids: Iterable,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
    below: float = 1.0,
    ladder: Sequence[float] = SUPPORT_LADDER,
) -> tuple[float, int] | None:
    """Highest support on the ladder (and below `below`) where some product -> dead-stock pair rule passes.

    Counts all pairs once (one sparse product at the ladder's lowest support) instead of mining
    at every step. Returns (support, number of one-product -> one-dead-product rules) or None.
    Rules with two-product antecedents are not counted, so mining at that support can find more.
    """
    X = sparse.csr_matrix(matrix, dtype=bool)
    n = X.shape[0]
    steps = sorted((s for s in ladder if s < below), reverse=True)
    if n == 0 or not steps:
        return None
    dead = np.isin(np.asarray(items, dtype=object), list(dead_product_ids))
    col_counts = np.bincount(X.indices, minlength=X.shape[1])
    cols = np.flatnonzero(col_counts >= min_count(steps[-1], n))
    if not dead[cols].any():
        return None
    R = sparse.csr_matrix(X[:, cols], dtype=np.int32)
    i, j, c_ab = _upper_pairs(R, min_count(steps[-1], n))
    s_a, s_b, s_ab = col_counts[cols][i] / n, col_counts[cols][j] / n, c_ab / n
    forward = dead[cols][j]  # rule i -> j, j dead
    backward = dead[cols][i]  # rule j -> i, i dead
    conf_f, conf_b = s_ab / s_a, s_ab / s_b
    ok_f = forward & (conf_f >= min_confidence) & (conf_f / s_b >= min_lift)
    ok_b = backward & (conf_b >= min_confidence) & (conf_b / s_a >= min_lift)
    for step in steps:
        frequent = c_ab >= min_count(step, n)
        n_rules = int((ok_f & frequent).sum() + (ok_b & frequent).sum())
        if n_rules:
            return step, n_rules
    return None


def _relevant(itemsets: pd.DataFrame, dead: set) -> pd.DataFrame:
    """Itemsets holding a dead product, plus every subset of them (association_rules needs their support)."""
    with_dead = [s for s in itemsets["itemsets"] if not dead.isdisjoint(s)]
    needed = set()
    for s in with_dead:
        members = sorted(s)
        for mask in range(1, 2 ** len(members)):
            needed.add(frozenset(m for k, m in enumerate(members) if mask >> k & 1))
    return itemsets[itemsets["itemsets"].isin(needed)].reset_index(drop=True)


def bundle_rules(
    lines: pd.DataFrame,
    dead_product_ids: Iterable,
    min_support: float = 0.1,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
    max_len: int = 3,
) -> BundleResult:
    """Suggest what to sell dead stock with: the best rule per antecedent whose consequent holds dead stock.

    Args:
        lines: canonical purchase lines (transaction_id, product_id, product_name, quantity);
            one basket per transaction, returns excluded (see basket_matrix).
        dead_product_ids: product_id of dead stock (e.g. dead_stock(...).dead.product_id).
        min_support, min_confidence, min_lift: the original system's defaults 0.1 / 0.05 / 1.0.
        max_len: largest itemset (antecedent + consequent) mined.
    Returns:
        BundleResult; never raises for "nothing found": the message says so and, where a lower
        support on SUPPORT_LADDER finds pair rules, names it ("no rule at 10 % support; 412 rules at 0.5 %").
    """
    X, items = basket_matrix(lines)
    n = X.shape[0]
    names = product_names(lines)
    dead = {str(d).strip() for d in dead_product_ids if pd.notna(d)}
    sold_dead = dead & set(items)
    result = BundleResult(pd.DataFrame(columns=RULE_COLUMNS), n, min_support, min_confidence, min_lift, names=names)
    if n == 0:
        result.message = "no baskets: there are no sales lines with a positive quantity"
        return result
    if not dead:
        result.message = "no dead stock to bundle"
        return result
    if not sold_dead:
        result.message = f"none of the {len(dead)} dead-stock products was ever sold, so none can be bundled"
        return result

    itemsets = _relevant(frequent_itemsets(X, items, min_support, max_len), sold_dead)
    rules = pd.DataFrame()
    if itemsets["itemsets"].map(len).gt(1).any():
        rules = association_rules(
            itemsets,
            num_itemsets=n,
            metric="confidence",
            min_threshold=min_confidence,
            return_metrics=["support", "confidence", "lift"],
        )
        rules = rules[~rules["consequents"].map(sold_dead.isdisjoint) & (rules["lift"] >= min_lift)]
    if len(rules):
        result.rules = _best_per_antecedent(rules, n, names)
        return result

    suggestion = suggest_support(X, items, sold_dead, min_confidence, min_lift, below=min_support)
    if suggestion is None:
        lowest = min(min_support, min(SUPPORT_LADDER))
        result.message = (
            f"no rule at {_fmt_pct(min_support)} support, nor at any support down to "
            f"{_fmt_pct(lowest)}: the dead-stock products are rarely bought with anything"
        )
    else:
        result.suggested_support, result.suggested_rules = suggestion
        result.message = (
            f"no rule at {_fmt_pct(min_support)} support; "
            f"{result.suggested_rules} rules at {_fmt_pct(result.suggested_support)}"
        )
    return result


def _best_per_antecedent(rules: pd.DataFrame, n: int, names: pd.Series) -> pd.DataFrame:
    """Keep the highest-confidence rule per antecedent (ties: lift, support, then ids), ids as sorted tuples."""
    out = pd.DataFrame(
        {
            "antecedents": rules["antecedents"].map(lambda s: tuple(sorted(s))),
            "consequents": rules["consequents"].map(lambda s: tuple(sorted(s))),
            "support": rules["support"].astype(float),
            "confidence": rules["confidence"].astype(float),
            "lift": rules["lift"].astype(float),
        }
    )
    out = out.sort_values(
        ["confidence", "lift", "support", "antecedents", "consequents"],
        ascending=[False, False, False, True, True],
        kind="stable",
    )
    out = out.drop_duplicates("antecedents").reset_index(drop=True)
    out["baskets"] = np.rint(out["support"].to_numpy() * n).astype(np.int64)
    join = lambda ids: " + ".join(str(names.get(i, i)) for i in ids)  # noqa: E731
    out["antecedent_names"] = out["antecedents"].map(join)
    out["consequent_names"] = out["consequents"].map(join)
    return out[RULE_COLUMNS]


def rules_for_product(rules: pd.DataFrame, product_id: str) -> pd.DataFrame:
    """Answer "I am selling X — what dead stock fits with it?": rules whose antecedent includes X."""
    return rules[rules["antecedents"].map(lambda ids: product_id in ids)]


def pitch(rule: Mapping, names: Mapping) -> str:
    """One sentence a manager can act on, with the number behind it.

    Example: "Put *Blue Mug* next to *Espresso Beans*: 38 % of baskets with Espresso Beans
    also take Blue Mug (2.1x the usual rate; 412 baskets)."
    """

    def label(ids: Sequence) -> list[str]:
        return [str(names.get(i, i)) for i in ids]

    ante, cons = label(rule["antecedents"]), label(rule["consequents"])
    put = " and ".join(f"*{c}*" for c in cons)
    near = " and ".join(f"*{a}*" for a in ante)
    conf = float(rule["confidence"]) * 100
    pct = f"{conf:.0f}" if conf >= 1 else f"{conf:.1g}"
    tail = [f"{float(rule['lift']):.1f}x the usual rate"]
    if "baskets" in rule and pd.notna(rule["baskets"]):
        tail.append(f"{int(rule['baskets'])} baskets")
    return (
        f"Put {put} next to {near}: {pct} % of baskets with {' and '.join(ante)} "
        f"also take {' and '.join(cons)} ({'; '.join(tail)})."
    )
