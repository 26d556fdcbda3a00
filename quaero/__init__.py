"""quaero: a parent/child job orchestrator on Huey, peewee and Flask."""

from pathlib import Path

__version__ = "0.1.0"


def resource_dir(name: str) -> Path:
    """A folder quaero reads at run time (`pages`, `migrations`): inside the package
    when quaero is installed, else at the top of the checkout."""
    package = Path(__file__).resolve().parent
    installed = package / name
    return installed if installed.is_dir() else package.parent / name
