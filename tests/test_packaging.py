"""quaero as a package: the `quaero` console script and what an installed copy needs.

`test_pip_install_then_quaero_serve` builds and installs the checkout into a throwaway
virtualenv (no network when pip's index is local; ~10 s) and serves from it, so it is
marked e2e; the others check the same entry point in-process."""

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import requests

from quaero import cli, resource_dir
from tests import procs
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_console_script_is_the_cli_main():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"quaero": "quaero.cli:main"}
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0


def test_the_entry_point_migrates(tmp_path, capsys):
    config = procs.write_config(tmp_path, procs.free_port())
    assert cli.main(["migrate", "--config", str(config)]) == 0
    assert "applied:" in capsys.readouterr().out


def test_run_py_is_a_thin_wrapper_of_the_cli():
    source = (ROOT / "run.py").read_text()
    assert "from quaero.cli import main" in source and "def " not in source


def test_a_checkout_reads_pages_and_migrations_at_its_top():
    assert resource_dir("pages") == ROOT / "pages"
    assert resource_dir("migrations") == ROOT / "migrations"


@pytest.mark.e2e
def test_pip_install_then_quaero_serve(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps"]
    installed = subprocess.run(
        [*pip, str(ROOT)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    if installed.returncode != 0 and "setuptools" in installed.stderr:
        pytest.skip(f"no index to fetch the build backend from: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr
    # the dependencies come from this interpreter's environment (--no-deps above)
    site = Path(sysconfig.get_paths()["purelib"])
    venv_site = next((venv / "lib").glob("python3*/site-packages"))
    (venv_site / "shared-deps.pth").write_text(f"{site}\n")
    port = procs.free_port()
    config = procs.write_config(tmp_path, port)
    quaero = str(venv / "bin" / "quaero")
    migrate = subprocess.run(
        [quaero, "migrate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert migrate.returncode == 0 and "applied:" in migrate.stdout, migrate.stderr
    serve = subprocess.Popen(
        [quaero, "serve", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def page_up():
            assert serve.poll() is None, serve.stderr.read()
            try:
                return requests.get(f"http://127.0.0.1:{port}/jobs", timeout=1).status_code
            except requests.ConnectionError:
                return None

        assert wait_for(page_up, timeout=60) == 200  # templates shipped in the package
        css = requests.get(f"http://127.0.0.1:{port}/static/app.css", timeout=5)
        assert css.status_code == 200
    finally:
        serve.terminate()
        serve.wait(timeout=30)
