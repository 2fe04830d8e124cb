"""Frequent itemsets for bundles: our sparse counting vs the original's path vs PyFIM.

Run from the repo root:  python -m bench.bundles [--quick] [--cap 120] [--mem-cap-gb 6]

Each case runs in its own subprocess on the same synthetic baskets (seeded, generated inside the
child so nothing is shared). Memory: the child forgets the peak of *building* the synthetic data
(Linux clear_refs), so `peak_rss_mb` (os.wait4 ru_maxrss of the child) is the whole-process peak
while the method runs with the purchase lines resident (`data_rss_mb`); `work_extra_mb` is that
peak minus the resident data, i.e. what the method itself needs.

* ``ours``     preprocessing.bundling.basket_matrix + frequent_itemsets (max_len 3)
* ``original`` mlxtend TransactionEncoder -> dense one-hot DataFrame -> mlxtend apriori (max_len 3)
* ``pyfim``    PyFIM fim.fpgrowth (C, zmax 3) on transaction lists: the speed anchor
* ``data``     only builds the purchase lines: the floor every case pays

`seconds` is the work from the purchase-lines DataFrame to itemsets (encoding included);
`mine_seconds` the mining alone (after encoding / building PyFIM's transaction lists). One JSON
line per measurement, with ratios to PyFIM and to the
original's path measured in the same run, and whether the itemsets (and counts) are identical.
A case that exceeds --cap seconds is killed and reported as a timeout; one that exceeds
--mem-cap-gb of address space reports MemoryError. The original's path is skipped at sizes above
one where it already failed at that support.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_PRODUCTS = 2000
N_THEMES = 40
THEME_SIZE = 6
THEME_SHARE = 0.6


def synthetic_lines(n_baskets: int, seed: int = 7) -> pd.DataFrame:
    """Purchase lines for n_baskets transactions: Zipf-like product popularity plus themed co-purchases.

    Every basket has a theme (themes themselves skewed); about 60 % of its lines come from the
    theme's 6 products, the rest from global popularity over 2,000 products. Mean basket ~4.5 lines.
    """
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(N_PRODUCTS) + 5.0) ** 1.05
    cum_pop = np.cumsum(popularity / popularity.sum())
    themes = rng.choice(N_PRODUCTS, size=(N_THEMES, THEME_SIZE), replace=True, p=popularity / popularity.sum())
    theme_pop = 1.0 / (np.arange(N_THEMES) + 3.0)
    basket_theme = np.searchsorted(np.cumsum(theme_pop / theme_pop.sum()), rng.random(n_baskets))
    basket_theme = np.minimum(basket_theme, N_THEMES - 1)
    sizes = 1 + rng.poisson(3.5, n_baskets)
    tx = np.repeat(np.arange(n_baskets), sizes)
    from_theme = rng.random(len(tx)) < THEME_SHARE
    slot = rng.integers(0, THEME_SIZE, len(tx))
    glob = np.minimum(np.searchsorted(cum_pop, rng.random(len(tx))), N_PRODUCTS - 1)
    product = np.where(from_theme, themes[basket_theme[tx], slot], glob)
    ids = np.char.add("P", np.arange(N_PRODUCTS).astype(str)).astype(object)
    return pd.DataFrame(
        {
            "transaction_id": pd.Series(np.char.add("T", tx.astype(str)), dtype="str"),
            "product_id": pd.Series(ids[product], dtype="str"),
            "quantity": rng.integers(1, 4, len(tx)).astype(float),
        }
    )


def _transactions(lines: pd.DataFrame) -> list[list[str]]:
    """Transaction lists of product ids (what TransactionEncoder and PyFIM take)."""
    tx_codes, _ = pd.factorize(lines["transaction_id"])
    order = np.argsort(tx_codes, kind="stable")
    products = lines["product_id"].to_numpy(dtype=object)[order].tolist()
    bounds = np.flatnonzero(np.diff(tx_codes[order])) + 1
    starts = [0, *bounds.tolist()]
    stops = [*bounds.tolist(), len(products)]
    return [products[a:b] for a, b in zip(starts, stops)]


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise KeyError(field)


def _reset_peak_rss() -> float:
    """Forget the peak RSS of building the synthetic data (Linux clear_refs 5); return the RSS now.

    From here on the process peak (VmHWM, and ru_maxrss at exit) is the peak while the method
    runs with the purchase lines resident, which is what a caller holding the lines pays.
    """
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def _run_case(case: str, n: int, support: float, out: str) -> None:
    """Child process: build the data, time one method, dump itemsets as {sorted ids: count}."""
    from preprocessing.bundling import basket_matrix, frequent_itemsets, min_count

    lines = synthetic_lines(n)
    n_baskets = lines["transaction_id"].nunique()
    need = min_count(support, n_baskets)
    itemsets: dict[str, int] = {}
    data_rss_mb = _reset_peak_rss()
    t0 = time.perf_counter()
    mine_start = t0
    if case == "ours":
        X, items = basket_matrix(lines)
        mine_start = time.perf_counter()
        found = frequent_itemsets(X, items, support, max_len=3)
        counts = np.rint(found["support"].to_numpy() * n_baskets).astype(int)
        itemsets = {" ".join(sorted(s)): int(c) for s, c in zip(found["itemsets"], counts)}
    elif case == "original":
        from mlxtend.frequent_patterns import apriori
        from mlxtend.preprocessing import TransactionEncoder

        encoder = TransactionEncoder()
        transactions = _transactions(lines)
        onehot = encoder.fit(transactions).transform(transactions)
        frame = pd.DataFrame(onehot, columns=encoder.columns_)
        mine_start = time.perf_counter()
        found = apriori(frame, min_support=support, use_colnames=True, max_len=3)
        counts = np.rint(found["support"].to_numpy() * n_baskets).astype(int)
        itemsets = {" ".join(sorted(s)): int(c) for s, c in zip(found["itemsets"], counts)}
    elif case == "pyfim":
        import fim

        codes, labels = pd.factorize(lines["product_id"])
        tx_codes, _ = pd.factorize(lines["transaction_id"])
        order = np.argsort(tx_codes, kind="stable")
        flat = codes[order].tolist()
        bounds = np.flatnonzero(np.diff(tx_codes[order])) + 1
        starts, stops = [0, *bounds.tolist()], [*bounds.tolist(), len(flat)]
        tracts = [flat[a:b] for a, b in zip(starts, stops)]
        mine_start = time.perf_counter()
        found = fim.fpgrowth(tracts, target="s", supp=-need, zmax=3, report="a")
        labels = np.asarray(labels, dtype=object)
        itemsets = {" ".join(sorted(labels[list(s)])): int(c) for s, c in found}
    elif case != "data":
        raise ValueError(case)
    t1 = time.perf_counter()
    peak = _status_mb("VmHWM")
    Path(out).write_text(
        json.dumps(
            {
                "seconds": t1 - t0,
                "mine_seconds": t1 - mine_start,
                "data_rss_mb": data_rss_mb,
                "work_extra_mb": round(peak - data_rss_mb, 1),
                "n_baskets": int(n_baskets),
                "n_lines": len(lines),
                "itemsets": itemsets,
            }
        )
    )


def _measure(case: str, n: int, support: float, cap: float, mem_cap_gb: float) -> dict:
    """Run one case in a fresh interpreter; return its numbers, peak RSS and any failure."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    limit = int(mem_cap_gb * 2**30)

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, "-m", "bench.bundles", "--child", case, str(n), repr(support), out]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, preexec_fn=cap_memory, env=env, text=True
    )
    started = time.monotonic()
    status, usage, timed_out = None, None, False
    while status is None:
        pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = st, ru
        elif time.monotonic() - started > cap:
            proc.send_signal(signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            timed_out = True
        else:
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read() if proc.stderr else ""
    row = {
        "name": case,
        "n": n,
        "support": support,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "wall_seconds": round(time.monotonic() - started, 2),
    }
    if timed_out:
        row["error"] = f"timeout: killed after {cap:g} s"
    elif proc.returncode != 0:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"
        row["error"] = "MemoryError" if "MemoryError" in stderr else last[:200]
    else:
        row.update(json.loads(Path(out).read_text()))
    Path(out).unlink(missing_ok=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k baskets only")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--supports", type=float, nargs="*", default=[0.01, 0.005])
    parser.add_argument("--cap", type=float, default=120.0, help="seconds before a case is killed")
    parser.add_argument("--mem-cap-gb", type=float, default=6.0, help="address-space cap per case")
    parser.add_argument("--child", nargs=4, metavar=("CASE", "N", "SUPPORT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        case, n, support, out = args.child
        _run_case(case, int(n), float(support), out)
        return

    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000, 500_000])
    original_failed: dict[float, int] = {}
    for n in sizes:
        floor = _measure("data", n, 0.01, args.cap, args.mem_cap_gb)
        print(
            json.dumps(
                {
                    "name": "data",
                    "n": n,
                    "peak_rss_mb": floor["peak_rss_mb"],
                    "n_baskets": floor.get("n_baskets"),
                    "n_lines": floor.get("n_lines"),
                }
            ),
            flush=True,
        )
        for support in args.supports:
            rows = {}
            for case in ("pyfim", "ours", "original"):
                if case == "original" and support in original_failed and n > original_failed[support]:
                    rows[case] = {
                        "name": case,
                        "n": n,
                        "support": support,
                        "error": f"skipped: failed already at n={original_failed[support]}",
                    }
                    continue
                rows[case] = _measure(case, n, support, args.cap, args.mem_cap_gb)
                if case == "original" and "error" in rows[case]:
                    original_failed.setdefault(support, n)
            anchor, original = rows["pyfim"], rows["original"]
            sets = {case: row.pop("itemsets", None) for case, row in rows.items()}
            for case, row in rows.items():
                if sets[case] is not None:
                    row["n_itemsets"] = len(sets[case])
                    if case != "pyfim" and sets["pyfim"] is not None:
                        row["identical_to_pyfim"] = sets[case] == sets["pyfim"]
                for ref_name, ref in (("pyfim", anchor), ("original", original)):
                    if case == ref_name or "seconds" not in row:
                        continue
                    if "seconds" in ref:
                        row[f"time_ratio_vs_{ref_name}"] = round(row["seconds"] / ref["seconds"], 3)
                        row[f"rss_ratio_vs_{ref_name}"] = round(row["peak_rss_mb"] / ref["peak_rss_mb"], 3)
                        row[f"extra_mem_ratio_vs_{ref_name}"] = round(
                            max(row["work_extra_mb"], 1.0) / max(ref["work_extra_mb"], 1.0), 3
                        )
                    if ref_name == "pyfim" and "mine_seconds" in ref:
                        row["mine_time_ratio_vs_pyfim"] = round(row["mine_seconds"] / ref["mine_seconds"], 3)
                    elif "peak_rss_mb" in ref:  # the reference failed: at least compare memory
                        row[f"rss_ratio_vs_{ref_name}"] = round(row["peak_rss_mb"] / ref["peak_rss_mb"], 3)
            for row in rows.values():
                for key in ("seconds", "mine_seconds"):
                    if key in row:
                        row[key] = round(row[key], 3)
            for row in rows.values():
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
