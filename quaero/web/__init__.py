"""The Flask app: the jobs page, the JSON API, health and metrics."""

from __future__ import annotations

from flask import Flask

from quaero import resource_dir
from quaero.db import fail_fast
from quaero.services import Services
from quaero.web import api, auth, openapi, pages, security
from quaero.web.errors import register_error_handlers

PAGES_DIR = resource_dir("pages")


def create_app(services: Services) -> Flask:
    """Build the app around already-built services (database, queue, manager)."""
    app = Flask(
        __name__,
        template_folder=str(PAGES_DIR),
        static_folder=str(PAGES_DIR / "static"),
        static_url_path="/static",
    )
    config = services.config
    app.config.update(
        MAX_CONTENT_LENGTH=config.server.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.extensions["quaero"] = services
    app.url_map.merge_slashes = False  # "/api//jobs" is a 404, not a redirect
    register_error_handlers(app)
    # a request answers 503 at once while the database is away; workers wait for it
    app.before_request(fail_fast)
    auth.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    security.init_app(app)  # last: its after_request hook must run before the ETag one
    return app
