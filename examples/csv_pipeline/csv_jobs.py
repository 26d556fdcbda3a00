"""An example pipeline of your own executors: a CSV fetched from a URL, one child job per
row that transforms the row and writes it to a file, and a sum once every row is done.

    csv_import (the root: fetches the CSV, spawns one csv_row per row)
    ├── csv_row   (writes rows/00001.json: the row with its amount)
    ├── csv_row   (...)
    └── csv_row   (the last row to finish spawns:)
        └── csv_sum   (reads every row file, writes summary.json, returns the totals)

quaero settles a parent in SQL when its last descendant finishes and calls no executor
code then, so the summing is a job of its own: every row, once its file is written,
counts the row files, and the row that finds them all spawns `csv_sum` with a de-dup key
fixed for the tree. The database's unique index on (root, dedup_key) creates it exactly
once, even when the last rows finish at the same moment on different workers, and a row
retried after a crash spawns it again if it had not been created. The root completes
once the sum has.

Files go under $CSV_PIPELINE_OUT (default data/csv_pipeline/out, relative to the
current folder), in a folder per root job: every worker must see the same folder.
Loaded with `[executors] modules = ["csv_jobs"]` and this folder on PYTHONPATH.
"""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, Field

from quaero.executors.base import ChildSpec, Executor, JobContext, PermanentError, register

COLUMNS = ("region", "product", "quantity", "unit_price")
MAX_CSV_BYTES = 5_000_000


def output_folder(root_id: int) -> Path:
    """Where the jobs of one pipeline run write their files."""
    base = Path(os.environ.get("CSV_PIPELINE_OUT", "data/csv_pipeline/out"))
    return base / str(root_id)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a file whole or not at all (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


@register
class CsvImport(Executor):
    """Fetches a CSV with the columns region, product, quantity, unit_price and spawns
    one csv_row job per row."""

    type = "csv_import"

    class Payload(BaseModel):
        url: str = Field(pattern=r"^https?://", description="where to fetch the CSV")
        max_rows: int = Field(1000, ge=1, le=10_000, description="refuse larger files")

    def run(self, ctx: JobContext) -> dict[str, Any]:
        url, max_rows = ctx.payload["url"], ctx.payload["max_rows"]
        ctx.info(f"fetching {url}")
        response = requests.get(url, timeout=10)
        if 400 <= response.status_code < 500:
            raise PermanentError(f"{url}: HTTP {response.status_code}")
        response.raise_for_status()  # a 5xx: retried
        if len(response.content) > MAX_CSV_BYTES:
            raise PermanentError(f"{url}: more than {MAX_CSV_BYTES} bytes")
        reader = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
        missing = [name for name in COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise PermanentError(f"{url}: no column {', '.join(missing)}")
        rows = list(reader)
        if len(rows) > max_rows:
            raise PermanentError(f"{url}: {len(rows)} rows, more than max_rows {max_rows}")
        ctx.info(f"{len(rows)} rows: one job each")
        if rows:
            ctx.spawn(
                [
                    ChildSpec(
                        "csv_row",
                        {"index": i, "rows": len(rows), "values": {k: row[k] for k in COLUMNS}},
                        name=f"row {i}: {row['region']} {row['product']}",
                    )
                    for i, row in enumerate(rows, start=1)
                ]
            )
        else:  # nothing to wait for: sum up at once
            ctx.spawn([ChildSpec("csv_sum", {"rows": 0}, name="sum", dedup_key="csv_sum")])
        return {"url": url, "rows": len(rows), "folder": str(output_folder(ctx.job.root_id))}


@register
class CsvRow(Executor):
    """One row: computes amount = quantity × unit_price and writes rows/<index>.json; the
    row that completes the set spawns csv_sum."""

    type = "csv_row"
    public = False  # made by csv_import only

    class Payload(BaseModel):
        index: int = Field(ge=1)
        rows: int = Field(ge=1)
        values: dict[str, str]

    def run(self, ctx: JobContext) -> dict[str, Any]:
        index, rows, values = ctx.payload["index"], ctx.payload["rows"], ctx.payload["values"]
        try:
            quantity = int(values["quantity"])
            amount = quantity * Decimal(values["unit_price"])
            record = {**values, "region": values["region"].strip().lower(), "amount": str(amount)}
        except (ValueError, InvalidOperation):
            # bad data stays bad on a retry: record it, so the sum still runs and says so
            ctx.warning(f"row {index}: quantity or unit_price is not a number: {values}")
            record = {**values, "error": "quantity or unit_price is not a number"}
        folder = output_folder(ctx.job.root_id) / "rows"
        write_json(folder / f"{index:05d}.json", record)
        written = len(list(folder.glob("*.json")))
        if written == rows:  # this row completed the set (others may also see it: dedup)
            ctx.info(f"all {rows} rows written: spawning the sum")
            ctx.spawn([ChildSpec("csv_sum", {"rows": rows}, name="sum", dedup_key="csv_sum")])
        return record


@register
class CsvSum(Executor):
    """Sums the row files of its pipeline by region into summary.json."""

    type = "csv_sum"
    public = False  # made by the last csv_row

    class Payload(BaseModel):
        rows: int = Field(ge=0)

    def run(self, ctx: JobContext) -> dict[str, Any]:
        folder = output_folder(ctx.job.root_id)
        by_region: dict[str, Decimal] = {}
        skipped = []
        for path in sorted((folder / "rows").glob("*.json")):
            record = json.loads(path.read_text())
            if "error" in record:
                skipped.append(path.stem)
                continue
            by_region[record["region"]] = by_region.get(record["region"], 0) + Decimal(
                record["amount"]
            )
        summary = {
            "rows": ctx.payload["rows"],
            "skipped": skipped,
            "total": str(sum(by_region.values(), Decimal(0))),
            "by_region": {region: str(by_region[region]) for region in sorted(by_region)},
        }
        write_json(folder / "summary.json", summary)
        ctx.info(f"total {summary['total']} over {len(by_region)} regions")
        return {**summary, "file": str(folder / "summary.json")}
