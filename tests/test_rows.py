"""quaero/rows.py: the roots table's columns and formatters, which the page's server
rows, its live rows (through their jobs.js twins) and `quaero jobs` all use."""

import re
from html.parser import HTMLParser

import pytest

from quaero import rows
from quaero.web.pages import JOB_HREF
from tests.procs import ROOT

JOBS_JS = (ROOT / "pages" / "static" / "jobs.js").read_text()


def job(**fields):
    base = {
        "id": 7,
        "name": "",
        "type": "crawler",
        "status": "pending",
        "progress": 0.0,
        "counts": {"total": 0, "completed": 0, "failed": 0, "cancelled": 0},
        "created_at": "2026-01-31T12:34:56.789Z",
        "duration": None,
        "summary": {"url": None, "title": None},
    }
    return base | fields


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "—"),
        (0, "0.00 s"),
        (1.125, "1.13 s"),  # a tie rounds up, as JavaScript's toFixed
        (9.999, "10.00 s"),
        (12.25, "12.3 s"),
        (185, "3m 05s"),
        (7625, "2h 07m"),
    ],
)
def test_durations_read_as_jobs_js_writes_them(seconds, text):
    assert rows.fmt_duration(seconds) == text


def test_percentages_round_a_half_up_as_math_round():
    assert rows.pct(job(progress=0.125)) == 13
    assert rows.pct(job(progress=0.004)) == 0 and rows.pct(job(progress=1.2)) == 100
    assert rows.pct_text(job(progress=0.5)) == "50%"


def test_a_job_is_called_by_its_name_else_its_url():
    assert rows.label(job(name="mine")) == "mine"
    assert rows.label(job(summary={"url": "https://a.example/"})) == "https://a.example/"
    assert rows.label(job(summary=None, payload={"url": "https://b.example/"})) == (
        "https://b.example/"
    )
    assert rows.label(job()) == "(unnamed)"


def test_a_completed_tree_with_failures_says_so():
    counts = {"total": 4, "completed": 1, "failed": 3, "cancelled": 0}
    tree = job(status="completed", counts=counts)
    assert rows.status_text(tree) == "completed with 3 failed"
    assert rows.done_text(tree) == "4/4 (3 failed)"
    assert rows.status_badge_class(tree) == "badge-completed has-failures"
    assert rows.status_text(job(status="failed", counts=counts)) == "failed"
    assert rows.done_text(job()) == "no descendants"


def test_every_jobs_js_expression_names_a_method_jobs_js_has():
    fields = [f for f in vars(rows.Fields).values() if isinstance(f, rows.Field)]
    for field in [*fields, JOB_HREF]:
        method = re.match(r"(\w+)\(", field.js)
        if method:  # a call: defined in jobs.js as `name(...) {`
            assert re.search(rf"\n\s+{method[1]}\([\w, ]*\) {{", JOBS_JS), field.js
        else:
            assert re.fullmatch(r"job(\.\w+)+", field.js), field.js


class Cells(HTMLParser):
    """The roots table's header labels, and each row's cells: text and x-text."""

    def __init__(self):
        super().__init__()
        self.headers, self.rows, self.cell, self.in_head = [], [], None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "th":
            self.in_head = True
            self.headers.append("")
        elif tag == "tr" and ("data-job-id" in attrs or ":data-job-id" in attrs):
            self.rows.append([])
        elif tag == "td" and self.rows:
            self.cell = {"class": attrs.get("class"), "text": "", "x-text": []}
            self.rows[-1].append(self.cell)
        if self.cell is not None and "x-text" in attrs:
            self.cell["x-text"].append(attrs["x-text"])

    def handle_endtag(self, tag):
        if tag == "th":
            self.in_head = False
        elif tag == "td":
            self.cell = None

    def handle_data(self, data):
        if self.in_head:
            self.headers[-1] += data
        elif self.cell is not None:
            self.cell["text"] += data


def test_the_page_renders_both_kinds_of_row_from_the_columns(client, manager):
    tree = manager.create_root("noop", {}, name="a <b> & c")
    html = client.get("/jobs").get_data(as_text=True)
    table = html[html.index('<table id="jobs-table"') : html.index("</table>")]
    cells = Cells()
    cells.feed(table)
    n = len(rows.ROOT_COLUMNS)
    assert [h.strip() for h in cells.headers[:n]] == [c.label for c in rows.ROOT_COLUMNS]
    server, live = cells.rows  # the server's row of the job, then the x-for template's
    assert [c["class"] for c in server[:n]] == [c.css for c in rows.ROOT_COLUMNS]
    assert [c["class"] for c in live[:n]] == [c.css for c in rows.ROOT_COLUMNS]
    data = client.get(f"/api/jobs/{tree.id}").get_json()
    texts = [" ".join(c["text"].split()) for c in server[:n]]
    # the progress cell's <progress> says its percentage to browsers without one
    texts[4] = texts[4].removeprefix(rows.pct_text(data) + " ")
    assert texts == [str(c.text(data)) for c in rows.ROOT_COLUMNS]
    # each live cell binds the jobs.js twin of what the server printed
    assert live[0]["x-text"] == [rows.Fields.id.js]
    assert live[1]["x-text"] == [rows.Fields.label.js]
    assert live[6]["x-text"] == [rows.Fields.duration.js]
    assert live[4]["x-text"] == [rows.Fields.pct_text.js, rows.Fields.done.js]
