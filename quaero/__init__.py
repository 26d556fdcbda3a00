"""quaero: a parent/child job orchestrator on Huey, peewee and Flask."""

__version__ = "0.1.0"
