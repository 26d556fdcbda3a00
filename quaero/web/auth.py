"""The API token: `Authorization: Bearer <token>` for the API, a login for the page.

With `[server] api_token` empty (the default, only allowed on a loopback bind) nothing
is required. With a token, every request but /healthz, /login, /logout and static files
needs either the header (compared in constant time) or the session cookie that
`POST /login` sets after the same comparison. The cookie holds no secret, only a signed
random session id whose hash is stored in the `sessions` table (quaero.web.sessions):
`POST /logout` deletes it, in every process. Its signing key is derived from the token
(so changing the token signs everyone out) and it expires after `SESSION_LIFETIME`. It
is HttpOnly, SameSite=Strict, and Secure whenever the request came over HTTPS. Wrong
tokens, in the header or the form, are rate limited per client address
(quaero.web.ratelimit).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from urllib.parse import quote

from flask import (
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
)
from flask.sessions import SecureCookieSessionInterface

from quaero.web import sessions
from quaero.web.errors import error_response
from quaero.web.ratelimit import LoginLimiter

OPEN_PATHS = ("/healthz", "/login", "/logout", "/static/")
SESSION_LIFETIME = timedelta(hours=12)


def _token() -> str:
    return current_app.extensions["quaero"].config.server.api_token


def session_key(token: str) -> bytes:
    """The cookie-signing key: derived from the token, never the token itself."""
    return hmac.new(token.encode(), b"quaero session signing key", hashlib.sha256).digest()


def token_matches(given: str) -> bool:
    """Constant-time comparison with the configured token (of digests: no length leak)."""
    token = _token()
    if not token:
        return False
    expected = hashlib.sha256(token.encode()).digest()
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "replace")).digest(), expected)


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if there is one."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _limiter() -> LoginLimiter:
    return current_app.extensions["quaero_login_limiter"]


def _client() -> str:
    return request.remote_addr or "unknown"


def too_many_attempts() -> Response | None:
    """A 429 while this client address is locked out for wrong tokens."""
    wait = _limiter().retry_after(_client())
    if not wait:
        return None
    response = error_response(
        429, "too_many_requests", f"too many wrong tokens from this address: retry in {wait} s"
    )
    response.headers["Retry-After"] = str(wait)
    return response


def check_token(given: str) -> bool:
    """Compare a token and record the outcome for this client address."""
    if token_matches(given):
        _limiter().succeeded(_client())
        return True
    _limiter().failed(_client())
    return False


def check_credentials() -> Response | None:
    """None if the request may go on; else a 401 (API), 429 (too many wrong tokens) or a
    redirect to the login page."""
    if not _token() or request.path.startswith(OPEN_PATHS):
        return None
    given = bearer_token()
    if given is not None:
        refusal = too_many_attempts()
        if refusal is not None:
            return refusal
        if check_token(given):
            g.authenticated_by = "bearer"
            return None
    elif sessions.is_live(session.get("sid")):
        g.authenticated_by = "cookie"
        return None
    if request.path.startswith("/api/") or request.path == "/metrics":
        response = error_response(401, "unauthorized", "missing or wrong API token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="quaero"'
        return response
    return redirect("/login?next=" + _quote_path(request.full_path.rstrip("?")))


def _quote_path(path: str) -> str:
    return quote(path, safe="/")


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (another site) becomes /jobs."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ord(c) < 32 for c in target)
    ):
        return "/jobs"
    return target


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, `Secure` exactly when the request is HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or bool(app.config["SESSION_COOKIE_SECURE"])


def init_app(app: Flask) -> None:
    """Session settings and the /login and /logout routes (checks: `check_credentials`)."""
    app.session_interface = SessionInterface()
    server = app.extensions["quaero"].config.server
    app.extensions["quaero_login_limiter"] = LoginLimiter(server.login_attempts_per_minute)
    app.config.update(
        SECRET_KEY=session_key(app.extensions["quaero"].config.server.api_token),
        SESSION_COOKIE_NAME="quaero_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )

    @app.route("/login", methods=["GET", "POST"], endpoint="auth_login")
    def login():
        target = safe_next(request.args.get("next"))
        if not _token():
            return redirect(target)
        error = None
        if request.method == "POST":
            refusal = too_many_attempts()
            if refusal is not None:
                wait = refusal.headers["Retry-After"]
                html = render_template("login.html", error=f"Too many tries: wait {wait} s.")
                return html, 429, {"Retry-After": wait}
            if check_token(request.form.get("token", "")):
                sessions.end(session.get("sid"))
                session.clear()
                session["sid"] = sessions.start(SESSION_LIFETIME.total_seconds())
                return redirect(target)
            error = "Wrong token."
        html = render_template("login.html", error=error, next=target)
        return html, (401 if error else 200)

    @app.post("/logout", endpoint="auth_logout")
    def logout():
        sessions.end(session.get("sid"))
        session.clear()
        return redirect("/login" if _token() else "/jobs", code=303)

    @app.context_processor
    def signed_in():
        return {"signed_in": g.get("authenticated_by") == "cookie"}
