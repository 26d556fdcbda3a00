"""schemathesis against /api/openapi.json on a real waitress server (no worker, so no
submitted crawl ever runs): positive and negative requests to every operation, at least
2,000 in all. Zero 5xx; every status, content type and body as documented; every error
body JSON in the one shape `{"error": {"code", "message", "fields"?}}`."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from quaero.services import build_services
from tests.helpers import make_config

pytestmark = [pytest.mark.e2e, pytest.mark.long]

TOKEN = "fuzz-" + "k" * 27
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIN_REQUESTS = 2000
EXAMPLES = 90  # per operation and mode; operations with little to vary give fewer
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """quaero's app under waitress on 127.0.0.1 with a token, and a few jobs to find."""
    from waitress.server import create_server

    from quaero.web import create_app

    config = make_config(tmp_path_factory.mktemp("fuzz"), server={"api_token": TOKEN})
    services = build_services(config)
    for i in range(5):
        services.manager.create_root("noop", {"i": i}, name=f"seed {i}")
    server = create_server(create_app(services), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)
    services.close()


def assert_error_shape(response: schemathesis.Response) -> None:
    """A 4xx/5xx answer is JSON in the documented error shape."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    assert response.headers["content-type"][0].startswith("application/json"), where
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"error"}, where
    error = body["error"]
    assert set(error) <= {"code", "message", "fields"}, where
    assert isinstance(error["code"], str) and error["code"], where
    assert isinstance(error["message"], str) and error["message"], where
    if "fields" in error:
        fields = error["fields"]
        assert isinstance(fields, dict) and fields, where
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()), where


def fuzz(operation, mode, server: str, session: requests.Session, seen: Counter) -> None:
    """Run one operation's generated cases in one mode; count each answer in `seen`."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        response = case.call(base_url=server, session=session, headers=AUTH, timeout=10)
        seen[(operation.label, response.status_code)] += 1
        assert response.status_code < 500, (case.as_curl_command(), response.content[:500])
        if response.status_code >= 400:
            assert_error_shape(response)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    try:
        call()
    except Unsatisfiable:  # nothing to make invalid (no parameters and no body)
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_generated_requests_get_documented_answers_and_no_5xx(server):
    schema = schemathesis.openapi.from_url(f"{server}/api/openapi.json", headers=AUTH)
    session = requests.Session()
    seen: Counter[tuple[str, int]] = Counter()
    started = time.monotonic()
    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(result.ok(), mode, server, session, seen)
    statuses: Counter[int] = Counter()
    per_operation: Counter[str] = Counter()
    for (label, status), n in seen.items():
        statuses[status] += n
        per_operation[label] += n
    total = sum(statuses.values())
    elapsed = time.monotonic() - started
    print(f"\n{total} requests in {elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}")
    print("per operation:", dict(per_operation))
    assert total >= MIN_REQUESTS
    assert not [status for status in statuses if status >= 500]
    # every documented operation but the document itself (schemathesis leaves it out;
    # test_openapi checks it) was exercised, and reached its handler with the token
    assert len(per_operation) == 21
    reached = {label for label, status in seen if status not in (401, 403)}
    assert reached == set(per_operation)
    assert statuses[401] < total / 3  # 401s: schemathesis also tries requests without auth
