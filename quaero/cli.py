"""quaero's command line: serve | web | worker | migrate | submit | jobs.

`quaero` (the console script of `pip install .`) and `python run.py` in a checkout both
call `main`:

quaero serve [--config config.toml]     web + workers in one process
quaero web                              the web server alone
quaero worker                           a worker process alone (scale-out)
quaero migrate                          apply pending migrations
quaero submit crawler --payload '{"url": "https://example.org/"}' --follow
quaero jobs [--status running]          the roots table in the terminal
python run.py demo --config examples/demo.toml  serve and crawl the bundled demo site
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import logging
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from quaero import config as config_mod
from quaero import rows
from quaero.config import Config, ConfigError
from quaero.redact import redact_text

logger = logging.getLogger("quaero")


class RedactSecrets(logging.Filter):
    """Replaces the API token with [redacted] in every record a handler writes (message,
    arguments and traceback), whichever logger (ours, waitress, huey, peewee's SQL with
    its parameters) made it, in every spelling (quaero.redact: JSON, HTML, URL, repr)."""

    def __init__(self, *secrets: str) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = redact_text(text, secret)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it as usual
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def setup_logging(config: Config) -> None:
    """Process logs to stderr at the configured level, the API token redacted."""
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.server.api_token:
        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactSecrets(config.server.api_token))
    logging.getLogger("huey").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


MIN_TOKEN_CHARS = 16


def check_bind(config: Config) -> None:
    """Refuse a non-loopback bind without an API token, and a token that is too short."""
    token = config.server.api_token
    if token and len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"server.api_token is shorter than {MIN_TOKEN_CHARS} characters: use a long random "
            "one, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    host = config.server.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not config.server.api_token:
        raise ConfigError(
            f"server.host = {host!r} is not a loopback address: set [server] api_token "
            "(or QUAERO_SERVER_API_TOKEN) before exposing quaero"
        )
    bits = config_mod.token_variety_bits(token)
    if not loopback and bits < config_mod.MIN_TOKEN_BITS:
        raise ConfigError(
            f"server.api_token has about {bits:.0f} bits of variety (length x log2 of its "
            f"distinct characters); server.host = {host!r} is not a loopback address, so it "
            f"needs at least {config_mod.MIN_TOKEN_BITS} bits: use a random one, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def make_server(config: Config, app):
    """The hardened waitress server (quaero.web.server) bound to the configured address;
    an address in use is a ConfigError that says how to choose another port."""
    from quaero.web.server import create_server

    try:
        return create_server(app, config.server)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"{config.server.host}:{config.server.port} is already in use (another quaero?): "
            "stop that process or choose another port with [server] port or "
            f"QUAERO_SERVER_PORT={config.server.port + 1}"
        ) from None


def cmd_serve(config: Config, args: argparse.Namespace, before_run=None) -> int:
    from quaero.worker import WorkerService

    services, server = open_web(config)
    if before_run is not None:
        before_run(services, server)
    worker = WorkerService(services)
    web = threading.Thread(target=server.run, name="quaero-web", daemon=True)
    web.start()
    print(
        f"quaero serving on http://{config.server.host}:{server.effective_port}/jobs "
        f"with {config.queue.num_workers} workers",
        file=sys.stderr,
        flush=True,
    )
    try:
        worker.run()
    finally:
        server.close()
        services.close()
    return 0


def open_web(config: Config):
    """Check the bind, open the services and make the web server (not started yet);
    the services are closed again if the server cannot be made."""
    from quaero.services import build_services
    from quaero.web import create_app

    check_bind(config)
    services = build_services(config)
    try:
        return services, make_server(config, create_app(services))
    except ConfigError:
        services.close()
        raise


def cmd_web(config: Config, args: argparse.Namespace) -> int:
    services, server = open_web(config)
    print(
        f"quaero web on http://{config.server.host}:{server.effective_port}/jobs",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        services.close()
    return 0


def cmd_worker(config: Config, args: argparse.Namespace) -> int:
    from quaero.services import build_services
    from quaero.worker import WorkerService

    services = build_services(config)
    try:
        WorkerService(services).run()
    finally:
        services.close()
    return 0


def cmd_migrate(config: Config, args: argparse.Namespace) -> int:
    from quaero.db import apply_migrations, make_database

    db = make_database(config.database_url)
    applied = apply_migrations(db)
    print("applied: " + ", ".join(applied) if applied else "nothing to apply: up to date")
    return 0


def progress_bar(job: dict) -> str:
    """The share done as a text bar and a percentage: "[#########.....]  60.0%"."""
    width = 30
    filled = int(round(job["progress"] * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {job['progress'] * 100:5.1f}%"


def progress_line(job: dict) -> str:
    """One line: a bar, the share done, counts and status. A job without descendants
    shows its own progress only (a failed leaf is not "100% 0/0")."""
    return f"{progress_bar(job)} {rows.done_text(job)} {job['status']}"


NO_WORKER_GRACE = 3.0  # seconds `submit --follow` waits for a worker before it says so


def cmd_submit(config: Config, args: argparse.Namespace) -> int:
    from quaero import queries
    from quaero.errors import ValidationFailed
    from quaero.models import JobStatus
    from quaero.serialize import job_to_dict
    from quaero.services import build_services
    from quaero.validation import job_name, validate_create

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        print(f"--payload is not valid JSON: {exc}", file=sys.stderr)
        return 2
    body = {"type": args.type, "payload": payload, "priority": args.priority}
    if args.name:
        body["name"] = args.name
    services = build_services(config)
    try:
        spec = validate_create(body, demo_types=config.jobs.demo_types)
    except ValidationFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for field, message in exc.fields.items():
            print(f"  {field}: {message}", file=sys.stderr)
        return 2
    job = services.manager.create_root(
        spec.type,
        spec.payload,
        name=job_name(spec),
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout=spec.timeout,
    )
    print(f"job {job.id} submitted ({job.type})", flush=True)
    if not args.follow:
        return 0
    interactive = sys.stdout.isatty()
    last = ""
    warned_at = time.monotonic() + NO_WORKER_GRACE  # a worker may be starting up
    while True:
        if time.monotonic() >= warned_at:
            warned_at = float("inf") if queries.live_workers() else time.monotonic() + 60
            if warned_at != float("inf"):
                print(
                    ("\n" if interactive else "")
                    + "no worker is alive: nothing runs this job until one starts "
                    "(`python run.py serve`, `python run.py worker` or `make run`, "
                    "with the same config)",
                    file=sys.stderr,
                    flush=True,
                )
                last = ""
        data = job_to_dict(queries.get_job(job.id))
        line = progress_line(data)
        if line != last:
            print(
                ("\r" + line) if interactive else line, end="" if interactive else "\n", flush=True
            )
            last = line
        if JobStatus(data["status"]).is_final:
            if interactive:
                print()
            if data["error"]:
                print(f"error: {data['error']}")
            return 0 if data["status"] == JobStatus.COMPLETED else 1
        time.sleep(0.5)


CELL_WIDTH = 60  # a terminal cuts a long name where the page's cell shows an ellipsis


def terminal_cell(column: rows.Column, job: dict) -> str:
    """A cell of the roots table as text; progress gets a bar, as the page's <progress>."""
    text = str(column.text(job))[:CELL_WIDTH]
    return f"{progress_bar(job)} {text}" if column.key == "progress" else text


