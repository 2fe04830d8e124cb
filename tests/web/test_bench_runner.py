"""``python -m bench``: lists the benchmarks, streams their JSON lines, reports each module's status."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FASTEST = "clv"  # the quickest module in --quick mode (about half a minute on the 2-core machine)


def run_bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def json_lines(stdout: str) -> list[dict]:
    """Every stdout line, parsed: a line that is not JSON fails the test here."""
    return [json.loads(line) for line in stdout.splitlines()]


def test_list_names_every_benchmark_and_which_need_a_flag():
    result = run_bench("--list")
    assert result.returncode == 0, result.stderr
    listed = {line["name"]: line for line in json_lines(result.stdout)}
    assert [name for name, line in listed.items() if line["default"]] == [
        "bench.features",
        "bench.churn",
        "bench.clv",
        "bench.bundles",
        "bench.sms",
        "bench.import",
        "bench.lists",
        "bench.coherence",
        "bench.flows",
        "bench.api",
        "bench.pages",
        "bench.webhooks",
    ]
    assert listed["bench.load"]["flag"] == "--with-load" and listed["bench.heavy"]["flag"] == "--with-heavy"
    assert "bench.scale_demo" not in listed
    assert all(line["summary"] for line in listed.values())


@pytest.mark.slow
def test_only_one_module_quick_streams_json_and_reports_ok():
    result = run_bench("--only", FASTEST, "--quick")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = json_lines(result.stdout)
    machine, *measurements, status, summary = lines
    assert machine["name"] == "machine" and machine["cpu_count"] >= 1 and machine["python"]
    assert machine["modules"] == [FASTEST] and machine["quick"] is True
    assert measurements and all(line["name"].startswith(f"{FASTEST}.") for line in measurements)
    assert status["name"] == f"bench.{FASTEST}" and status["status"] == "ok" and status["exit_code"] == 0
    assert status["seconds"] > 0
    assert summary["name"] == "summary" and summary["status"] == "ok" and summary["failed"] == []


def test_a_failing_module_is_reported_and_the_run_continues(monkeypatch, capsys):
    runner = importlib.import_module("bench.__main__")
    monkeypatch.setattr(runner, "DEFAULT_MODULES", ("no_such_bench_a", "no_such_bench_b"))
    assert runner.main(["--quick"]) == 1
    lines = json_lines(capsys.readouterr().out)
    statuses = [line for line in lines if line["name"].startswith("bench.")]
    assert [(s["name"], s["status"]) for s in statuses] == [
        ("bench.no_such_bench_a", "failed"),
        ("bench.no_such_bench_b", "failed"),
    ]
    assert all(s["exit_code"] != 0 for s in statuses)
    assert lines[-1]["failed"] == ["no_such_bench_a", "no_such_bench_b"] and lines[-1]["status"] == "failed"


def test_unknown_module_in_only_is_refused_with_the_choices():
    result = run_bench("--only", "clv,nope")
    assert result.returncode == 2
    assert "unknown benchmark(s): nope" in result.stderr and "features" in result.stderr
    assert result.stdout == ""
