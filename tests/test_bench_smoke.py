"""The benchmark harness (bench/) runs end to end at tiny sizes and reports every figure.

These tests prove the harness works, not that quaero meets the targets: each runs
`python -m bench.run --smoke` on some benchmarks and checks the JSON file it writes.
Benchmarks that need something beyond `make test`'s install are skipped with the reason
when it is missing, except under CI=true, where a missing service or program fails the
test. P7 (RQ) is not here: rq is installed only for the benchmark (requirements-bench.txt),
so `make bench-smoke` and `make bench` exercise it; P11's smoke test needs Scrapy (also
from requirements-bench.txt, which `make test-long` installs): without it, it skips, and
fails under CI=true.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.long]

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

FIGURES = {
    "P1": ["P1.quaero_rate", "P1.huey_rate", "P1.ratio"],
    "P2": ["P2.p50_ms", "P2.p95_ms", "P2.idle_cpu_pct"],
    "P3": [
        "P3.roots_p50_ms",
        "P3.roots_p95_ms",
        "P3.children_p50_ms",
        "P3.children_p95_ms",
        "P3.logs_p50_ms",
        "P3.logs_p95_ms",
    ],
    "P4": ["P4.quaero_rate", "P4.wget_rate", "P4.ratio", "P4.same_pages"],
    "P5": ["P5.peak_rss_mb"],
    "P6": ["P6.rate_1", "P6.rate_4", "P6.speedup"],
    "P7": ["P7.rq_rate", "P7.ratio"],
    "P8": ["P8.recovery_s"],
    "P9": ["P9.rate_1", "P9.rate_4", "P9.speedup"],
    "P10": [
        f"P10.{name}"
        for name in (
            "stats_p50_ms",
            "stats_p95_ms",
            "page_p50_ms",
            "page_p95_ms",
            "metrics_p50_ms",
            "metrics_p95_ms",
            "sweep_ms",
            "sweep_ratio",
            "reaper_ms",
            "reaper_ratio",
        )
    ],
    "P11": [
        "P11.quaero_rate",
        "P11.scrapy_rate",
        "P11.scrapy_ratio",
        "P11.quaero_delay_rate",
        "P11.wget_delay_rate",
        "P11.wget_ratio",
        "P11.same_pages",
    ],
    "P12": [
        f"P12.{store}_{name}"
        for store in ("sqlite", "postgresql")
        for name in (
            "descendants_p95_ms",
            "failures_p95_ms",
            "logs_p95_ms",
            "export_rate",
            "export_rss_mb",
            "dialog_ms",
        )
    ],
}


def require(available: bool, what: str) -> None:
    """Skip when `what` is missing; under CI=true, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing on CI, where the benchmark smoke test must run")
    pytest.skip(f"{what} is missing")


def listening(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def run_smoke(tmp_path: Path, benchmarks: list[str]) -> dict:
    """Run the harness at smoke sizes; return the JSON it wrote."""
    results_dir = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--only",
            ",".join(benchmarks),
            "--results-dir",
            str(results_dir),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    latest = results_dir / "smoke-latest.json"
    assert latest.exists(), proc.stdout[-3000:]
    assert len(list(results_dir.glob("smoke-run-*.json"))) == 1  # the timestamped copy
    results = json.loads(latest.read_text())
    assert results["mode"] == "smoke"
    for figure_id, figure in results["figures"].items():
        assert figure["name"] in proc.stdout, f"{figure_id} not in the printed table"
    return results


def assert_measured(results: dict, benchmarks: list[str]) -> None:
    """Every figure of `benchmarks` has a value, and each target a PASS/FAIL verdict."""
    figures = results["figures"]
    for figure_id in (f for b in benchmarks for f in FIGURES[b]):
        assert figure_id in figures, f"{figure_id} missing from the JSON"
        figure = figures[figure_id]
        assert figure["error"] is None, f"{figure_id}: {figure['error']}"
        assert figure["value"] is not None, f"{figure_id} has no value"
        if figure["op"] is not None:
            assert figure["passed"] in (True, False), f"{figure_id} has no verdict"


def test_smoke_of_benchmarks_needing_nothing_extra_reports_every_figure(tmp_path: Path) -> None:
    results = run_smoke(tmp_path, ["P1", "P2", "P3", "P5", "P8", "P10"])
    assert_measured(results, ["P1", "P2", "P3", "P5", "P8", "P10"])
    assert results["details"]["P1"]["quaero_runs"][0]["children"] == 300
    assert results["details"]["P8"]["lease_seconds"] == 30
    assert len(results["details"]["P8"]["reps"]) == 1
    assert results["details"]["P10"]["upkeep"]["20000"]["queued"] >= 20_000


def test_smoke_of_crawl_against_wget_reports_every_figure(tmp_path: Path) -> None:
    require(shutil.which("wget") is not None, "wget (Debian's; `make bench` installs it)")
    results = run_smoke(tmp_path, ["P4"])
    assert_measured(results, ["P4"])
    assert results["details"]["P4"]["quaero_matches_graph"]


def test_smoke_of_link_heavy_crawl_against_scrapy_and_wget_reports_every_figure(
    tmp_path: Path,
) -> None:
    require(
        importlib.util.find_spec("scrapy") is not None,
        "Scrapy (requirements-bench.txt; `make test-long` and `make bench` install it)",
    )
    require(shutil.which("wget") is not None, "wget (Debian's; `make bench` installs it)")
    results = run_smoke(tmp_path, ["P11"])
    assert_measured(results, ["P11"])
    details = results["details"]["P11"]
    assert details["page_sets_equal"] and all(details["matches_graph"].values())


def test_smoke_of_scale_out_on_redis_and_postgresql_reports_every_figure(tmp_path: Path) -> None:
    require(listening(6379), "Redis on 127.0.0.1:6379")
    require(listening(5432), "PostgreSQL on 127.0.0.1:5432")
    results = run_smoke(tmp_path, ["P6", "P9"])
    assert_measured(results, ["P6", "P9"])


def test_smoke_of_failure_triage_on_sqlite_and_postgresql_reports_every_figure(
    tmp_path: Path,
) -> None:
    require(listening(5432), "PostgreSQL on 127.0.0.1:5432")
    require(os.path.exists("/usr/bin/chromium"), "Debian's chromium (`make test` installs it)")
    results = run_smoke(tmp_path, ["P12"])
    assert_measured(results, ["P12"])
    for store in ("sqlite", "postgresql"):
        details = results["details"]["P12"][store]
        assert details["descendants"] == 3000 and details["failed"] == 300
        assert details["export_jsonl"]["rows"] == 3000
