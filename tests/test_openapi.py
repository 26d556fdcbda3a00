"""The OpenAPI document matches the code: every API route of the Flask app is in it, and
everything in it is a route of the app (schemathesis checks the answers: test_openapi_fuzz)."""

from __future__ import annotations

import re

import pytest

from quaero.web.openapi import document

METHODS = {"get", "post", "put", "patch", "delete"}


def app_operations(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every API route: /api/*, /healthz and /metrics."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule in ("/healthz", "/metrics")):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((method.lower(), path))
    return found


def documented_operations(doc: dict) -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.fixture
def app(services):
    from quaero.web import create_app

    return create_app(services)


def test_every_api_route_is_documented_and_nothing_else(app):
    in_app, in_doc = app_operations(app), documented_operations(document())
    assert len(in_app) == 22
    assert in_app - in_doc == set(), "routes missing from the OpenAPI document"
    assert in_doc - in_app == set(), "documented operations the app does not have"


def test_the_document_is_served_and_complete(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    doc = response.get_json()
    assert doc["openapi"].startswith("3.") and doc == document(demo_types=True)
    for path, item in doc["paths"].items():
        parameters = re.findall(r"{([a-z_]+)}", path)
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"], where
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(parameters), where
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), where
            for code, response in responses.items():
                if code.startswith(("4", "5")) and code != "503":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (where, code)


def test_the_documented_job_types_are_the_submittable_ones(client):
    doc = client.get("/api/openapi.json").get_json()
    create = doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert (
        create["schema"]["properties"]["type"]["enum"]
        == client.get("/api/types").get_json()["types"]
    )


def test_the_error_shape_is_the_one_the_api_sends(client):
    error = document()["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["properties"]) == {"code", "message", "fields"}
    body = client.post("/api/jobs", json={"type": "crawler", "payload": {}}).get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "fields"}
