"""Safe by default (issue 9): the auth matrix over every route, the login cookie, browser
protections (headers, cross-site and DNS-rebinding refusals), read-only mode, hostile
input, and the token kept out of every answer and every process log."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator

import pytest
import requests

from quaero.services import Services, build_services
from quaero.web import create_app
from quaero.web.security import CONTENT_SECURITY_POLICY
from tests import procs
from tests.helpers import make_config, wait_for

# what an operator would set: long, varied, and with every character that an encoding
# (JSON, HTML, URL, SQL literals) writes differently
TOKEN = "Zq8&'<>+/=" + "k3J9vR2mXw7LpT4nYb6HcE1sGd5AfU0o"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


@pytest.fixture
def make_services(tmp_path) -> Iterator:
    made: list[Services] = []

    def make(**server) -> Services:
        folder = tmp_path / f"s{len(made)}"
        folder.mkdir()
        services = build_services(make_config(folder, server=server))
        made.append(services)
        return services

    yield make
    for services in made:
        services.close()


@pytest.fixture
def app_with_token(make_services):
    # these tests make many wrong guesses on purpose: test_sign_in covers the rate limit
    return create_app(make_services(api_token=TOKEN, login_attempts_per_minute=1000))


def error_code(response) -> str:
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]["code"]


def login(client, token: str = TOKEN, **headers):
    return client.post("/login", data={"token": token}, headers=headers)


# --- the auth matrix -----------------------------------------------------------------


def concrete_routes(app, job_id: int | str) -> list[tuple[str, str]]:
    """(method, path) for every rule of the app, with a job id filled in."""
    routes = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<[^>]*job_id>", str(job_id), rule.rule)
        path = path.replace("<path:filename>", "app.css")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


OPEN = {"/healthz", "/login", "/logout", "/static/app.css"}
PAGES = {"/", "/jobs"}


def is_auth_refusal(response) -> bool:
    """A 401 JSON answer, or the redirect to the login page."""
    if response.status_code == 401 and response.mimetype == "application/json":
        return True
    return response.status_code == 302 and "/login?next=" in response.headers["Location"]


@pytest.mark.parametrize("credentials", ["none", "wrong token", "right token", "page cookie"])
def test_auth_matrix_over_every_route(app_with_token, credentials):
    app = app_with_token
    manager = app.extensions["quaero"].manager
    routes = concrete_routes(app, job_id="{id}")
    # 22, plus the triage routes (descendants, failures ×2, export, bulk) and schedules
    assert len(routes) == 28 and ("DELETE", "/api/jobs/{id}") in routes
    assert ("POST", "/api/jobs/bulk") in routes and ("GET", "/api/schedules") in routes
    client = app.test_client()
    headers = {}
    if credentials == "wrong token":
        headers = {"Authorization": f"Bearer {TOKEN[:-1]}y"}
    elif credentials == "right token":
        headers = AUTH
    elif credentials == "page cookie":
        assert login(client).status_code == 302
    allowed = credentials in ("right token", "page cookie")
    for method, path in routes:
        path = path.format(id=manager.create_root("noop", {}, name="target").id)
        response = client.open(path, method=method, headers=headers)
        where = f"{credentials}: {method} {path} -> {response.status_code}"
        if path in OPEN:
            assert not is_auth_refusal(response), where
        elif allowed:
            assert response.status_code not in (401, 403), where
            if path in PAGES:
                assert response.status_code in (200, 302), where
        elif path in PAGES:
            assert response.status_code == 302, where
            assert response.headers["Location"].startswith("/login?next="), where
        else:
            assert response.status_code == 401, where
            assert error_code(response) == "unauthorized", where
            assert response.headers["WWW-Authenticate"].startswith("Bearer"), where
        if credentials == "page cookie" and path == "/logout":
            assert login(client).status_code == 302  # stay signed in for the rest


def test_without_a_token_nothing_is_required(make_services):
    client = create_app(make_services()).test_client()
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/jobs").status_code == 200
    assert client.get("/login").status_code == 302  # nothing to sign in to


def test_bearer_scheme_is_case_insensitive_and_other_schemes_fail(app_with_token):
    client = app_with_token.test_client()
    assert client.get("/api/jobs", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    basic = base64.b64encode(f"x:{TOKEN}".encode()).decode()
    assert client.get("/api/jobs", headers={"Authorization": f"Basic {basic}"}).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": TOKEN}).status_code == 401
    assert client.get("/api/jobs", headers={"Authorization": "Bearer "}).status_code == 401


# --- the login cookie ----------------------------------------------------------------


def session_cookie(response) -> str:
    cookies = [v for v in response.headers.getlist("Set-Cookie") if v.startswith("quaero_")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


def test_login_sets_an_httponly_samesite_strict_cookie_without_the_token(app_with_token):
    client = app_with_token.test_client()
    assert client.get("/login").status_code == 200
    response = login(client)
    assert response.status_code == 302 and response.headers["Location"] == "/jobs"
    cookie = session_cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    value = cookie.split(";")[0].split("=", 1)[1]
    assert TOKEN not in cookie
    payload = value.split(".")[0]
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(data) == {"sid"} and TOKEN not in data["sid"]  # a session id, revocable


def test_login_over_https_sets_a_secure_cookie(app_with_token):
    client = app_with_token.test_client()
    response = client.post("/login", data={"token": TOKEN}, base_url="https://quaero.example")
    assert response.status_code == 302
    assert "Secure" in session_cookie(response)


def test_x_forwarded_proto_is_not_trusted(app_with_token):
    client = app_with_token.test_client()
    response = login(client, **{"X-Forwarded-Proto": "https"})
    assert "Secure" not in session_cookie(response)


def test_wrong_login_sets_no_cookie_and_says_so(app_with_token):
    client = app_with_token.test_client()
    response = login(client, token="nope")
    assert response.status_code == 401 and "Wrong token." in response.get_data(as_text=True)
    assert not [v for v in response.headers.getlist("Set-Cookie") if v.startswith("quaero_")]
    assert client.get("/api/jobs").status_code == 401


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/jobs?status=failed", "/jobs?status=failed"),
        ("//evil.example/", "/jobs"),
        ("/\\evil.example/", "/jobs"),
        ("https://evil.example/", "/jobs"),
        ("javascript:alert(1)", "/jobs"),
    ],
)
def test_login_only_redirects_to_local_paths(app_with_token, next_url, location):
    client = app_with_token.test_client()
    response = client.post("/login", query_string={"next": next_url}, data={"token": TOKEN})
    assert response.headers["Location"] == location


def test_logout_ends_the_session(app_with_token):
    client = app_with_token.test_client()
    login(client)
    assert client.get("/api/jobs").status_code == 200
    response = client.post("/logout")
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    assert client.get("/api/jobs").status_code == 401


def test_a_cookie_stops_working_when_the_token_changes(make_services):
    old = create_app(make_services(api_token=TOKEN)).test_client()
    login(old)
    cookie = old.get_cookie("quaero_session")
    new = create_app(make_services(api_token=TOKEN + "-rotated")).test_client()
    new.set_cookie("quaero_session", cookie.value)
    assert new.get("/api/jobs").status_code == 401


def test_a_session_expires_after_twelve_hours(app_with_token, monkeypatch):
    client = app_with_token.test_client()
    login(client)
    assert client.get("/api/jobs").status_code == 200
    later = time.time() + 12 * 3600 + 60
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: later)
    assert client.get("/api/jobs").status_code == 401


# --- browser protections -------------------------------------------------------------


def test_the_csp_is_exactly_the_issue_s():
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


def test_every_kind_of_response_carries_the_protection_headers(app_with_token):
    client = app_with_token.test_client()
    login(client)
    job = client.post("/api/jobs", json={"type": "noop"}).get_json()
    etag = client.get(f"/api/jobs/{job['id']}").headers["ETag"]
    responses = {
        "page": client.get("/jobs"),
        "login": client.get("/login"),
        "json": client.get("/api/jobs"),
        "304": client.get(f"/api/jobs/{job['id']}", headers={"If-None-Match": etag}),
        "404 json": client.get("/api/jobs/999999"),
        "404 page": client.get("/nothing-here"),
        "401": app_with_token.test_client().get("/api/jobs"),
        "static": client.get("/static/app.css"),
        "metrics": client.get("/metrics"),
        "health": client.get("/healthz"),
    }
    assert responses["304"].status_code == 304
    for name, response in responses.items():
        headers = response.headers
        assert headers["Content-Security-Policy"] == EXPECTED_CSP, name
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] == "same-origin", name
        assert headers["X-Frame-Options"] == "DENY", name
    for name in ("json", "404 json", "401", "health"):
        assert responses[name].mimetype == "application/json", name


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
)
def test_cross_site_state_changes_are_refused(app_with_token, headers):
    client = app_with_token.test_client()
    login(client)
    job = client.post("/api/jobs", json={"type": "noop"}).get_json()
    for method, path, body in [
        ("POST", "/api/jobs", {"type": "noop"}),
        ("POST", f"/api/jobs/{job['id']}/cancel", None),  # no body: a no-cors fetch
        ("DELETE", f"/api/jobs/{job['id']}", None),
    ]:
        response = client.open(path, method=method, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert error_code(response) == "cross_site"
    assert client.get(f"/api/jobs/{job['id']}").get_json()["status"] == "pending"
    response = app_with_token.test_client().post("/login", data={"token": TOKEN}, headers=headers)
    assert response.status_code == 403  # no login from another site either


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost"},
        {"Origin": "http://localhost:80"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Sec-Fetch-Site": "none"},
    ],
)
def test_same_origin_state_changes_pass(app_with_token, headers):
    client = app_with_token.test_client()
    login(client)
    assert client.post("/api/jobs", json={"type": "noop"}, headers=headers).status_code == 201


def test_origin_null_passes_only_with_a_same_origin_referer(app_with_token):
    """A browser whose referrer policy hides the origin sends `Origin: null` on the login
    form; its Referer still names the page. A sandboxed frame elsewhere names its own."""
    ok = {"Origin": "null", "Referer": "http://localhost/login?next=/jobs"}
    assert login(app_with_token.test_client(), **ok).status_code == 302
    for referer in ("https://evil.example/login", "null", ""):
        response = login(app_with_token.test_client(), Origin="null", Referer=referer)
        assert response.status_code == 403, referer


def test_origin_behind_a_tls_proxy_matches_on_host(app_with_token):
    """nginx terminates TLS: the browser's Origin is https, quaero sees http + Host."""
    client = app_with_token.test_client()
    site = "http://quaero.example.org"
    assert client.post("/login", data={"token": TOKEN}, base_url=site).status_code == 302
    headers = {"Origin": "https://quaero.example.org"}
    response = client.post("/api/jobs", json={"type": "noop"}, headers=headers, base_url=site)
    assert response.status_code == 201
    response = client.post(
        "/api/jobs", json={"type": "noop"}, headers={"Origin": site + ":8080"}, base_url=site
    )
    assert response.status_code == 403


