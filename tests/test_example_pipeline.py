"""The example pipeline of examples/csv_pipeline runs end to end through `serve` with
`[executors] modules = ["csv_jobs"]`: a CSV fetched from a local URL, one job per row
writing a file, and one sum once every row is written."""

from __future__ import annotations

import csv
import functools
import json
import shutil
import threading
import tomllib
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from quaero import config as config_mod
from quaero.client import Client, ValidationError
from tests.procs import ROOT, free_port, write_config

pytestmark = pytest.mark.e2e

EXAMPLE = ROOT / "examples" / "csv_pipeline"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture
def csv_site(tmp_path):
    """A folder holding the example's sales.csv (and what a test adds), over HTTP on a
    free 127.0.0.1 port: yields (its URL, the folder)."""
    folder = tmp_path / "site"
    folder.mkdir()
    shutil.copy(EXAMPLE / "sales.csv", folder)
    site = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder))
    )
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}", folder
    site.shutdown()


@pytest.fixture
def pipeline(tmp_path, procs):
    """`serve` loading the example's executors, its files under tmp_path/out."""
    port = free_port()
    config = write_config(
        tmp_path, port, '[executors]\nmodules = ["csv_jobs"]\n[queue]\nnum_workers = 4'
    )
    env = {"PYTHONPATH": str(EXAMPLE), "CSV_PIPELINE_OUT": str(tmp_path / "out")}
    serve = procs("serve", config, env=env)
    base = f"http://127.0.0.1:{port}"
    serve.wait_healthy(base)
    with Client(base) as client:
        yield client, tmp_path / "out"


def expected_sums() -> tuple[int, list[str], dict[str, Decimal]]:
    """The example's CSV summed here, independently of the pipeline."""
    rows = list(csv.DictReader((EXAMPLE / "sales.csv").open()))
    sums: dict[str, Decimal] = {}
    skipped = []
    for i, row in enumerate(rows, start=1):
        if not row["quantity"].isdigit():
            skipped.append(f"{i:05d}")
            continue
        amount = int(row["quantity"]) * Decimal(row["unit_price"])
        sums[row["region"]] = sums.get(row["region"], Decimal(0)) + amount
    return len(rows), skipped, sums


def test_the_csv_pipeline_fetches_transforms_each_row_and_sums_once(pipeline, csv_site):
    client, out = pipeline
    n, skipped, sums = expected_sums()
    root = client.submit("csv_import", {"url": f"{csv_site[0]}/sales.csv"})
    done = client.wait(root["id"], timeout=60, poll=0.2)
    assert done["status"] == "completed", done
    assert done["counts"]["total"] == n + 1 and done["counts"]["completed"] == n + 1
    assert done["result"]["rows"] == n
    assert client.children(root["id"], limit=500)["total"] == n
    # exactly one sum, and it saw every row
    listed = requests.get(
        f"{client.base_url}/api/jobs",
        params={"root_id": root["id"], "type": "csv_sum"},
        timeout=5,
    ).json()["jobs"]
    assert len(listed) == 1
    summary = client.get(listed[0]["id"])["result"]
    assert summary["rows"] == n and summary["skipped"] == skipped
    assert {region: Decimal(v) for region, v in summary["by_region"].items()} == sums
    assert Decimal(summary["total"]) == sum(sums.values())
    folder = out / str(root["id"])
    assert len(list((folder / "rows").glob("*.json"))) == n
    assert json.loads((folder / "summary.json").read_text())["total"] == summary["total"]
    warnings = [
        line
        for job in client.children(root["id"], limit=500)["jobs"]
        for line in client.logs(job["id"], level="warning")
    ]
    assert len(warnings) == len(skipped)


def test_the_pipeline_payload_is_validated_and_its_inner_types_are_not_submittable(pipeline):
    client, _ = pipeline
    with pytest.raises(ValidationError) as caught:
        client.submit("csv_import", {"url": "ftp://example.org/a.csv", "max_rows": 0})
    assert set(caught.value.fields) == {"payload.url", "payload.max_rows"}
    with pytest.raises(ValidationError) as caught:
        client.submit("csv_row", {"index": 1, "rows": 1, "values": {}})
    assert set(caught.value.fields) == {"type"}


def test_an_empty_csv_still_sums(pipeline, csv_site):
    client, out = pipeline
    url, folder = csv_site
    (folder / "empty.csv").write_text("region,product,quantity,unit_price\n")
    root = client.submit("csv_import", {"url": f"{url}/empty.csv"})
    done = client.wait(root["id"], timeout=30, poll=0.2)
    assert done["status"] == "completed" and done["counts"]["total"] == 1
    summary = json.loads((out / str(root["id"]) / "summary.json").read_text())
    assert summary == {"rows": 0, "skipped": [], "total": "0", "by_region": {}}


def test_the_example_config_names_the_module():
    text = (EXAMPLE / "pipeline.toml").read_text()
    config = config_mod.build(tomllib.loads(text), base_dir=EXAMPLE, environ={})
    assert config.executors.modules == ["csv_jobs"]
    assert Path(config.database_url.removeprefix("sqlite:///")).resolve() == (
        ROOT / "data" / "csv_pipeline" / "quaero.db"
    )
