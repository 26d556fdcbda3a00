"""What every request must pass and what every response carries.

One `before_request` hook checks, in this order:

1. the Host, when no API token is set: quaero then listens on loopback only, so any
   other Host name is a DNS-rebinding attempt by a web page (403);
2. the credentials (`auth.check_credentials`: 401 for the API, the login page otherwise),
   then the body size (413, whether or not the route reads the body);
3. that a state-changing request (POST, PUT, PATCH, DELETE) is not cross-site: a
   `Sec-Fetch-Site` other than same-origin, or an `Origin` naming another host, gets 403
   (non-browser clients send neither and pass);
4. `[server] read_only`: every state change under /api gets 403;
5. that a state-changing API request with a body sends JSON (415), so an HTML form on
   another site can never produce an acceptable request.

One `after_request` hook sets the browser protection headers on every response and
replaces the API token, wherever it appears in a JSON, HTML or text body (a job payload,
a crawled URL, a log line), with "[redacted]".
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from quaero.redact import redact_bytes
from quaero.web import auth
from quaero.web.errors import error_response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on the
    # login form's POST, and the cross-site check cannot tell it from a sandboxed frame.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HSTS_SECONDS = 31_536_000  # one year; no includeSubDomains: other hosts are not ours
REDACTED_TYPES = ("application/json", "text/html", "text/plain")
DEFAULT_PORTS = {"http": "80", "https": "443"}


def _server_config():
    return current_app.extensions["quaero"].config.server


def is_api_path(path: str) -> bool:
    """Paths whose answers (errors included) are JSON."""
    return path.startswith("/api/") or path in ("/healthz", "/metrics")


def _hostname(host: str) -> str:
    """The host name of a Host header value, lowercased, without port or brackets."""
    try:
        return (urlsplit("//" + host).hostname or "").rstrip(".")
    except ValueError:
        return ""


def loopback_host(host: str) -> bool:
    """Whether a Host header names this machine's loopback (localhost, 127/8, ::1)."""
    name = _hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _netloc(scheme: str, host: str) -> str:
    """`host` lowercased, without the scheme's default port."""
    host = host.lower()
    default = DEFAULT_PORTS.get(scheme)
    return host[: -len(default) - 1] if default and host.endswith(":" + default) else host


def same_origin(origin: str) -> bool:
    """Whether an Origin header names the host this request was sent to.

    Compares host and port, not the scheme: behind a TLS-terminating proxy the browser's
    origin is https while quaero sees http, and a proxy must pass Host on (README).
    """
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in DEFAULT_PORTS or not parts.netloc:
        return False
    return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, request.host)


def cross_site_reason() -> str | None:
    """Why this state-changing request looks cross-site, or None if it does not."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {site[:20]})"
    origin = request.headers.get("Origin")
    if origin == "null" and same_origin(request.headers.get("Referer", "")):
        return None  # a privacy setting hid the origin; the Referer still names ours
    if origin is not None and not same_origin(origin):
        return "cross-origin request refused (the Origin header names another site)"
    return None


def _has_body() -> bool:
    return bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")


def guard_request() -> Response | None:
    """The checks of the module docstring, in order; a response refuses the request."""
    server = _server_config()
    if not server.api_token and not (
        loopback_host(request.host) or _hostname(request.host) == server.host
    ):
        return error_response(
            403,
            "forbidden_host",
            "without [server] api_token quaero only answers requests for a loopback host name",
        )
    refusal = auth.check_credentials()
    if refusal is not None:
        return refusal
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    if request.method not in UNSAFE_METHODS:
        return None
    reason = cross_site_reason()
    if reason is not None:
        return error_response(403, "cross_site", reason)
    if not is_api_path(request.path):
        return None
    if server.read_only:
        return error_response(403, "read_only", "quaero is read-only ([server] read_only = true)")
    if _has_body() and not request.is_json:
        return error_response(
            415,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        )
    return None


def redact(response: Response, secret: str) -> None:
    """Replace every spelling of `secret` in a buffered text response with [redacted]."""
    if response.direct_passthrough or response.mimetype not in REDACTED_TYPES:
        return
    if response.is_streamed:
        return
    body = response.get_data()
    redacted = redact_bytes(body, secret)
    if redacted is not body:
        response.set_data(redacted)


def relative_location(response: Response) -> None:
    """Keep only path and query of a Location: Werkzeug's own redirects (slashes) build
    it from the Host header, and an answer must never name a host the client made up."""
    location = response.headers.get("Location")
    if not location:
        return
    parts = urlsplit(location)
    if parts.scheme or parts.netloc or location.startswith("//"):
        path = "/" + parts.path.lstrip("/")
        response.headers["Location"] = path + (f"?{parts.query}" if parts.query else "")


def finish_response(response: Response) -> Response:
    """Browser protection headers on every response; the token redacted from bodies."""
    token = _server_config().api_token
    if token:
        redact(response, token)
        if not request.path.startswith("/static/"):  # nothing a signed-in user sees is kept
            response.headers["Cache-Control"] = "no-store"
    if request.is_secure:  # https, or X-Forwarded-Proto from [server] trusted_proxy
        response.headers["Strict-Transport-Security"] = f"max-age={HSTS_SECONDS}"
    relative_location(response)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def init_app(app: Flask) -> None:
    """Register the two hooks. Call after every blueprint, so that `finish_response` runs
    before the ETag of `live.conditional_get` is computed (after_request hooks run in
    reverse order of registration)."""
    app.before_request(guard_request)
    app.after_request(finish_response)
