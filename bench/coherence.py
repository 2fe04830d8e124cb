"""One coherent customer picture: contradiction shares, tier share, churn holdout metrics, bundle count.

Run from the repository root: ``python -m bench.coherence [--quick]`` (``--quick``: the demo store only,
without UCI Online Retail). One JSON line per data set and purchase model: the share of scored
customers with churn > 0.7 and P(alive) > 0.9 or churn < 0.3 and P(alive) < 0.1 — with the purchase
model's own P(alive) ("raw"), with the reconciled one (``preprocessing.coherence``) and with the
chance of buying again within 12 months that the pages show ("shown_return_12m") — the share of
customers active in the last 12 months who hold a tier under ``segmentation.derive_bar``, the churn
model's temporal-holdout ROC-AUC / PR-AUC / Brier, and (demo) dead-stock products with a suggestion.
UCI is read from ../shared/data/ and skipped when absent.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from preprocessing import bundling, churn, clv, segmentation
from preprocessing.churn.training import holdout_metrics
from preprocessing.coherence import coherence, customer_picture
from preprocessing.features import compute_features
from preprocessing.suggestions import dead_stock_suggestions
from preprocessing.synthetic import generate_store

UCI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "online_retail_uci.csv.gz"


def demo_lines() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo store as ``flask demo`` writes it (5,000 customers, seed 42): lines and stock."""
    store = generate_store(5000, seed=42)
    lines = store["transactions"].copy()
    lines["customer_id"] = lines["customer_id"].replace("", np.nan)  # anonymous baskets
    lines["purchase_date"] = pd.to_datetime(lines["purchase_date"])
    return lines, store["stock"]


def uci_lines() -> pd.DataFrame | None:
    """UCI Online Retail as canonical lines (cancellations are negative lines), or None when absent."""
    if not UCI.exists():
        return None
    raw = pd.read_csv(UCI, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str})
    lines = pd.DataFrame(
        {
            "customer_id": raw["CustomerID"].str.replace(r"\.0$", "", regex=True),
            "transaction_id": raw["InvoiceNo"],
            "purchase_date": pd.to_datetime(raw["InvoiceDate"]),
            "product_id": raw["StockCode"],
            "product_name": raw["Description"],
            "quantity": raw["Quantity"].astype(float),
            "price_per_unit": raw["UnitPrice"].astype(float),
        }
    )
    lines["total_amount"] = lines["quantity"] * lines["price_per_unit"]
    return lines


def measure(name: str, lines: pd.DataFrame) -> list[dict]:
    """Churn training, both purchase models, the reconciled picture and the derived tier bar."""
    start = time.perf_counter()
    trained = churn.train_churn(lines)
    reference = trained.cutoffs["reference"]
    p = churn.score_churn(trained.model, churn.churn_features(lines, reference))
    summary = clv.rfm_summary(lines, as_of=reference)
    gg = clv.fit_gamma_gamma(summary)
    features = compute_features(lines, reference)
    bar = segmentation.derive_bar(features)
    recent = features["recency"] <= 365
    tier_share = float(segmentation.eligible(features, *bar)[recent].mean())
    metrics = {k: {m: round(v[m], 4) for m in ("roc_auc", "pr_auc", "brier")} for k, v in trained.metrics.items()}
    out = []
    for model in clv.MODELS:
        bg = clv.fit_purchase_model(summary, model)
        picture = customer_picture(p, bg, gg, summary, horizon_days=trained.horizon_days)
        raw = coherence(picture.assign(p_alive=picture["p_alive_model"]))
        out.append(
            {
                "name": f"coherence.{name}.{model}",
                "n": raw["n"],
                "log_likelihood": round(bg.log_likelihood, 1),
                "raw": {k: round(v, 4) for k, v in raw.items() if k != "n"},
                "reconciled": {k: round(v, 4) for k, v in coherence(picture).items() if k != "n"},
                "shown_return_12m": {k: round(v, 4) for k, v in coherence(picture, "p_return_12m").items() if k != "n"},
            }
        )
    out.append(
        {
            "name": f"coherence.{name}.tiers",
            "min_frequency": bar[0],
            "min_monetary": bar[1],
            "share_recent_with_tier": round(tier_share, 4),
        }
    )
    out.append(
        {
            "name": f"coherence.{name}.churn",
            "chosen": trained.chosen,
            "holdout": metrics,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    return out


def return_holdout(name: str, lines: pd.DataFrame) -> dict:
    """Is "chance of buying again within 12 months" right? Everything refitted on the data before a
    cutoff one year before the end, then checked against who bought in that last year (a temporal
    holdout): ROC-AUC, Brier, and the mean predicted chance against the share that came back.
    """
    end = lines["purchase_date"].max().normalize() + pd.Timedelta(days=1)
    cutoff = end - pd.Timedelta(days=365)
    before = lines[lines["purchase_date"] < cutoff]
    trained = churn.train_churn(before)
    reference = trained.cutoffs["reference"]
    p = churn.score_churn(trained.model, churn.churn_features(before, reference))
    summary = clv.rfm_summary(before, as_of=reference)
    picture = customer_picture(p, clv.fit_purchase_model(summary), clv.fit_gamma_gamma(summary), summary)
    predicted = picture["p_return_12m"].dropna()
    after = lines[(lines["purchase_date"] >= reference) & (lines["quantity"] > 0)]
    came_back = predicted.index.isin(after["customer_id"].dropna().unique()).astype(int)
    m = holdout_metrics(came_back, predicted.to_numpy())
    return {
        "name": f"coherence.{name}.return_12m_holdout",
        "cutoff": f"{reference:%Y-%m-%d}",
        "n": m["n"],
        "roc_auc": round(m["roc_auc"], 4),
        "brier": round(m["brier"], 4),
        "mean_predicted": round(float(predicted.mean()), 4),
        "share_came_back": round(float(came_back.mean()), 4),
    }


def main(argv: list[str] | None = None) -> None:
    """Print the JSON lines for the demo store and (without ``--quick``) UCI Online Retail."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo store only")
    args = parser.parse_args(argv)
    lines, stock = demo_lines()
    for line in measure("demo", lines):
        print(json.dumps(line), flush=True)
    suggestions = dead_stock_suggestions(lines, bundling.dead_stock(stock))
    print(json.dumps({"name": "coherence.demo.bundles", "dead_stock_with_suggestion": int(len(suggestions))}))
    print(json.dumps(return_holdout("demo", lines)), flush=True)
    if args.quick:
        return
    uci = uci_lines()
    if uci is None:
        print(json.dumps({"name": "coherence.uci", "skipped": f"{UCI} not found"}))
        return
    for line in measure("uci", uci):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
