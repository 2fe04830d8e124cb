"""Benchmark: per-customer features + loyalty tiers, pandas (ours) vs polars (speed anchor) vs row-wise.

Run from the repo root: ``python -m bench.features`` (1M and 10M lines; row-wise at 100k and 1M)
or ``python -m bench.features --quick`` (100k and 1M; row-wise at 100k).

Every case runs in its own subprocess so ``peak_rss_mb`` is the whole process's peak (interpreter,
imports, the generated lines, the computation). Each process generates the same synthetic lines
from a fixed seed (~10 lines per customer, so 10M lines ~ 1M customers; ~5 % anonymous lines,
~3 % returns, ~1 % zero-price lines, skewed customer activity so a few percent clear the loyalty
bar), builds its engine's frame from them (ids as categoricals in both engines — what a lean
loader hands over), then times:

- ``features_seconds``: the feature table (pandas ``compute_features`` / the same definitions
  in polars / a ``groupby().apply`` per customer, the original system's style);
- ``tiers_seconds``: ``fit_segmentation`` + ``assign_tiers`` on that table (same code for all);
- ``seconds`` = features + tiers; ``ratio`` = seconds / polars seconds at the same n;
  ``features_ratio`` the same for the feature table alone; ``process_seconds`` is wall time of
  the whole subprocess, data generation and imports included.

A ``check`` case computes the table with pandas and polars in one process and asserts they agree.
The row-wise cases run last and are stopped after ``--naive-timeout`` seconds (default 300),
reported with ``"timed_out": true``, so the whole bench stays near ten minutes on a busy machine.
Output: one JSON line per measurement on stdout; ``load_avg_1m`` says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

SEED = 20240501
LINES_PER_CUSTOMER = 10
LINES_PER_TRANSACTION = 2.5
N_PRODUCTS = 5_000
NS_PER_DAY = 86_400 * 10**9
START = np.datetime64("2022-01-01T00:00:00", "ns").astype(np.int64)
SPAN_NS = 730 * NS_PER_DAY


def generate(n_lines: int) -> dict[str, np.ndarray]:
    """Synthetic purchase lines as integer codes + numbers (deterministic for a given n_lines)."""
    rng = np.random.default_rng(SEED + n_lines)
    n_customers = max(n_lines // LINES_PER_CUSTOMER, 1)
    n_tx = max(int(n_lines / LINES_PER_TRANSACTION), 1)
    weights = rng.lognormal(0.0, 1.2, n_customers)
    weights /= weights.sum()
    tx_customer = rng.choice(n_customers, size=n_tx, p=weights).astype(np.int32)
    tx_customer[rng.random(n_tx) < 0.05] = -1  # anonymous sales
    # every customer has at least one transaction (so customers ~ n_lines / LINES_PER_CUSTOMER)
    first = min(n_customers, n_tx)
    tx_customer[:first] = rng.permutation(n_customers)[:first]
    tx_customer = tx_customer[rng.permutation(n_tx)]
    tx_date = START + rng.integers(0, SPAN_NS // 60_000_000_000, n_tx) * 60_000_000_000  # minute grid
    sizes = 1 + rng.poisson(LINES_PER_TRANSACTION - 1, n_tx)
    # trim/extend to exactly n_lines lines
    cum = np.cumsum(sizes)
    last = int(np.searchsorted(cum, n_lines))
    sizes = sizes[: last + 1].copy()
    sizes[-1] -= int(cum[last] - n_lines) if last < len(cum) else 0
    if sizes.sum() < n_lines:  # rare: not enough transactions drawn
        sizes[-1] += n_lines - sizes.sum()
    tx = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    product = (rng.zipf(1.3, n_lines) % N_PRODUCTS).astype(np.int32)
    product_price = np.round(rng.lognormal(1.5, 0.8, N_PRODUCTS), 2)
    price = product_price[product]
    price[rng.random(n_lines) < 0.01] = 0.0
    qty = rng.integers(1, 13, n_lines).astype(np.float64)
    qty[rng.random(n_lines) < 0.03] *= -1
    return {
        "customer": tx_customer[tx],
        "transaction": tx,
        "product": product,
        "date_ns": tx_date[tx],
        "quantity": qty,
        "price": price,
        "n_customers": np.int64(n_customers),
        "n_transactions": np.int64(len(sizes)),
    }


def _labels(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(n)]


def pandas_lines(data: dict):
    """Canonical pandas lines; ids are categoricals built from codes (no 10M Python strings)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "customer_id": pd.Categorical.from_codes(
                data["customer"], categories=_labels("C", int(data["n_customers"]))
            ),
            "transaction_id": pd.Categorical.from_codes(
                data["transaction"], categories=_labels("T", int(data["n_transactions"]))
            ),
            "purchase_date": data["date_ns"].view("datetime64[ns]"),
            "product_id": pd.Categorical.from_codes(data["product"], categories=_labels("P", N_PRODUCTS)),
            "quantity": data["quantity"],
            "price_per_unit": data["price"],
            "total_amount": data["quantity"] * data["price"],
        }
    )


