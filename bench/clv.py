"""CLV model cost: BG/NBD and Gamma-Gamma fits, per-customer scoring and the monthly outlook.

Run from the repo root:  python -m bench.clv [--quick]

Summaries are simulated from the models themselves (CDNOW parameters in days: r 0.243, alpha 30.9,
a 0.793, b 2.426; Gamma-Gamma p 6.25, q 3.74, v 15.44) for customers first seen 6-18 months ago, with
recency and T floored to whole days as a real ``rfm_summary`` gives them. Each (step, n) runs in its
own subprocess, which simulates its data, then times one step:

* ``fit_bgnbd``       maximum-likelihood fit incl. the Hessian for standard errors
* ``fit_gamma_gamma`` the same for spend
* ``score``           ``score_customers`` (p_alive, expected purchases 30/90/365 d, spend, 12-month CLV)
* ``forecast``        ``forecast_monthly`` 12 months, 200 parameter draws
* ``data``            only simulates (seconds = simulation time): the memory floor every case pays

One JSON line per measurement: name, n, seconds, peak_rss_mb (whole child process, from
``os.wait4``), and ``ratio``: seconds over the same step at the smallest size in this run
(the reference), so linear scaling shows as ratio ~ n / n_ref. Fitted parameters are printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BG = (0.243, 4.414 * 7, 0.793, 2.426)
GG = (6.25, 3.74, 15.44)
STEPS = ("data", "fit_bgnbd", "fit_gamma_gamma", "score", "forecast")


def _summary(n: int):
    from preprocessing import clv

    T = np.floor(np.random.default_rng(1).uniform(180, 540, n))
    summary = clv.simulate_summary(BG, T, GG, seed=2)
    summary["recency"] = np.floor(summary["recency"])
    summary.attrs = {"time_unit": "D", "as_of": np.datetime64("2024-12-31")}
    return summary


def _child(step: str, n: int) -> dict:
    from preprocessing import clv

    start = time.perf_counter()
    summary = _summary(n)
    simulate_seconds = time.perf_counter() - start
    bg = clv.BGNBDParams(*BG, log_likelihood=0.0, n=n, cov_log=tuple(map(tuple, np.eye(4) * 1e-3)))
    gg = clv.GammaGammaParams(*GG, log_likelihood=0.0, n=n, cov_log=tuple(map(tuple, np.eye(3) * 1e-3)))
    result: dict = {}
    start = time.perf_counter()
    if step == "fit_bgnbd":
        fit = clv.fit_bgnbd(summary)
        result["params"] = {
            "r": fit.r,
            "alpha": fit.alpha,
            "a": fit.a,
            "b": fit.b,
            "log_likelihood": fit.log_likelihood,
            "se": fit.std_errors(),
        }
    elif step == "fit_gamma_gamma":
        fit = clv.fit_gamma_gamma(summary)
        result["params"] = {
            "p": fit.p,
            "q": fit.q,
            "v": fit.v,
            "log_likelihood": fit.log_likelihood,
            "se": fit.std_errors(),
        }
    elif step == "score":
        clv.score_customers(bg, gg, summary)
    elif step == "forecast":
        clv.forecast_monthly(bg, gg, summary, as_of="2024-12-31", months=12, n_sims=200)
    result["seconds"] = simulate_seconds if step == "data" else time.perf_counter() - start
    return result


def _run(step: str, n: int) -> dict:
    """One child process; its own peak RSS from os.wait4 (output via a temp file, so no pipe deadlock)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.clv", "--child", step, str(n)], stdout=out, stderr=err, text=True
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {proc.returncode}"}
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k customers only")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return
    sizes = (10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000)
    reference: dict[str, float] = {}
    for n in sizes:
        for step in STEPS:
            result = _run(step, n)
            line = {"name": f"clv.{step}", "n": n, **result}
            if "seconds" in result:
                line["seconds"] = round(result["seconds"], 3)
                reference.setdefault(step, result["seconds"])
                line["ratio"] = round(result["seconds"] / reference[step], 2) if reference[step] else None
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
