"""`run.py` subprocesses for tests: start, wait until healthy, signal, always reap."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, port: int, text: str = "") -> Path:
    """A config.toml in `folder` with test-friendly defaults plus `text` (TOML)."""
    defaults = {
        "server": {"port": port},
        "queue": {"num_workers": 3, "poll_interval": 0.02},
        "jobs": {"lease_seconds": 5, "demo_types": "true"},
        "crawler": {"allow_private_networks": "true"},
    }
    section = None
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
            defaults.setdefault(section, {})
        elif "=" in line and section:
            key, value = (part.strip() for part in line.split("=", 1))
            defaults[section][key] = value
    body = "\n".join(
        f"[{name}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items())
        for name, values in defaults.items()
    )
    path = folder / "config.toml"
    path.write_text(body + "\n")
    return path


def scale_out_config(
    folder: Path, port: int, backend: dict, text: str = "", num_workers: int = 3
) -> Path:
    """write_config for PostgreSQL + Redis: `backend` is what
    tests.helpers.scale_out_backend() yields; `text` adds TOML tables after it."""
    queue, db_url = backend["queue"], backend["database"]["url"]
    path = write_config(
        folder,
        port,
        f'''
[queue]
backend = "redis"
url = "{queue["url"]}"
name = "{queue["name"]}"
num_workers = {num_workers}
[database]
url = "{db_url}"
max_connections = 10
''',
    )
    with path.open("a") as fh:
        fh.write("\n" + text)
    return path


class RunPy:
    """One `run.py COMMAND --config PATH` process, its output in a file."""

    def __init__(self, command: str, config: Path, env: dict[str, str] | None = None):
        self.command = command
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open for the child)
            "w+", prefix=f"quaero-{command}-", suffix=".log", delete=False
        )

    def start(self) -> RunPy:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), self.command, "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
            start_new_session=True,  # its own process group: stop() kills forked workers too
        )
        return self

    def wait_healthy(self, base_url: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.command} exited early:\n{self.output()}")
            try:
                if requests.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.command} not healthy after {timeout}s:\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        """Kill it and what it forked (`worker_type = "process"` workers outlive a killed
        parent), then remove the log."""
        if self.proc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)
