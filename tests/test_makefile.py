"""The Makefile (issue 14, points 11-13): `make run` installs only what running needs,
test tools come with `make test`, and every documented target has its prerequisites.
Checked with `make -n` (prints the commands, runs none) against a venv that does not exist."""

import shutil
import subprocess

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(target, tmp_path):
    done = subprocess.run(
        ["make", "-n", target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_installs_only_the_runtime_requirements(tmp_path):
    commands = dry_run("run", tmp_path)
    assert "-r requirements.txt" in commands
    assert "requirements-dev.txt" not in commands
    assert "run.py serve" in commands


def test_make_test_installs_the_test_tools_and_axe(tmp_path):
    commands = dry_run("test", tmp_path)
    assert "-r requirements-dev.txt" in commands
    assert "tests.browser.axe" in commands
    assert "pytest" in commands


@pytest.mark.parametrize("target", ["screenshots", "demo", "lint", "migrate"])
def test_documented_targets_have_their_prerequisites(tmp_path, target):
    dry_run(target, tmp_path)
