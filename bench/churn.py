"""Churn model: train, score and explain time and peak memory on synthetic customers' features.

Run from the repository root: ``python -m bench.churn [--quick] [--sizes 100000,1000000] [--threads 1]``.
Prints one JSON line per measurement: name, n (customers), seconds, peak_rss_mb (whole process,
each case in its own subprocess) and ratio to the reference measured in the same run — the
original rule computed on the same features (``rule_label``).

Cases per size: ``rule`` (reference), ``fit_logistic`` / ``fit_gradient_boosting`` (one plain fit
each), ``train`` (``train_churn_frames``: both candidates on the train window, holdout metrics,
calibrated refit on the latest window; the calibration check is skipped above 200k customers to keep
the run short), ``score`` (``score_churn`` with the trained model) and ``explain`` (top-3 reasons).
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from preprocessing.churn import (
    FEATURES,
    _candidate,
    _wrap,
    explain,
    rule_label,
    score_churn,
    train_churn_frames,
)

FULL_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (10_000, 50_000)
CHECK_CALIBRATION_UP_TO = 200_000


def synthetic_features(n: int, seed: int) -> pd.DataFrame:
    """A labelled window of ``n`` customers with ``FEATURES`` + ``churned`` and a learnable signal.

    Customers buy at their own rate for a random tenure; the chance that they do not come back
    grows with how overdue they are and falls with how often they bought, plus noise.
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1 / 40, n)  # purchases per day
    active = rng.integers(1, 700, n)
    visits = np.minimum(rng.poisson(rate * active) + 1, active)
    frequency = visits + rng.poisson(0.3, n)
    gap = np.where(visits > 1, (active - 1) / np.maximum(visits - 1, 1), 0.0)
    recency = np.minimum(np.round(rng.exponential(np.maximum(gap, 20) * rng.uniform(0.3, 3, n))), active).astype(int)
    basket = rng.lognormal(3, 0.7, n)
    monetary = frequency * basket
    last90 = rng.poisson(rate * np.clip(90 - recency, 0, 90))
    prev90 = rng.poisson(rate * 90 * (active > 90))
    spend_last, spend_prev = last90 * basket, prev90 * basket
    denom = spend_last + spend_prev
    single = (visits <= 1).astype(int)
    ratio = np.divide(recency, gap, out=np.zeros(n), where=single == 0)
    logit = 1.2 * np.log1p(ratio) - 0.6 * np.log1p(frequency) - 0.5 * np.log1p(last90) + 0.8 * single
    churned = (rng.uniform(size=n) < 1 / (1 + np.exp(-(logit + rng.normal(0, 1, n))))).astype(int)
    frame = pd.DataFrame(
        {
            "recency": recency,
            "frequency": frequency,
            "monetary": monetary,
            "total_quantity": frequency * rng.integers(1, 6, n),
            "num_unique_products": np.maximum(1, np.round(frequency * rng.uniform(0.5, 3, n))).astype(int),
            "avg_price_per_unit": rng.lognormal(1.5, 0.5, n),
            "store_visit_frequency": visits,
            "active_days": active,
            "avg_purchase_gap_days": gap,
            "purchases_last_90d": last90,
            "purchases_prev_90d": prev90,
            "spend_last_90d": spend_last,
            "spend_prev_90d": spend_prev,
            "spend_trend": np.divide(spend_last - spend_prev, denom, out=np.zeros(n), where=denom > 0),
            "recency_gap_ratio": ratio,
            "single_visit": single,
            "churned": churned,
        },
        index=pd.Index(np.char.mod("C%07d", np.arange(n)).astype(object), dtype="str", name="customer_id"),
    )
    return frame[[*FEATURES, "churned"]]


def run_case(case: str, n: int, model_path: Path) -> dict:
    """Time one case in this process; the caller runs it in a fresh subprocess."""
    frame = synthetic_features(n, seed=1)
    result: dict = {}
    start = time.perf_counter()
    if case == "rule":
        rule_label(frame)
    elif case.startswith("fit_"):
        _wrap(_candidate(case.removeprefix("fit_"), 0)).fit(frame, frame["churned"])
    elif case == "train":
        train = synthetic_features(n, seed=0)
        start = time.perf_counter()
        trained = train_churn_frames(train, frame, frame, check_calibration=n <= CHECK_CALIBRATION_UP_TO)
        result = {
            "chosen": trained.chosen,
            **{f"roc_auc_{k}": round(v["roc_auc"], 3) for k, v in trained.metrics.items()},
        }
        seconds = time.perf_counter() - start
        model_path.write_bytes(pickle.dumps(trained.model))
        return {"seconds": seconds, **result}
    else:
        model = pickle.loads(model_path.read_bytes())
        start = time.perf_counter()
        if case == "score":
            score_churn(model, frame)
        elif case == "explain":
            explain(model, frame, top=3)
        else:
            raise ValueError(case)
    return {"seconds": time.perf_counter() - start, **result}


def main(argv: list[str] | None = None) -> None:
    """Run every case for every size, each in a subprocess, and print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (10k, 50k customers)")
    parser.add_argument("--sizes", help="comma-separated customer counts (overrides --quick)")
    parser.add_argument(
        "--threads", type=int, help="cap OpenMP/BLAS threads (default: the libraries' own; 1 on a busy machine)"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.case:  # child: one measurement, whole-process peak memory of this process
        with threadpool_limits(limits=args.threads):
            out = run_case(args.case, args.n, Path(args.model))
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(out))
        return

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    cases = ("rule", "fit_logistic", "fit_gradient_boosting", "train", "score", "explain")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            model_path = Path(tmp) / f"churn_{n}.pkl"
            reference = None
            for case in cases:
                cmd = [sys.executable, "-m", "bench.churn", "--case", case, "--n", str(n), "--model", str(model_path)]
                cmd += ["--threads", str(args.threads)] if args.threads else []
                child = subprocess.run(cmd, capture_output=True, text=True, check=True)
                out = json.loads(child.stdout.strip().splitlines()[-1])
                reference = out["seconds"] if case == "rule" else reference
                seconds = out.pop("seconds")
                line = {
                    "name": f"churn_{case}",
                    "n": n,
                    "seconds": round(seconds, 3),
                    "peak_rss_mb": out.pop("peak_rss_mb"),
                    "reference": "churn_rule",
                    "ratio": round(seconds / reference, 1) if reference else None,
                    "threads": args.threads,
                }
                print(json.dumps({**line, **out}), flush=True)


if __name__ == "__main__":
    main()
