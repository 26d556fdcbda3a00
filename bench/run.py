"""quaero's benchmark harness: runs P1–P12, prints each figure with its target
and PASS/FAIL, and writes the results as JSON under bench/results/.

    python -m bench.run                   the full run (`make bench`), < 10 min on 2 cores
    python -m bench.run --smoke           tiny sizes, seconds per benchmark (`make bench-smoke`)
    python -m bench.run --only P1,P3      some benchmarks only
    python -m bench.run --set p1_children=2000 --set p1_reps=1    change a size
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    api_reads,
    crawl,
    crawl_heavy,
    latency,
    recovery,
    rq_bench,
    scaleout,
    throughput,
    top,
    triage,
)
from bench.common import REPO_ROOT, RESULTS_DIR
from bench.harness import BENCHMARKS, FULL_SIZES, SMOKE_SIZES, SPECS, Context

# What runs each benchmark; P5 is measured during P1's runs, so both run `throughput`.
RUNNERS: dict[str, Callable[[Context], None]] = {
    "P1": throughput.run,
    "P2": latency.run,
    "P3": api_reads.run,
    "P4": crawl.run,
    "P6": scaleout.run,
    "P7": rq_bench.run,
    "P8": recovery.run,
    "P9": scaleout.run_big_tree,
    "P10": top.run,
    "P11": crawl_heavy.run,
    "P12": triage.run,
}
RUNNER_OF = {"P5": "P1"}


def parse_sizes(pairs: list[str], sizes: dict[str, Any]) -> dict[str, Any]:
    """Apply `--set key=value` pairs, each value parsed as the default's type."""
    sizes = dict(sizes)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in sizes:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(sizes)}")
        kind = type(sizes[key])
        if kind is bool:
            sizes[key] = text.lower() in ("1", "true", "yes", "on")
        else:
            sizes[key] = kind(text)
    return sizes


def git_state() -> dict[str, Any]:
    """The commit measured and whether the work tree had changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "quaero", "run.py", "migrations"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(dirty)}


def format_value(value: Any, unit: str) -> str:
    """A figure's value for the table."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "/s":
        return f"{value:,.1f}/s"
    if unit == "s":
        return f"{value:.1f} s"
    if unit in ("ms", "%", "MB"):
        return f"{value:.1f} {unit}" if unit != "%" else f"{value:.2f} %"
    return str(value)


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table (printed, and pasted into bench/README.md)."""
    rows = ["| figure | value | target | result |", "|---|---|---|---|"]
    for figure_id, f in results["figures"].items():
        if f["error"]:
            value, verdict = f["error"], "FAIL" if f["op"] else "—"
        else:
            value = format_value(f["value"], f["unit"])
            verdict = "—" if f["passed"] is None else ("PASS" if f["passed"] else "FAIL")
        label = f"{figure_id.split('.')[0]} {f['name']}"
        rows.append(f"| {label} | {value} | {f['target'] or '—'} | {verdict} |")
    return "\n".join(rows)


def write_results(results: dict[str, Any], folder: Path, smoke: bool) -> Path:
    """Write `<prefix>latest.json` and a timestamped copy; returns the latest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "smoke-" if smoke else ""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    latest = folder / f"{prefix}latest.json"
    tmp = folder / f"{prefix}latest.json.tmp"
    tmp.write_text(text)
    tmp.replace(latest)
    shutil.copyfile(latest, folder / f"{prefix}run-{stamp}.json")
    return latest


def run_benchmark(ctx: Context, name: str) -> None:
    """Run one benchmark; whatever it raises becomes ERROR on its unmeasured figures."""
    started = time.monotonic()
    reason = "not measured"
    ctx.detail(name, load_average_before=os.getloadavg()[0])
    try:
        RUNNERS[name](ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        lines = [line for line in f"{type(exc).__name__}: {exc}".splitlines() if line.strip()]
        reason = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1].strip()}"
        reason = reason[:300]
        print(f"  {name} failed: {reason}", file=sys.stderr, flush=True)
        ctx.detail(name, traceback=traceback.format_exc())
    finally:
        ctx.detail(
            name,
            seconds=round(time.monotonic() - started, 1),
            load_average_after=os.getloadavg()[0],
        )
        members = [name] + [b for b, runner in RUNNER_OF.items() if runner == name]
        for spec in SPECS:
            if spec.benchmark in members:
                ctx.fail(spec.id, reason)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a quick check")
    parser.add_argument("--only", help="comma-separated benchmarks, e.g. P1,P3 (default: all)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one size (see bench/harness.py FULL_SIZES)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where the JSON files go (default: bench/results)",
    )
    parser.add_argument(
        "--fail-on-target",
        action="store_true",
        help="exit 1 when a target is missed or a figure has an error",
    )
    args = parser.parse_args(argv)

    selected = BENCHMARKS if not args.only else [b.strip().upper() for b in args.only.split(",")]
    unknown = [b for b in selected if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    runners = sorted({RUNNER_OF.get(b, b) for b in selected})
    sizes = parse_sizes(args.set, SMOKE_SIZES if args.smoke else FULL_SIZES)

    ctx = Context(sizes=sizes, smoke=args.smoke)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    # SIGTERM (e.g. from a timeout) unwinds like Ctrl-C, so every child is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for name in runners:
            print(f"{name} ...", flush=True)
            run_benchmark(ctx, name)
    except KeyboardInterrupt:
        print("interrupted: child processes stopped, no results written", file=sys.stderr)
        return 130
    finally:
        ctx.close()

    figures = {
        spec.id: ctx.figures[spec.id].as_json() for spec in SPECS if spec.benchmark in selected
    }
    results = {
        "mode": "smoke" if args.smoke else "full",
        "started_at": started_at.isoformat(timespec="seconds"),
        "duration_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "git": git_state(),
        "benchmarks": selected,
        "sizes": sizes,
        "figures": figures,
        "details": ctx.details,
    }
    latest = write_results(results, args.results_dir, args.smoke)
    print()
    print(table(results))
    targets = [f for f in figures.values() if f["op"]]
    passed = sum(1 for f in targets if f["passed"])
    errors = sum(1 for f in figures.values() if f["error"])
    print(
        f"\n{passed} of {len(targets)} targets met, {errors} figures with errors, "
        f"in {results['duration_seconds']:.0f} s; results in {latest}"
    )
    if args.fail_on_target and (passed < len(targets) or errors):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
