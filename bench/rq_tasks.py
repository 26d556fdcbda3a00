"""The task RQ's workers run in P7 (importable by them: the repo root is on their path)."""


def noop() -> None:
    """Does nothing: the cheapest possible job."""
