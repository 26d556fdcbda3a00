"""The API token: `Authorization: Bearer <token>` for the API, a login for the page.

With `[server] api_token` empty (the default, only allowed on a loopback bind) nothing
is required.
"""

from __future__ import annotations

import hmac

from flask import Flask, current_app, redirect, render_template, request, session, url_for

from quaero.web.errors import error_response

OPEN_PATHS = ("/healthz", "/login", "/static/")


def _token() -> str:
    return current_app.extensions["quaero"].config.server.api_token


def token_matches(given: str) -> bool:
    """Constant-time comparison with the configured token."""
    return hmac.compare_digest(given.encode(), _token().encode())


def init_app(app: Flask) -> None:
    """Require the token on every request but health, login and static files."""

    @app.before_request
    def require_token():
        if not _token() or request.path.startswith(OPEN_PATHS):
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and token_matches(header[len("Bearer ") :]):
            return None
        if session.get("authenticated"):
            return None
        if request.path.startswith("/api/") or request.path == "/metrics":
            return error_response(401, "unauthorized", "missing or wrong API token")
        return redirect(url_for("auth_login", next=request.full_path))

    @app.route("/login", methods=["GET", "POST"], endpoint="auth_login")
    def login():
        error = None
        if request.method == "POST":
            if token_matches(request.form.get("token", "")):
                session.clear()
                session["authenticated"] = True
                target = request.args.get("next", "/jobs")
                return redirect(
                    target if target.startswith("/") and not target.startswith("//") else "/jobs"
                )
            error = "Wrong token."
        return render_template("login.html", error=error), (401 if error else 200)
