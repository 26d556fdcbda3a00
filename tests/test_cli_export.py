"""`run.py export ID` (issue 16, point 5): a tree's descendants written to a file."""

import csv
import json
import subprocess
import sys

from quaero import config as config_mod
from quaero.services import build_services
from tests.procs import ROOT, free_port, write_config
from tests.test_triage_api import two_level_tree


def export(config_path, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "export", "--config", str(config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_export_writes_every_descendant_as_jsonl_or_csv(tmp_path):
    config_path = write_config(tmp_path, free_port())
    services = build_services(config_mod.load(str(config_path)))
    try:
        root_id, kids, grand = two_level_tree(services.manager)
    finally:
        services.close()
    result = export(config_path, str(root_id), "-o", str(tmp_path / "tree.jsonl"))
    assert result.returncode == 0, result.stderr
    assert f"exported 7 jobs under {root_id}" in result.stderr
    rows = [json.loads(line) for line in (tmp_path / "tree.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(kids + grand)
    result = export(config_path, str(root_id), "-o", str(tmp_path / "tree.csv"))
    with open(tmp_path / "tree.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert result.returncode == 0 and len(table) == 7 and table[-1]["title"] == "G4"
    assert export(config_path, "999999").returncode == 1
