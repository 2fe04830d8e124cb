"""Dead-stock suggestions: one per dead-stock product, the rule that best pushes it, ranked by stock value.

Why not ``bundling.bundle_rules`` as it is: it keeps the best rule per *antecedent* at a support given
as a share of baskets (the original 10 % finds almost nothing on real data), so one dead item can fill
several rows and a consequent can hold a product that sells well. A suggestion here:

* has exactly one dead-stock product as its consequent — the item staff are asked to move — and any
  products as the antecedent (what customers already buy; the dead item goes next to it);
* appears once per dead-stock product: its best rule by confidence, then lift, then baskets;
* is ranked by ``stock_value`` (unsold units x price: the money it could clear), highest first, then
  by confidence; products without a price rank after those with one;
* needs at least ``min_baskets`` baskets holding the whole rule (default 10: few enough to find
  suggestions in a small shop's history, enough that a coincidence is unlikely to pass the lift test).
  The minimum support is therefore ``min_baskets / number of baskets``, whatever the store's size.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from mlxtend.frequent_patterns import association_rules

from preprocessing.baskets import _as_id, basket_matrix, product_names
from preprocessing.bundling import StockReport, _relevant
from preprocessing.itemsets import frequent_itemsets

DEFAULT_MIN_BASKETS = 10
SUGGESTION_COLUMNS = [
    "product_id",
    "product_name",
    "antecedents",
    "antecedent_names",
    "support",
    "confidence",
    "lift",
    "baskets",
    "sold_ratio",
    "stock_value",
]


def dead_stock_suggestions(
    lines: pd.DataFrame,
    stock: StockReport | pd.DataFrame,
    min_baskets: int = DEFAULT_MIN_BASKETS,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
    max_len: int = 2,
) -> pd.DataFrame:
    """The best rule that pushes each dead-stock product, one row per product, most stock value first.

    Args:
        lines: canonical purchase lines (one basket per transaction_id; returns excluded).
        stock: ``bundling.dead_stock(...)`` (its ``dead`` frame is used) or a frame of dead products
            with ``product_id`` and optionally ``sold_ratio`` and ``stock_value``.
        min_baskets: baskets that must hold antecedent and dead product together (>= 1).
        min_confidence, min_lift: as in ``bundle_rules`` (defaults 0.05 and 1.0).
        max_len: largest rule (antecedent + the dead product); default 2, one product to put it next to
            (rules with two-product antecedents win on confidence from a handful of baskets).
    Returns:
        DataFrame with ``SUGGESTION_COLUMNS``: ``product_id`` / ``product_name`` the dead item to push,
        ``antecedents`` a sorted tuple of product ids to put it next to, ``antecedent_names`` them joined
        with " + ", support / confidence / lift of antecedents -> dead item, ``baskets`` holding all.
    """
    if min_baskets < 1:
        raise ValueError("min_baskets must be at least 1")
    dead = stock.dead if isinstance(stock, StockReport) else stock
    dead = dead.assign(product_id=_as_id(dead["product_id"])).dropna(subset=["product_id"])
    dead = dead.drop_duplicates("product_id").set_index("product_id")
    empty = pd.DataFrame(columns=SUGGESTION_COLUMNS)
    X, items = basket_matrix(lines)
    n = X.shape[0]
    sold_dead = set(dead.index) & set(items)
    if n == 0 or not sold_dead:
        return empty
    itemsets = _relevant(frequent_itemsets(X, items, min(1.0, min_baskets / n), max_len), sold_dead)
    if not itemsets["itemsets"].map(len).gt(1).any():
        return empty
    rules = association_rules(
        itemsets,
        num_itemsets=n,
        metric="confidence",
        min_threshold=min_confidence,
        return_metrics=["support", "confidence", "lift"],
    )
    single = rules["consequents"].map(len) == 1
    target = rules["consequents"].map(lambda s: next(iter(s)))
    rules = rules[single & target.isin(sold_dead) & (rules["lift"] >= min_lift)]
    if rules.empty:
        return empty
    names = product_names(lines)
    out = pd.DataFrame(
        {
            "product_id": target[rules.index],
            "antecedents": rules["antecedents"].map(lambda s: tuple(sorted(s))),
            "support": rules["support"].astype(float),
            "confidence": rules["confidence"].astype(float),
            "lift": rules["lift"].astype(float),
        }
    )
    out["baskets"] = np.rint(out["support"].to_numpy() * n).astype(np.int64)
    out = out.sort_values(
        ["confidence", "lift", "baskets", "product_id", "antecedents"],
        ascending=[False, False, False, True, True],
        kind="stable",
    )
    out = out.drop_duplicates("product_id")
    out["product_name"] = out["product_id"].map(names).fillna(out["product_id"])
    out["antecedent_names"] = out["antecedents"].map(lambda ids: " + ".join(str(names.get(i, i)) for i in ids))
    for column in ("sold_ratio", "stock_value"):
        out[column] = out["product_id"].map(dead[column]) if column in dead else np.nan
    out = out.sort_values(["stock_value", "confidence"], ascending=[False, False], na_position="last", kind="stable")
    return out[SUGGESTION_COLUMNS].reset_index(drop=True)


def pushes_only_dead_stock(suggestions: pd.DataFrame, dead_product_ids: Iterable) -> bool:
    """True when every suggestion asks staff to move a dead-stock product (the check the tests make)."""
    return bool(suggestions["product_id"].isin({str(d).strip() for d in dead_product_ids}).all())