def test_cross_site_is_refused_without_a_token_too(make_services):
    client = create_app(make_services()).test_client()
    job = client.post("/api/jobs", json={"type": "noop"}).get_json()
    response = client.post(
        f"/api/jobs/{job['id']}/cancel", headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 403 and error_code(response) == "cross_site"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8085", "10.0.0.5", "[::2]:80"])
def test_without_a_token_only_loopback_host_names_are_served(make_services, host):
    """DNS rebinding: a page on evil.example rebinds its name to 127.0.0.1."""
    client = create_app(make_services()).test_client()
    response = client.get("/api/jobs", headers={"Host": host})
    assert response.status_code == 403 and error_code(response) == "forbidden_host"
    assert client.get("/jobs", headers={"Host": host}).status_code == 403
    for good in ("localhost", "127.0.0.1:8085", "[::1]:8085", "127.0.0.2"):
        assert client.get("/api/jobs", headers={"Host": good}).status_code == 200, good


def test_with_a_token_any_host_name_is_served(app_with_token):
    client = app_with_token.test_client()
    response = client.get("/api/jobs", headers={**AUTH, "Host": "quaero.example.org"})
    assert response.status_code == 200


def test_bodies_of_state_changes_must_be_json(app_with_token):
    client = app_with_token.test_client()
    job = client.post("/api/jobs", json={"type": "noop"}, headers=AUTH).get_json()
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "multipart/form-data"):
        response = client.post(
            f"/api/jobs/{job['id']}/cancel",
            data="a=b",
            headers={**AUTH, "Content-Type": content_type},
        )
        assert response.status_code == 415, content_type
    assert client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH).status_code == 200