def polars_lines(data: dict):
    """The same lines as a polars frame with Categorical ids."""
    import polars as pl

    def cat(codes: np.ndarray, prefix: str, n: int) -> pl.Series:
        labels = pl.Series(_labels(prefix, n), dtype=pl.String)
        idx = pl.Series(codes, dtype=pl.Int64)
        gathered = labels.gather(idx.set(idx < 0, 0))  # placeholder for -1, nulled below
        gathered = pl.select(pl.when(idx >= 0).then(gathered).otherwise(None)).to_series()
        return gathered.cast(pl.Categorical)

    return pl.DataFrame(
        {
            "customer_id": cat(data["customer"], "C", int(data["n_customers"])),
            "transaction_id": cat(data["transaction"], "T", int(data["n_transactions"])),
            "purchase_date": pl.Series(data["date_ns"]).cast(pl.Datetime("ns")),
            "product_id": cat(data["product"], "P", N_PRODUCTS),
            "quantity": data["quantity"],
            "price_per_unit": data["price"],
            "total_amount": data["quantity"] * data["price"],
        }
    )


def polars_features(lines):
    """The feature table with polars, same definitions as preprocessing.features (returns pandas)."""
    import pandas as pd
    import polars as pl

    as_of = lines["purchase_date"].max()
    as_of_day = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
    day = pl.col("purchase_date").cast(pl.Int64) // NS_PER_DAY
    table = (
        lines.lazy()
        .filter(pl.col("customer_id").is_not_null() & (pl.col("purchase_date") <= as_of))
        .group_by("customer_id")
        .agg(
            monetary=pl.col("total_amount").sum(),
            frequency=pl.col("transaction_id").n_unique(),
            total_quantity=pl.col("quantity").sum(),
            num_unique_products=pl.col("product_id").n_unique(),
            avg_price_per_unit=pl.col("price_per_unit").filter(pl.col("quantity") > 0).mean(),
            store_visit_frequency=day.n_unique(),
            first_purchase=pl.col("purchase_date").min(),
            last_purchase=pl.col("purchase_date").max(),
        )
        .with_columns(
            first_day=pl.col("first_purchase").cast(pl.Int64) // NS_PER_DAY,
            last_day=pl.col("last_purchase").cast(pl.Int64) // NS_PER_DAY,
        )
        .with_columns(
            active_days=pl.lit(as_of_day).cast(pl.Datetime("ns")).cast(pl.Int64) // NS_PER_DAY - pl.col("first_day"),
            recency=pl.lit(as_of_day).cast(pl.Datetime("ns")).cast(pl.Int64) // NS_PER_DAY - pl.col("last_day"),
            avg_purchase_gap_days=pl.when(pl.col("store_visit_frequency") > 1)
            .then((pl.col("last_day") - pl.col("first_day")) / (pl.col("store_visit_frequency") - 1))
            .otherwise(0.0),
        )
        .collect()
    )
    from preprocessing.features import FEATURE_COLUMNS

    columns = {}
    for name in FEATURE_COLUMNS:
        series = table[name]
        if name.endswith("purchase"):
            columns[name] = series.cast(pl.Int64).to_numpy().view("datetime64[ns]")
        elif name in ("frequency", "num_unique_products", "store_visit_frequency"):
            columns[name] = series.cast(pl.Int64).to_numpy()
        else:
            columns[name] = series.to_numpy()
    index = pd.Index(table["customer_id"].cast(pl.String).to_list(), dtype="str", name="customer_id")
    return pd.DataFrame(columns, index=index)


