"""The OpenAPI document is generated from the models that check requests and describe
answers: a limit lives in one place, and the API's real answers fit the models."""

from __future__ import annotations

import pytest
from pydantic import Field

from quaero import bulk
from quaero.errors import ValidationFailed
from quaero.validation import CreateJob
from quaero.web import api, openapi, schemas
from quaero.web.openapi import document


def create_schema(doc: dict) -> dict:
    return doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_a_limit_changed_in_the_model_shows_in_the_document(monkeypatch):
    assert create_schema(document())["properties"]["priority"]["maximum"] == 100

    class Narrower(CreateJob):
        priority: int = Field(0, ge=-5, le=5)

    monkeypatch.setattr(openapi, "CreateJob", Narrower)
    priority = create_schema(document())["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (-5, 5)


def test_the_create_schema_is_the_validating_model(client):
    doc = client.get("/api/openapi.json").get_json()
    schema = create_schema(doc)
    assert set(schema["properties"]) == set(CreateJob.model_fields)
    assert schema["additionalProperties"] is False and schema["required"] == ["type"]
    assert schema["properties"]["name"]["maxLength"] == 500
    assert schema["properties"]["on_child_failure"]["enum"] == ["ignore", "fail"]
    # the limit the document states is the one the API holds to
    too_long = {"type": "noop", "name": "x" * 501}
    assert client.post("/api/jobs", json=too_long).status_code == 400
    assert client.post("/api/jobs", json={**too_long, "name": "x" * 500}).status_code == 201


def test_the_bulk_schema_has_the_limits_parse_checks():
    doc = document()
    assert doc["components"]["schemas"]["BulkRequest"]["required"] == ["action", "filter"]
    filter_schema = doc["components"]["schemas"]["BulkRequestFilter"]
    assert set(filter_schema["properties"]) == set(bulk.FILTER_KEYS)
    assert filter_schema["properties"]["ids"]["maxItems"] == bulk.MAX_IDS
    longest = filter_schema["properties"]["q"]["maxLength"]
    bulk.parse({"action": "cancel", "filter": {"q": "x" * longest}})
    with pytest.raises(ValidationFailed):
        bulk.parse({"action": "cancel", "filter": {"q": "x" * (longest + 1)}})


def test_query_limits_are_the_ones_the_api_checks(client):
    params = {p["name"]: p for p in document()["paths"]["/api/jobs"]["get"]["parameters"]}
    assert params["limit"]["schema"]["maximum"] == api.MAX_LIMIT
    assert client.get(f"/api/jobs?limit={api.MAX_LIMIT}").status_code == 200
    assert client.get(f"/api/jobs?limit={api.MAX_LIMIT + 1}").status_code == 400


def test_every_model_of_an_answer_is_a_component():
    components = document()["components"]["schemas"]
    for model in schemas.RESPONSES:
        assert model.__name__ in components
    # pydantic's titles are left out; a property may still be named title
    assert "title" not in components["Job"] and "title" not in components["Job"]["properties"]["id"]
    assert "title" in components["Summary"]["properties"]


def test_real_answers_fit_the_answer_models(client, services):
    root = services.manager.create_root("fanout", {"children": 2}, name="tree")
    services.manager.log(root.id, "info", "hello")
    answers = {
        f"/api/jobs/{root.id}": schemas.Job,
        "/api/jobs": schemas.JobList,
        f"/api/jobs/{root.id}/descendants": schemas.JobList,
        f"/api/jobs/{root.id}/logs": schemas.LogLines,
        f"/api/jobs/{root.id}/failures": schemas.FailureGroups,
        "/api/failures": schemas.FailureGroups,
        "/api/stats": schemas.Stats,
        "/api/schedules": schemas.Schedules,
        "/api/types": schemas.Types,
        "/healthz": schemas.Health,
    }
    for path, model in answers.items():
        response = client.get(path)
        assert response.status_code == 200, path
        model.model_validate(response.get_json())
    bad = client.post("/api/jobs", json={"type": "nope"})
    assert bad.status_code == 400
    schemas.Error.model_validate(bad.get_json())
    dry = client.post(
        "/api/jobs/bulk", json={"action": "cancel", "filter": {"ids": [root.id]}, "dry_run": True}
    )
    schemas.BulkResult.model_validate(dry.get_json())


def test_the_bulk_body_is_checked_by_the_documented_model():
    """`bulk.parse` validates with `BulkRequest`, the model the document shows: a body
    the model refuses is refused, naming the field, with the API's own wording."""
    cases = {
        "filter.ids": {"ids": list(range(1, bulk.MAX_IDS + 2))},
        "filter.q": {"q": "x" * (bulk.MAX_TEXT_CHARS + 1)},
        "filter.has_failures": {"has_failures": 1},
        "filter.colour": {"colour": "red"},
    }
    for field, filter_ in cases.items():
        with pytest.raises(ValidationFailed) as caught:
            bulk.parse({"action": "retry", "filter": filter_})
        assert field in caught.value.fields, (field, caught.value.fields)
    assert bulk.parse({"action": "cancel", "filter": {"type": None, "q": "a"}})[1].q == "a"


def test_a_limit_changed_in_the_bulk_model_changes_what_parse_refuses(monkeypatch):
    class NarrowerFilter(bulk.BulkRequestFilter):
        ids: list[int] = Field(None, max_length=2)

    class Narrower(bulk.BulkRequest):
        filter: NarrowerFilter

    bulk.parse({"action": "cancel", "filter": {"ids": [1, 2, 3]}})
    monkeypatch.setattr(bulk, "BulkRequest", Narrower)
    with pytest.raises(ValidationFailed) as caught:
        bulk.parse({"action": "cancel", "filter": {"ids": [1, 2, 3]}})
    assert "filter.ids" in caught.value.fields
