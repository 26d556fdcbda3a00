"""Executors from the user's own modules: `[executors] modules`, QUAERO_EXECUTORS_MODULES
and the `quaero.executors` entry-point group are imported by every serve, web and worker
process; an import error stops start-up naming the module."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import requests

from quaero import config as config_mod
from tests.helpers import scale_out_backend, wait_for, wait_for_job
from tests.procs import free_port, write_config

pytestmark = pytest.mark.e2e

PLUGIN = '''
"""A user's own executor, outside quaero."""
import os

from pydantic import BaseModel, Field

from quaero.executors.base import Executor, JobContext, register


@register
class Shout(Executor):
    """Upper-cases a word."""

    type = "{type}"

    class Payload(BaseModel):
        word: str = Field(min_length=1, description="the word to shout")
        times: int = Field(1, ge=1, le=5)

    def run(self, ctx: JobContext):
        ctx.info("shouting %s" % ctx.payload["word"])
        return {{"shout": ctx.payload["word"].upper() * ctx.payload["times"], "pid": os.getpid()}}
'''


def plugin_folder(tmp_path: Path, module: str = "myjobs", type_name: str = "shout") -> Path:
    """A folder holding one plugin module, to put on PYTHONPATH."""
    folder = tmp_path / "plugins"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(PLUGIN.format(type=type_name)))
    return folder


def submit_shout(base: str, type_name: str = "shout") -> dict:
    response = requests.post(
        f"{base}/api/jobs",
        json={"type": type_name, "payload": {"word": "hey", "times": 2}},
        timeout=5,
    )
    assert response.status_code == 201, response.text
    return wait_for_job(base, response.json()["id"], timeout=30)


def test_the_executors_section_lists_modules_and_the_environment_overrides_it(tmp_path):
    assert config_mod.build({}, environ={}).executors.modules == []
    config = config_mod.build({"executors": {"modules": ["a.jobs", "b"]}}, environ={})
    assert config.executors.modules == ["a.jobs", "b"]
    env = {"QUAERO_EXECUTORS_MODULES": "myapp.jobs, other.jobs"}
    assert config_mod.build({}, environ=env).executors.modules == ["myapp.jobs", "other.jobs"]
    with pytest.raises(config_mod.ConfigError, match="executors.modules"):
        config_mod.build({"executors": {"modules": "myapp.jobs"}}, environ={})


def test_serve_runs_an_executor_from_a_configured_module(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, '[executors]\nmodules = ["myjobs"]')
    serve = procs("serve", config, env={"PYTHONPATH": str(plugin_folder(tmp_path))})
    serve.wait_healthy(base)
    assert "shout" in requests.get(f"{base}/api/types", timeout=5).json()["types"]
    assert '<option value="shout"' in requests.get(f"{base}/jobs", timeout=5).text
    job = submit_shout(base)
    assert job["status"] == "completed" and job["result"]["shout"] == "HEYHEY", job


def test_a_plugins_payload_model_validates_submissions_and_is_documented(tmp_path, procs):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, '[executors]\nmodules = ["myjobs"]')
    serve = procs("serve", config, env={"PYTHONPATH": str(plugin_folder(tmp_path))})
    serve.wait_healthy(base)
    # the type's Payload validates submissions: a 400 naming the field
    bad = requests.post(
        f"{base}/api/jobs", json={"type": "shout", "payload": {"times": 9}}, timeout=5
    )
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"payload.word", "payload.times"}
    # and documents the type in OpenAPI, generated from the model
    doc = requests.get(f"{base}/api/openapi.json", timeout=5).json()
    schema = doc["components"]["schemas"]["Payload.shout"]
    assert schema["required"] == ["word"]
    assert schema["properties"]["times"]["maximum"] == 5


def test_an_entry_point_in_the_quaero_executors_group_is_loaded(tmp_path, procs):
    folder = plugin_folder(tmp_path, module="epjobs", type_name="ep_shout")
    dist = folder / "epjobs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: epjobs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[quaero.executors]\nshout = epjobs\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = procs("serve", write_config(tmp_path, port), env={"PYTHONPATH": str(folder)})
    serve.wait_healthy(base)
    job = submit_shout(base, "ep_shout")
    assert job["status"] == "completed" and job["result"]["shout"] == "HEYHEY", job


@pytest.mark.parametrize(
    ("module", "source", "words"),
    [
        ("no_such_jobs", None, ["no_such_jobs", "ModuleNotFoundError"]),
        (
            "broken_jobs",
            "raise RuntimeError('boom at import')\n",
            ["broken_jobs", "boom at import"],
        ),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_import_error_stops_start_up_naming_the_module(
    tmp_path, procs, module, source, words, command
):
    folder = tmp_path / "plugins"
    folder.mkdir()
    if source:
        (folder / f"{module}.py").write_text(source)
    config = write_config(tmp_path, free_port())
    proc = procs(
        command,
        config,
        env={"PYTHONPATH": str(folder), "QUAERO_EXECUTORS_MODULES": module},
    )
    assert proc.wait(timeout=30) == 2
    output = proc.output()
    assert "configuration error" in output
    for word in words:
        assert word in output, output


def test_separate_web_and_workers_on_postgres_and_redis_load_the_modules(tmp_path, procs):
    env = {"PYTHONPATH": str(plugin_folder(tmp_path)), "QUAERO_EXECUTORS_MODULES": "myjobs"}
    with scale_out_backend() as backend:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        text = f"""
[queue]
backend = "redis"
url = "{backend["queue"]["url"]}"
name = "{backend["queue"]["name"]}"
[database]
url = "{backend["database"]["url"]}"
max_connections = 10
"""
        config = write_config(tmp_path, port, text)
        web = procs("web", config, env=env)
        web.wait_healthy(base)
        workers = [procs("worker", config, env=env) for _ in range(2)]
        wait_for(
            lambda: requests.get(f"{base}/api/stats", timeout=5).json()["workers_alive"] == 2,
            timeout=30,
        )
        assert "shout" in requests.get(f"{base}/api/types", timeout=5).json()["types"]
        jobs = [submit_shout(base) for _ in range(3)]
        assert all(job["status"] == "completed" for job in jobs), jobs
        worker_pids = {w.proc.pid for w in workers}
        assert {job["result"]["pid"] for job in jobs} <= worker_pids
        assert web.proc.pid not in {job["result"]["pid"] for job in jobs}
