"""Sign-in that holds (issue 13, point 11): logout revokes the session everywhere, wrong
tokens are rate limited per client address, and a weak token cannot guard an open bind."""

from __future__ import annotations

import secrets
import time

import pytest
import requests

from quaero.config import ConfigError
from quaero.services import build_services
from quaero.web import create_app
from tests import procs
from tests.helpers import make_config

TOKEN = "Zq8&'<>+/=" + "k3J9vR2mXw7LpT4nYb6HcE1sGd5AfU0o"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def services(tmp_path):
    made = build_services(make_config(tmp_path, server={"api_token": TOKEN}))
    yield made
    made.close()


@pytest.fixture
def app(services):
    return create_app(services)


def login(client, token: str = TOKEN, address: str = "127.0.0.1"):
    return client.post("/login", data={"token": token}, environ_base={"REMOTE_ADDR": address})


def test_logout_revokes_the_cookie_itself(app):
    client = app.test_client()
    assert login(client).status_code == 302
    stolen = client.get_cookie("quaero_session").value
    assert client.get("/api/jobs").status_code == 200
    assert client.post("/logout").status_code == 303
    replay = app.test_client()
    replay.set_cookie("quaero_session", stolen)
    assert replay.get("/api/jobs").status_code == 401
    assert replay.get("/jobs").status_code == 302


def test_a_logout_holds_in_every_process(tmp_path):
    """Two web processes on one database (behind a proxy): logging out of one ends the
    session in the other too."""
    config = make_config(tmp_path, server={"api_token": TOKEN})
    first, second = build_services(config), build_services(config)
    try:
        a, b = create_app(first).test_client(), create_app(second).test_client()
        login(a)
        b.set_cookie("quaero_session", a.get_cookie("quaero_session").value)
        assert b.get("/api/jobs").status_code == 200
        a.post("/logout")
        assert b.get("/api/jobs").status_code == 401
    finally:
        first.close()
        second.close()


def test_sessions_are_separate(app):
    one, two = app.test_client(), app.test_client()
    login(one)
    login(two)
    one.post("/logout")
    assert one.get("/api/jobs").status_code == 401
    assert two.get("/api/jobs").status_code == 200


def test_wrong_tokens_are_limited_to_ten_a_minute_per_address(app, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("quaero.web.ratelimit.time.monotonic", lambda: now[0])
    client = app.test_client()
    for _ in range(10):
        assert login(client, "wrong").status_code == 401
    refused = login(client, "wrong")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) == 60
    assert login(client).status_code == 429  # not even tried while locked out
    assert login(client, address="10.0.0.7").status_code == 302  # another client
    now[0] += 61  # the lock-out is over; ten more wrong tokens: a longer one
    for _ in range(10):
        assert login(client, "wrong").status_code == 401
    assert int(login(client, "wrong").headers["Retry-After"]) == 120
    now[0] += 121
    assert login(client).status_code == 302


def test_wrong_bearer_tokens_count_too(app, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("quaero.web.ratelimit.time.monotonic", lambda: now[0])
    client = app.test_client()
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(10):
        assert client.get("/api/jobs", headers=wrong).status_code == 401
    response = client.get("/api/jobs", headers=AUTH)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "too_many_requests"
    assert response.headers["Retry-After"] == "60"


@pytest.mark.parametrize(
    "token", ["a" * 16, "a" * 64, "abababababababababababababababab", "t0ken-" + "x" * 26]
)
def test_a_low_variety_token_is_refused_for_an_open_bind(tmp_path, token):
    from quaero.cli import check_bind

    with pytest.raises(ConfigError, match="128 bits"):
        check_bind(make_config(tmp_path, server={"api_token": token, "host": "0.0.0.0"}))
    check_bind(make_config(tmp_path, server={"api_token": token}))  # loopback: allowed


def test_a_generated_token_passes(tmp_path):
    from quaero.cli import check_bind

    for _ in range(20):
        token = secrets.token_urlsafe(32)
        check_bind(make_config(tmp_path, server={"api_token": token, "host": "0.0.0.0"}))
    check_bind(make_config(tmp_path, server={"api_token": TOKEN, "host": "0.0.0.0"}))


@pytest.mark.e2e
def test_the_limit_follows_the_address_a_trusted_proxy_names(tmp_path):
    port = procs.free_port()
    config = procs.write_config(
        tmp_path, port, f'[server]\napi_token = "{TOKEN}"\ntrusted_proxy = "127.0.0.1"'
    )
    web = procs.RunPy("web", config).start()
    base = f"http://127.0.0.1:{port}"
    try:
        web.wait_healthy(base)
        session = requests.Session()
        attacker = {"X-Forwarded-For": "203.0.113.9"}
        statuses = []
        started = time.monotonic()
        for _ in range(200):
            response = session.post(
                f"{base}/login", data={"token": "guess"}, headers=attacker, timeout=5
            )
            statuses.append(response.status_code)
        elapsed = time.monotonic() - started
        user = requests.post(
            f"{base}/login",
            data={"token": TOKEN},
            headers={"X-Forwarded-For": "198.51.100.4"},
            allow_redirects=False,
            timeout=5,
        )
    finally:
        web.stop()
    print(f"200 guesses in {elapsed:.2f} s: {statuses.count(401)} compared, the rest 429")
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    assert user.status_code == 302  # another client, named by the trusted proxy