# --- read-only mode ------------------------------------------------------------------


def test_read_only_serves_reads_and_refuses_every_state_change(make_services):
    services = make_services(read_only=True)
    job = services.manager.create_root("noop", {}, name="kept")
    app = create_app(services)
    client = app.test_client()
    assert client.get("/jobs").status_code == 200
    for path in ("/api/jobs", f"/api/jobs/{job.id}", "/api/stats", "/api/openapi.json"):
        assert client.get(path).status_code == 200, path
    unsafe = [(m, p) for m, p in concrete_routes(app, job.id) if m in ("POST", "DELETE")]
    api_changes = [(m, p) for m, p in unsafe if p.startswith("/api/")]
    # create, cancel, retry, rerun, pause, resume, delete, and bulk actions
    assert len(api_changes) == 8 and ("POST", "/api/jobs/bulk") in api_changes
    for method, path in api_changes:
        response = client.open(path, method=method, json={"type": "noop"})
        assert response.status_code == 403, (method, path)
        assert error_code(response) == "read_only"
    assert client.get(f"/api/jobs/{job.id}").get_json()["status"] == "pending"
    assert client.get("/api/jobs").get_json()["total"] == 1


# --- hostile input -------------------------------------------------------------------


def nested(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture
def client(make_services):
    return create_app(make_services()).test_client()


def test_payload_depth_is_limited_to_twenty_levels(client):
    assert client.post("/api/jobs", json={"type": "noop", "payload": nested(20)}).status_code == 201
    response = client.post("/api/jobs", json={"type": "noop", "payload": nested(21)})
    assert response.status_code == 400
    assert "nested deeper than 20 levels" in response.get_json()["error"]["fields"]["payload"]


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    body = '{"type": "noop", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post("/api/jobs", data=body, content_type="application/json")
    assert response.status_code == 400 and error_code(response) == "validation_error"


def test_payload_json_is_limited_to_64_kib(client):
    ok = {"type": "noop", "payload": {"x": "a" * 60_000}}
    assert client.post("/api/jobs", json=ok).status_code == 201
    response = client.post("/api/jobs", json={"type": "noop", "payload": {"x": "a" * 70_000}})
    assert response.status_code == 400
    assert "more than 65536" in response.get_json()["error"]["fields"]["payload"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"type": "noop", "payload": {"x": NaN}}', "payload.x"),
        ('{"type": "noop", "payload": {"x": [1, Infinity]}}', "payload.x.1"),
        ('{"type": "noop", "payload": {"x": "\\ud800"}}', "payload.x"),
        ('{"type": "noop", "name": "a\\u0000b"}', "name"),
    ],
)
def test_non_finite_numbers_lone_surrogates_and_nul_are_named(client, body, field):
    response = client.post("/api/jobs", data=body, content_type="application/json")
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]["fields"]