def naive_features(lines):
    """The original system's style: one Python call per customer through groupby().apply."""
    import pandas as pd

    as_of = lines["purchase_date"].max()
    as_of_day = as_of.floor("D")
    known = lines[lines["customer_id"].notna()]

    def one(group: pd.DataFrame) -> pd.Series:
        bought = group[group["quantity"] > 0]
        days = group["purchase_date"].dt.floor("D")
        n_days = days.nunique()
        first, last = group["purchase_date"].min(), group["purchase_date"].max()
        span = (last.floor("D") - first.floor("D")).days
        return pd.Series(
            {
                "monetary": group["total_amount"].sum(),
                "frequency": group["transaction_id"].nunique(),
                "total_quantity": group["quantity"].sum(),
                "num_unique_products": group["product_id"].nunique(),
                "avg_price_per_unit": bought["price_per_unit"].mean(),
                "store_visit_frequency": n_days,
                "active_days": (as_of_day - first.floor("D")).days,
                "avg_purchase_gap_days": span / (n_days - 1) if n_days > 1 else 0.0,
                "recency": (as_of_day - last.floor("D")).days,
                "first_purchase": first,
                "last_purchase": last,
            }
        )

    return known.groupby("customer_id", observed=True).apply(one)


def tiers(features) -> None:
    """Fit the segmentation and score everyone, as `flask train segmentation` does."""
    from preprocessing.segmentation import assign_tiers, fit_segmentation

    result = fit_segmentation(features)
    assign_tiers(features, result.scaler, result.kmeans, result.cluster_tiers)


def run_case(engine: str, n: int) -> dict:
    """Body of one subprocess: generate, build the frame, time features + tiers."""
    t_process = time.perf_counter()
    data = generate(n)
    if engine == "polars":
        lines = polars_lines(data)
        compute = polars_features
    else:
        lines = pandas_lines(data)
        if engine == "pandas":
            from preprocessing.features import compute_features as compute
        else:
            compute = naive_features
    del data
    import preprocessing.segmentation  # noqa: F401  (import time is process overhead, not tiers)

    t0 = time.perf_counter()
    features = compute(lines)
    t1 = time.perf_counter()
    tiers(features)
    t2 = time.perf_counter()
    return {
        "name": f"features+tiers/{engine}",
        "n": n,
        "customers": len(features),
        "features_seconds": round(t1 - t0, 3),
        "tiers_seconds": round(t2 - t1, 3),
        "seconds": round(t2 - t0, 3),
        "process_seconds_in": round(t2 - t_process, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),  # other work on the machine skews seconds
    }


def run_check(n: int) -> dict:
    """pandas and polars tables must agree (same customers, every column)."""

    from preprocessing.features import FEATURE_COLUMNS, compute_features

    data = generate(n)
    ours = compute_features(pandas_lines(data)).sort_index()
    anchor = polars_features(polars_lines(data)).sort_index()
    assert ours.index.equals(anchor.index), "customer sets differ"
    for column in FEATURE_COLUMNS:
        a, b = ours[column], anchor[column]
        if column.endswith("purchase"):
            assert (a.to_numpy() == b.to_numpy()).all(), column
        else:
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-9, atol=1e-6, err_msg=column)
    return {"name": "check/pandas_equals_polars", "n": n, "customers": len(ours), "agree": True}


def spawn(args: list[str], timeout: float | None = None) -> dict:
    """Run one case in a fresh interpreter; return its JSON plus whole-process wall time.

    A case still running after ``timeout`` seconds is stopped and reported with ``timed_out``.
    """
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.features", *args], stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {
            "name": f"features+tiers/{args[1]}",
            "n": int(args[3]),
            "timed_out": True,
            "seconds": None,
            "process_seconds": round(time.perf_counter() - started, 3),
        }
    if proc.returncode != 0:
        raise SystemExit(f"case {args} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M lines only")
    parser.add_argument(
        "--naive-timeout",
        type=float,
        default=300.0,
        help="seconds before a row-wise case is stopped (reported as timed_out)",
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.case:
        result = run_check(args.n) if args.case == "check" else run_case(args.case, args.n)
        print(json.dumps(result), flush=True)
        return

    sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    naive_sizes = [100_000] if args.quick else [100_000, 1_000_000]
    anchors: dict[int, dict] = {}

    def report(result: dict) -> None:
        anchor = anchors.get(result["n"])
        if anchor and result.get("seconds") is not None:
            result["ratio"] = round(result["seconds"] / anchor["seconds"], 2)
            result["features_ratio"] = round(result["features_seconds"] / anchor["features_seconds"], 2)
        print(json.dumps(result), flush=True)

    for n in sorted(set(sizes) | set(naive_sizes)):
        anchors[n] = spawn(["--case", "polars", "--n", str(n)])
        report(anchors[n])
        report(spawn(["--case", "pandas", "--n", str(n)]))
        if n in sizes:
            print(json.dumps(spawn(["--case", "check", "--n", str(n)])), flush=True)
    # The row-wise runs last: they are the slow ones, and are cut off after --naive-timeout.
    for n in naive_sizes:
        report(spawn(["--case", "naive", "--n", str(n)], timeout=args.naive_timeout))


if __name__ == "__main__":
    main()