def print_table(header: list[str], table: list[list[str]], right: set[int]) -> None:
    """Columns padded to their widest cell; those in `right` (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())


def cmd_jobs(config: Config, args: argparse.Namespace) -> int:
    """The page's roots table in the terminal: counts, then one line per root, with the
    page's columns and cell texts (quaero/rows.py)."""
    from quaero import queries
    from quaero.serialize import job_summary_to_dict
    from quaero.services import build_services

    services = build_services(config)
    try:
        stats = queries.stats(services.queue)
        jobs, total = queries.list_jobs(
            queries.JobFilter(
                status=args.status,
                type=args.type,
                q=args.q,
                has_failures=True if args.has_failures else None,
                limit=args.limit,
            )
        )
        jobs = [job_summary_to_dict(job) for job in jobs]
    finally:
        services.close()
    # Roots by status, as the page's chips: each count is what `--status` would list.
    counts = "  ".join(f"{status} {n}" for status, n in stats["root_counts"].items())
    print(
        f"{counts}  with failures {stats['roots_with_failures']}  |  "
        f"queue {stats['queue_depth']}  workers {stats['workers_alive']}"
    )
    print_table(
        [column.label.upper() for column in rows.ROOT_COLUMNS],
        [[terminal_cell(column, job) for column in rows.ROOT_COLUMNS] for job in jobs],
        right={i for i, column in enumerate(rows.ROOT_COLUMNS) if column.numeric},
    )
    print(f"{len(jobs)} of {total} root jobs, newest first")
    return 0


DEMO_SITE = Path(__file__).resolve().parent.parent / "examples" / "demo_site"  # a checkout