def test_out_of_range_ids_and_numbers_are_404_and_400_not_500(client):
    huge = "9" * 30
    assert client.get(f"/api/jobs/{huge}").status_code == 404
    assert client.post(f"/api/jobs/{huge}/cancel").status_code == 404
    assert client.get("/api/jobs/-1").status_code == 404
    for arg in ("offset", "parent_id", "limit"):
        response = client.get("/api/jobs", query_string={arg: huge})
        assert response.status_code == 400 and arg in response.get_json()["error"]["fields"]
    response = client.get("/api/jobs", query_string={"q": "a\x00b"})
    assert response.status_code == 400 and "q" in response.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    "path",
    ["/api/jobs/" + "1" * 4301, "/api/jobs/" + "9" * 20, "/api/jobs/\u0663", "/api/jobs/\u00b2"],
)
def test_odd_ids_in_paths_are_404_never_500(app_with_token, path):
    client = app_with_token.test_client()
    assert client.get(path).status_code in (401, 404)  # before authentication: no 500
    assert client.get(path, headers=AUTH).status_code == 404
    assert client.post(path + "/cancel", headers=AUTH).status_code == 404


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "1" * 4301, " 3", "1_0", "+3", "3.0"])
def test_odd_numbers_in_query_strings_are_400_never_500(client, value):
    assert client.get("/jobs", query_string={"job": value}).status_code == 400
    for arg in ("offset", "limit", "parent_id"):
        response = client.get("/api/jobs", query_string={arg: value})
        assert response.status_code == 400, (arg, value)
        assert arg in response.get_json()["error"]["fields"]
    assert client.get("/jobs", query_string={"job": "12"}).status_code == 200


