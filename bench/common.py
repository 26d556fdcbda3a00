"""What every benchmark shares: child processes, quaero servers, /proc readings, stats.

Every process a benchmark starts goes through `Processes.spawn`, in its own session, so
`Processes.stop_all()` (run by the harness in a `finally`) ends each of them, and the
helpers they forked, by process group id.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = RESULTS_DIR / "cache"
FINISHED = ("completed", "failed", "cancelled")
CLK_TCK = os.sysconf("SC_CLK_TCK")

logger = logging.getLogger("bench")


class BenchError(RuntimeError):
    """A benchmark could not measure what it should; the message says why."""


# -- processes --------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of child processes: ours without QUAERO_* overrides, the repo
    importable, output unbuffered (so logs are complete when a child is killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUAERO_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Processes:
    """The child processes of one harness run; `stop_all` ends every one still alive."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def spawn(
        self,
        cmd: list[str],
        log_path: Path,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen:
        """Start `cmd` in a new session, stdout and stderr into `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env or child_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.log_path = log_path  # type: ignore[attr-defined]
        with self._lock:
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Ask `proc` to stop with `sig`, then kill its process group after `grace` s."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
                proc.wait(timeout=grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        _kill_group(proc.pid)
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                logger.warning("process %s did not die", proc.pid)
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def stop_many(self, procs: Iterable[subprocess.Popen], grace: float = 5.0) -> None:
        """Signal all of `procs` at once, then stop each (they shut down in parallel)."""
        procs = list(procs)
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in procs:
            self.stop(proc, grace=max(0.1, deadline - time.monotonic()))

    def stop_all(self) -> None:
        """End every process this run started and has not stopped yet."""
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            self.stop(proc, grace=2.0)


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group this run created (forked helpers)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def log_tail(proc: subprocess.Popen, lines: int = 15) -> str:
    """The last lines a child wrote, for error messages."""
    path = getattr(proc, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "it"
) -> Any:
    """Poll until `predicate()` is truthy and return it; BenchError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# -- quaero processes ---------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """One TOML value (the few kinds a quaero config uses)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"no TOML form for {value!r}")


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """Write `folder/config.toml` from {section: {key: value}}; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    path = folder / "config.toml"
    path.write_text("\n".join(lines))
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sqlite_config(folder: Path, num_workers: int = 5, **sections: dict[str, Any]) -> Path:
    """A config with its SQLite files in `folder` and a free port; other keys keep
    quaero's defaults unless given."""
    base: dict[str, dict[str, Any]] = {
        "server": {"port": free_port()},
        "queue": {"path": "queue.db", "num_workers": num_workers},
        "database": {"url": "sqlite:///quaero.db"},
        "jobs": {"demo_types": True},  # the benchmarks run noop, sleep and fanout jobs
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return write_config(folder, **base)


LISTEN_LINE = re.compile(r"quaero (?:serving on|web on) (http://[\d.]+:\d+)/jobs")


class Quaero:
    """A `run.py serve|web|worker` child process on its own config."""

    def __init__(self, procs: Processes, command: str, config: Path, log_name: str = "") -> None:
        self.procs = procs
        self.command = command
        self.config = config
        log = config.parent / f"{log_name or command}.log"
        self.proc = procs.spawn(
            [sys.executable, str(REPO_ROOT / "run.py"), command, "--config", str(config)], log
        )
        self.base_url = ""

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait for the listen line and a 200 from /healthz; returns the base URL."""

        def listening() -> str | None:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"`run.py {self.command}` exited with {self.proc.returncode}:\n"
                    + log_tail(self.proc)
                )
            match = LISTEN_LINE.search(Path(self.proc.log_path).read_text(errors="replace"))
            return match.group(1) if match else None

        self.base_url = wait_until(listening, timeout, what=f"`run.py {self.command}` to listen")

        def healthy() -> bool:
            try:
                return requests.get(self.base_url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, what=f"{self.base_url}/healthz")
        return self.base_url

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then kill."""
        self.procs.stop(self.proc)


# -- the API ------------------------------------------------------------------------------


def parse_iso(text: str | None) -> float | None:
    """quaero's ISO 8601 UTC timestamps ("2026-11-23T08:00:00.123Z") as epoch seconds."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def submit(session: requests.Session, base_url: str, body: dict[str, Any]) -> tuple[dict, float]:
    """POST a job; returns the job JSON and the wall-clock time just before sending."""
    sent = time.time()
    response = session.post(base_url + "/api/jobs", json=body, timeout=30)
    if response.status_code != 201:
        raise BenchError(f"POST /api/jobs: {response.status_code} {response.text[:300]}")
    return response.json(), sent


def wait_finished(
    session: requests.Session,
    base_url: str,
    job_id: int,
    timeout: float,
    interval: float = 0.25,
    alive: subprocess.Popen | None = None,
) -> dict:
    """Poll GET /api/jobs/<id> until the job is finished; returns its JSON."""

    def finished() -> dict | None:
        if alive is not None and alive.poll() is not None:
            raise BenchError(f"quaero exited with {alive.returncode}:\n{log_tail(alive)}")
        job = session.get(f"{base_url}/api/jobs/{job_id}", timeout=30).json()
        return job if job["status"] in FINISHED else None

    return wait_until(finished, timeout, interval, what=f"job {job_id} to finish")


# -- /proc ----------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmRSS, VmHWM), or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads) from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # fields[0] is the state (stat's 3rd field): utime and stime are stat's 14th and 15th
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RssSampler:
    """Samples a process's VmRSS in a thread; `peak_kib` also trusts the kernel's VmHWM."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.max_sampled_kib = 0
        self.hwm_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        """Read VmRSS and VmHWM once."""
        rss = proc_status_kib(self.pid, "VmRSS")
        hwm = proc_status_kib(self.pid, "VmHWM")
        self.max_sampled_kib = max(self.max_sampled_kib, rss or 0)
        self.hwm_kib = max(self.hwm_kib, hwm or 0)

    def stop(self) -> None:
        """Take a last reading and stop sampling."""
        if not self._stop.is_set():
            self.sample()
            self._stop.set()
            self._thread.join(timeout=2)

    @property
    def peak_kib(self) -> int:
        """The highest resident set size seen (VmHWM is the kernel's own peak)."""
        return max(self.max_sampled_kib, self.hwm_kib)


# -- numbers --------------------------------------------------------------------------------


def percentile(values: Iterable[float], pct: float) -> float:
    """The `pct` percentile (0..100) with linear interpolation between ranks."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = (len(data) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    """The median (NaN for no values)."""
    return percentile(values, 50)


def rounded(value: float, digits: int = 3) -> float:
    """Round for JSON (NaN stays NaN)."""
    return value if math.isnan(value) else round(value, digits)