def demo_site_port(config: Config) -> int:
    """The port of the demo site: the first `127.0.0.1:PORT` of crawler.allow_hosts, so
    the config that allows the site is also the one that places it."""
    for entry in config.crawler.allow_hosts:
        host, _, port = entry.rpartition(":")
        if host == "127.0.0.1" and port.isdigit():
            return int(port)
    raise ConfigError(
        "the demo crawls a site on 127.0.0.1: allow it with [crawler] allow_hosts = "
        '["127.0.0.1:8086"] (examples/demo.toml does) or QUAERO_CRAWLER_ALLOW_HOSTS='
        "'[\"127.0.0.1:8086\"]'"
    )


def serve_demo_site(port: int):
    """examples/demo_site/ over HTTP on 127.0.0.1:`port`, in a daemon thread."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class QuietHandler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
            logger.debug("demo site: " + format, *args)

    handler = functools.partial(QuietHandler, directory=str(DEMO_SITE))
    try:
        site = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"127.0.0.1:{port} (the demo site) is already in use: choose another port with "
            f"QUAERO_CRAWLER_ALLOW_HOSTS='[\"127.0.0.1:{port + 10}\"]'"
        ) from None
    threading.Thread(target=site.serve_forever, name="demo-site", daemon=True).start()
    return site


def cmd_export(config: Config, args: argparse.Namespace) -> int:
    """Write every descendant of a job to a file (or stdout) as JSON lines or CSV."""
    from quaero import export, queries
    from quaero.services import build_services

    services = build_services(config)
    try:
        job = queries.get_job(args.job_id)
        if job is None:
            print(f"job {args.job_id} not found", file=sys.stderr)
            return 1
        fmt = args.format or ("csv" if (args.output or "").endswith(".csv") else "jsonl")
        to_file = args.output not in (None, "-")
        with open(args.output, "w", newline="") if to_file else nullcontext(sys.stdout) as out:
            rows = sum(out.write(chunk) and chunk.count("\n") for chunk in export.stream(job, fmt))
    finally:
        services.close()
    if to_file:
        rows -= 1 if fmt == "csv" else 0  # the header line
        print(f"exported {rows} jobs under {job.id} to {args.output}", file=sys.stderr)
    return 0


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    """Serve the bundled demo site, then serve quaero with a crawl of that site started."""
    site_url = f"http://127.0.0.1:{demo_site_port(config)}/"
    site = serve_demo_site(demo_site_port(config))

    def start_crawl(services, server) -> None:
        job = services.manager.create_root(
            "crawler", {"url": site_url, "depth": 2, "max_pages": 50}, name=site_url
        )
        page = f"http://{config.server.host}:{server.effective_port}/jobs?job={job.id}"
        print(f"demo: crawling {site_url} as job {job.id}: watch it at {page}", file=sys.stderr)

    try:
        return cmd_serve(config, args, before_run=start_crawl)
    finally:
        site.shutdown()


COMMANDS = {
    "serve": (cmd_serve, "web server and workers in one process (what `make run` starts)"),
    "web": (cmd_web, "the web server alone"),
    "worker": (cmd_worker, "a worker process alone (run many for scale-out)"),
    "migrate": (cmd_migrate, "apply pending database migrations"),
    "submit": (cmd_submit, "create a job from the shell; --follow shows its progress"),
    "jobs": (cmd_jobs, "list root jobs in the terminal"),
    "export": (cmd_export, "write every descendant of a job as JSON lines or CSV"),
    "demo": (cmd_demo, "serve the bundled demo site and crawl it (make demo)"),
}


def build_parser() -> argparse.ArgumentParser:
    # no `prog`: usage lines name what was run, `quaero` or `run.py`
    parser = argparse.ArgumentParser(description="quaero job orchestrator")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", help="path of config.toml (default: ./config.toml)")
        if name == "submit":
            p.add_argument("type", help="executor type, e.g. crawler")
            p.add_argument("--payload", default="{}", help="the payload as JSON")
            p.add_argument("--name", help="a name shown in the jobs table")
            p.add_argument("--priority", type=int, default=0)
            p.add_argument("--follow", action="store_true", help="show progress until done")
        if name == "jobs":
            p.add_argument("--status")
            p.add_argument("--type")
            p.add_argument("--q", help="search in names")
            p.add_argument(
                "--has-failures", action="store_true", help="only roots with failed descendants"
            )
            p.add_argument("--limit", type=int, default=20)
        if name == "export":
            p.add_argument("job_id", type=int, help="the job whose descendants to export")
            p.add_argument("-o", "--output", help="the file to write (default: stdout)")
            p.add_argument(
                "--format", choices=["jsonl", "csv"], help="default: csv for *.csv, else jsonl"
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command (default: serve); returns the process exit status."""
    args = build_parser().parse_args(argv)
    command = args.command or "serve"
    if args.command is None:
        args.config = None
    try:
        config = config_mod.load(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config)
    handler = COMMANDS[command][0]
    try:
        return handler(config, args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