@pytest.mark.parametrize("path", ["/static//app.css", "/api//jobs", "//jobs"])
def test_redirects_never_name_the_host_they_were_sent(app_with_token, path):
    client = app_with_token.test_client()
    response = client.get(path, headers={**AUTH, "Host": "evil.example"})
    location = response.headers.get("Location", "")
    assert "evil.example" not in location and not location.startswith("//"), location
    assert response.status_code != 500


def test_a_name_taken_from_the_url_is_cut_to_500_characters(client):
    url = "https://example.org/" + "a" * 2000
    job = client.post("/api/jobs", json={"type": "noop", "payload": {"url": url}}).get_json()
    assert job["name"] == url[:500]
    response = client.post("/api/jobs", json={"type": "noop", "name": "n" * 501})
    assert response.status_code == 400 and "name" in response.get_json()["error"]["fields"]


def test_the_body_limit_holds_on_routes_that_ignore_the_body(client):
    job = client.post("/api/jobs", json={"type": "noop"}).get_json()
    response = client.post(f"/api/jobs/{job['id']}/cancel", json={"x": "a" * 2_000_000})
    assert response.status_code == 413 and error_code(response) == "too_large"


# --- the token stays secret ----------------------------------------------------------


def test_the_token_never_appears_in_answers(app_with_token):
    services = app_with_token.extensions["quaero"]
    client = app_with_token.test_client()
    login(client)
    job = client.post(
        "/api/jobs",
        json={"type": "noop", "name": f"named {TOKEN}", "payload": {"note": TOKEN}},
    ).get_json()
    services.manager.log(job["id"], "error", f"fetched http://x.example/?token={TOKEN}")
    answers = [
        client.get(f"/api/jobs/{job['id']}"),
        client.get("/api/jobs"),
        client.get(f"/api/jobs/{job['id']}/logs"),
        client.get("/jobs"),
        client.get(f"/jobs?q={TOKEN}"),
        client.get(f"/api/jobs?type={TOKEN}"),
        client.get(f"/api/jobs/{TOKEN}"),
        app_with_token.test_client().get(
            "/api/jobs", headers={"Authorization": f"Bearer {TOKEN}x"}
        ),
        client.post(f"/api/jobs/{job['id']}/rerun", json={"payload": {"x": [TOKEN] * 2}}),
    ]
    answers += [
        client.get("/jobs", query_string={"q": TOKEN}),
        client.get("/api/jobs", query_string={"q": TOKEN}),
        client.get("/jobs", query_string={"job": job["id"]}),
    ]
    for response in answers:
        body = response.get_data(as_text=True)
        for spelling in spellings(TOKEN):
            assert spelling not in body, (response.request.path, spelling, body[:300])
    shown = answers[0].get_json()
    assert shown["name"] == "named [redacted]" and shown["payload"] == {"note": "[redacted]"}
    assert "[redacted]" in answers[2].get_data(as_text=True)


