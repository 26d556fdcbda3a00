"""The dependency direction: the core (models, job manager) loads no executor, so the
crawler's parsers and HTTP client stay out of processes and tests that only manage jobs."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CRAWLER_MODULES = ("quaero.executors.crawler", "quaero.executors.netguard", "requests", "lxml")


@pytest.mark.parametrize("module", ["quaero.models", "quaero.jobs"])
def test_importing_the_core_loads_no_crawler(module):
    check = (
        f"import {module}, sys; "
        f"loaded = [m for m in {CRAWLER_MODULES!r} if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_child_spec_is_still_importable_from_the_executor_api():
    from quaero.executors.base import ChildSpec as FromExecutors
    from quaero.models import ChildSpec

    assert FromExecutors is ChildSpec
