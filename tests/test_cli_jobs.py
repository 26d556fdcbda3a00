"""`run.py jobs`: the page's counts and roots table in the terminal."""

import subprocess
import sys

from quaero import config as config_mod
from quaero.rows import ROOT_COLUMNS
from quaero.services import build_services
from tests.procs import ROOT, free_port, write_config


def test_jobs_prints_counts_then_the_roots_newest_first(tmp_path):
    config_path = write_config(tmp_path, free_port())
    services = build_services(config_mod.load(str(config_path)))
    try:
        first = services.manager.create_root("noop", {}, name="older root")
        second = services.manager.create_root("sleep", {}, name="newer root")
        services.manager.cancel_tree(first.id)
    finally:
        services.close()
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "jobs", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("pending 1  running 0  completed 0  failed 0  cancelled 1")
    assert "queue " in lines[0] and "workers 0" in lines[0]
    # the page's columns, in the page's order (quaero/rows.py defines them for both)
    assert lines[1].split() == [column.label.upper() for column in ROOT_COLUMNS]
    assert lines[1].split() == ["ID", "NAME", "TYPE", "STATUS", "PROGRESS", "CREATED", "DURATION"]
    assert lines[2].split()[0] == str(second.id) and "newer root" in lines[2]
    assert "cancelled" in lines[3] and "no descendants" in lines[3] and "older root" in lines[3]
    assert lines[-1] == "2 of 2 root jobs, newest first"


def run_jobs(config_path, *args):
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "jobs", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_jobs_shows_failures_under_a_completed_root_and_columns_line_up(tmp_path):
    from tests.test_tree_failures import W, fail_for_good, tree_with_failed_children

    config_path = write_config(tmp_path, free_port())
    services = build_services(config_mod.load(str(config_path)))
    try:
        tree_id, _ = tree_with_failed_children(services.manager, failed=3, ok=1)
        leaf = services.manager.create_root("sleep", {"steps": 4}, name="failed leaf")
        fail_for_good(services.manager, leaf.id, progress=0.25)
        long_type = services.manager.create_root("thumbnail_resizer", {}, name="own type")
        services.manager.complete(services.manager.claim(long_type.id, W), W, None)
    finally:
        services.close()
    lines = run_jobs(config_path)
    # the counts are of roots, as the rows below (3 failed children are not 3 failed roots)
    assert lines[0].startswith("pending 0  running 0  completed 2  failed 1  cancelled 0")
    assert "with failures 1" in lines[0]
    header, rows = lines[1], lines[2:-1]
    by_id = {row.split()[0]: row for row in rows}
    assert "completed with 3 failed" in by_id[str(tree_id)]
    assert "3/4 failed" not in by_id[str(tree_id)] and "4/4 (3 failed)" in by_id[str(tree_id)]
    leaf_row = by_id[str(leaf.id)]
    assert " 25.0%" in leaf_row and "0/0" not in leaf_row and "100.0%" not in leaf_row
    for column in ("NAME", "TYPE", "STATUS", "PROGRESS", "CREATED", "DURATION"):
        start = header.index(column)
        for row in rows:  # every row has a value starting (or, numbers, ending) there
            if column == "DURATION":
                end = start + len(column)
                assert row[end - 1] != " " and row[end : end + 1] in ("", " "), (column, row)
            else:
                assert row[start] != " " and row[start - 1] == " ", (column, header, row)
    assert run_jobs(config_path, "--has-failures")[2].split()[0] == str(tree_id)
