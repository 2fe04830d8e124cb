"""Run every benchmark: ``python -m bench [--quick] [--only a,b] [--list] [--with-load] [--with-heavy]``.

Each module runs as its own subprocess (``python -m bench.<name> [--quick]``) from the repository
root, so one that crashes or runs out of memory cannot take the others down. Its JSON lines are
copied to stdout unchanged as they arrive; its stderr (progress) goes to stderr. Around them this
runner prints, also as JSON lines:

* first, ``{"name": "machine", ...}``: date, CPU count, load average and Python version, because
  every figure below depends on how busy the (shared) machine was;
* after each module, ``{"name": "bench.<module>", "status": "ok" | "failed", "exit_code", "seconds"}``
  with its wall time;
* last, ``{"name": "summary", ...}``: how many passed and which failed.

A failing module does not stop the run; the exit status is 1 when any failed. ``bench.load`` and
``bench.heavy`` take an hour or more at full size (gunicorn + locust, 10M lines in PostgreSQL), so
they run only with ``--with-load`` / ``--with-heavy`` or when named in ``--only``.
``bench.scale_demo`` is not a benchmark (it builds the database ``bench.load`` uses) and never runs here.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# Every module listed here accepts --quick (checked against each module's argparse).
DEFAULT_MODULES = (
    "features",
    "churn",
    "clv",
    "bundles",
    "sms",
    "import",
    "lists",
    "coherence",
    "flows",
    "api",
    "pages",
    "webhooks",
)
OPT_IN_MODULES = {"load": "--with-load", "heavy": "--with-heavy"}
QUICK_FLAG = "--quick"


def emit(record: dict) -> None:
    """Print one JSON line and flush, so a reader sees it while the next module runs."""
    print(json.dumps(record), flush=True)


def summary_line(name: str) -> str:
    """First docstring paragraph of ``bench/<name>.py``, read without importing it (imports are heavy)."""
    tree = ast.parse((BENCH_DIR / f"{name}.py").read_text(encoding="utf-8"))
    first_paragraph = (ast.get_docstring(tree) or "").strip().split("\n\n")[0]
    return " ".join(first_paragraph.split())


def machine_facts(quick: bool, modules: list[str]) -> dict:
    """What the numbers depend on: when, how many cores, how busy, which Python."""
    load_1m, load_5m, load_15m = os.getloadavg()
    return {
        "name": "machine",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(load_1m, 2),
        "load_avg_5m": round(load_5m, 2),
        "load_avg_15m": round(load_15m, 2),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "quick": quick,
        "modules": modules,
    }


def choose_modules(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The modules to run, in the default order; ``--only`` may name the opt-in ones directly."""
    known = list(DEFAULT_MODULES) + list(OPT_IN_MODULES)
    if args.only:
        wanted = [name.strip().removeprefix("bench.") for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in known]
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(known)}")
        return [name for name in known if name in wanted]
    chosen = list(DEFAULT_MODULES)
    if args.with_load:
        chosen.append("load")
    if args.with_heavy:
        chosen.append("heavy")
    return chosen


def run_module(name: str, quick: bool) -> dict:
    """Run ``bench.<name>`` in a subprocess, copying its stdout lines as they come; return its status line."""
    command = [sys.executable, "-m", f"bench.{name}"] + ([QUICK_FLAG] if quick else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines arrive as measured, not at exit
    start = time.perf_counter()
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
        except KeyboardInterrupt:
            proc.terminate()
            raise
        exit_code = proc.wait()
    return {
        "name": f"bench.{name}",
        "status": "ok" if exit_code == 0 else "failed",
        "exit_code": exit_code,
        "seconds": round(time.perf_counter() - start, 1),
        "quick": quick,
        "command": " ".join(command[1:]),
    }


def list_modules() -> None:
    """One JSON line per benchmark: whether it runs by default and, if not, the flag that adds it."""
    for name in DEFAULT_MODULES:
        emit({"name": f"bench.{name}", "default": True, "summary": summary_line(name)})
    for name, flag in OPT_IN_MODULES.items():
        emit({"name": f"bench.{name}", "default": False, "flag": flag, "summary": summary_line(name)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every module (small sizes)")
    parser.add_argument("--only", help="comma-separated modules to run, e.g. clv,bundles")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--with-load", action="store_true", help="also run bench.load (gunicorn + locust)")
    parser.add_argument("--with-heavy", action="store_true", help="also run bench.heavy (PostgreSQL, 10M lines)")
    args = parser.parse_args(argv)
    if args.list:
        list_modules()
        return 0
    modules = choose_modules(args, parser)
    emit(machine_facts(args.quick, modules))
    start = time.perf_counter()
    failed = []
    for name in modules:
        status = run_module(name, args.quick)
        emit(status)
        if status["status"] != "ok":
            failed.append(name)
    emit(
        {
            "name": "summary",
            "status": "failed" if failed else "ok",
            "ok": len(modules) - len(failed),
            "failed": failed,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