def spellings(secret: str) -> set[str]:
    """Every way quaero's answers and logs could write `secret`."""
    from urllib.parse import quote, quote_plus

    from jinja2.utils import htmlsafe_json_dumps
    from markupsafe import Markup, escape

    forms = {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        str(htmlsafe_json_dumps(secret))[1:-1],
        str(escape(secret)),
        str(Markup.escape(secret)).replace("&#39;", "&#x27;"),
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote_plus(secret),
        quote(secret, safe="").lower(),
        repr(secret)[1:-1],
        repr(json.dumps({"k": secret}))[1:-1].split(": ", 1)[1][:-1],
    }
    return {form.strip('"') for form in forms if form}


def test_cache_control_and_hsts(app_with_token):
    client = app_with_token.test_client()
    login(client)
    for path in ("/jobs", "/api/jobs", "/api/stats"):
        response = client.get(path)
        assert response.status_code == 200
        assert "no-store" in response.headers["Cache-Control"], path
        assert "Strict-Transport-Security" not in response.headers  # plain http
    secure = client.get("/api/jobs", headers=AUTH, base_url="https://quaero.example")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "no-store" in secure.headers["Cache-Control"]


def test_short_tokens_are_refused_at_start(tmp_path):
    from quaero.cli import check_bind
    from quaero.config import ConfigError

    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        check_bind(make_config(tmp_path, server={"api_token": "short"}))
    check_bind(make_config(tmp_path, server={"api_token": TOKEN, "host": "0.0.0.0"}))


@pytest.mark.e2e
def test_the_token_never_appears_in_the_process_log(tmp_path):
    """run.py serve at DEBUG with a token; requests carry the token in every place a
    log line could pick it up; the captured output never shows it."""
    port = procs.free_port()
    config = procs.write_config(
        tmp_path,
        port,
        f'[server]\napi_token = "{TOKEN}"\n[logging]\nlevel = "DEBUG"\n'
        "[jobs]\nmax_attempts = 2\nretry_base_seconds = 0.05",
    )
    base = f"http://127.0.0.1:{port}"
    serve = procs.RunPy("serve", config).start()
    try:
        serve.wait_healthy(base)
        session = requests.Session()
        session.headers.update(AUTH)
        session.get(f"{base}/api/jobs/{TOKEN}", timeout=5)
        session.get(f"{base}/api/jobs", params={"q": TOKEN}, timeout=5)
        requests.get(f"{base}/api/jobs", headers={"Authorization": f"Bearer {TOKEN}0"}, timeout=5)
        requests.post(f"{base}/login", data={"token": TOKEN[:-1]}, timeout=5)
        requests.post(f"{base}/login", data={"token": TOKEN}, timeout=5)
        dead = procs.free_port()  # nothing listens: the page job fails and is logged
        crawl = session.post(
            f"{base}/api/jobs",
            json={
                "type": "crawler",
                "payload": {"url": f"http://127.0.0.1:{dead}/?k={TOKEN}", "respect_robots": False},
            },
            timeout=5,
        ).json()
        flaky = session.post(
            f"{base}/api/jobs",
            json={"type": "sleep", "payload": {"seconds": 0, "fail": "transient"}, "name": TOKEN},
            timeout=5,
        ).json()

        def both_finished():
            jobs = [
                session.get(f"{base}/api/jobs/{job['id']}", timeout=5).json()
                for job in (crawl, flaky)
            ]
            return all(job["status"] in ("completed", "failed") for job in jobs)

        wait_for(both_finished, timeout=30, interval=0.2)  # their failures are logged
    finally:
        serve.signal(2)
        try:
            serve.wait(20)
        finally:
            output = serve.output()
            serve.stop()
    assert "failed" in output and "[redacted]" in output, output[-3000:]
    assert "SELECT" in output  # peewee's DEBUG query log, parameters included
    for spelling in spellings(TOKEN):
        assert spelling not in output, spelling
