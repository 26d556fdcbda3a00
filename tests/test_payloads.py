"""Typed payloads: an executor's `Payload` model (or the older `payload_model`) validates
submissions with a 400 naming the field, and the OpenAPI document carries each
submittable type's payload schema, generated from the model as OpenAPI 3.0."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from quaero.executors.base import REGISTRY, Executor, register
from quaero.executors.crawler import CrawlPayload
from quaero.web.openapi import document


class Line(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class Invoice(Executor):
    """A test type with a nested model, a nullable field, a constant and an exclusive bound."""

    type = "invoice_test"

    class Payload(BaseModel):
        customer: str = Field(description="who pays")
        lines: list[Line] = Field(min_length=1)
        discount: float | None = Field(None, gt=0, lt=1)
        note: Line | None = None
        currency: Literal["EUR"] = "EUR"

    def run(self, ctx):
        return None


class OldStyle(Executor):
    type = "old_style_test"
    payload_model = CrawlPayload


@pytest.fixture
def invoice_type() -> Iterator[None]:
    """Invoice registered for the test only."""
    register(Invoice)
    yield
    REGISTRY.pop(Invoice.type, None)


def test_payload_and_payload_model_name_the_same_model():
    register(OldStyle)
    try:
        assert OldStyle.Payload is CrawlPayload
    finally:
        REGISTRY.pop(OldStyle.type)
    assert REGISTRY["crawler"].Payload is REGISTRY["crawler"].payload_model is CrawlPayload

    class Both(Executor):
        type = "both_test"
        Payload = Line
        payload_model = CrawlPayload

    with pytest.raises(ValueError, match="different models"):
        register(Both)

    class NotAModel(Executor):
        type = "not_a_model_test"
        Payload = dict

    with pytest.raises(ValueError, match="pydantic"):
        register(NotAModel)
    assert "both_test" not in REGISTRY and "not_a_model_test" not in REGISTRY


def test_a_bad_payload_is_a_400_naming_each_field(client, invoice_type):
    response = client.post(
        "/api/jobs",
        json={"type": "invoice_test", "payload": {"lines": [{"sku": "", "quantity": 0}]}},
    )
    assert response.status_code == 400
    fields = response.get_json()["error"]["fields"]
    assert set(fields) == {"payload.customer", "payload.lines.0.sku", "payload.lines.0.quantity"}
    good = {"customer": "ACME", "lines": [{"sku": "a", "quantity": 2}]}
    response = client.post("/api/jobs", json={"type": "invoice_test", "payload": good})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["payload"] == {
        **good,
        "discount": None,
        "note": None,
        "currency": "EUR",
    }


def walk(schema) -> Iterator[dict]:
    if isinstance(schema, dict):
        yield schema
        for value in schema.values():
            yield from walk(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from walk(value)


def test_each_submittable_type_has_its_payload_schema_in_openapi(invoice_type):
    doc = document(demo_types=True)
    schemas = doc["components"]["schemas"]
    from quaero.executors.base import public_types

    for name in public_types(True):
        assert f"Payload.{name}" in schemas, name
    assert "Payload.crawl_page" not in schemas  # not submittable
    invoice = schemas["Payload.invoice_test"]
    assert invoice["required"] == ["customer", "lines"]
    assert invoice["properties"]["customer"]["description"] == "who pays"
    assert invoice["properties"]["lines"]["items"] == {
        "$ref": "#/components/schemas/Payload.invoice_test.Line"
    }
    assert schemas["Payload.invoice_test.Line"]["required"] == ["sku", "quantity"]
    # OpenAPI 3.0, not JSON Schema 2020-12: nullable, boolean exclusive bounds, enum
    assert invoice["properties"]["discount"] == {
        "type": "number",
        "nullable": True,
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
        "exclusiveMaximum": True,
        "default": None,
        "title": "Discount",
    }
    assert invoice["properties"]["note"]["nullable"] is True
    assert invoice["properties"]["currency"]["enum"] == ["EUR"]
    crawler = schemas["Payload.crawler"]
    assert crawler["required"] == ["url"] and crawler["additionalProperties"] is False
    assert crawler["properties"]["max_pages"]["nullable"] is True
    for node in walk(schemas):
        assert not {"const", "$defs", "prefixItems", "examples"} & set(node), node
        assert node.get("type") != "null" and not isinstance(node.get("type"), list), node
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(bound, True), bool), node
        if "$ref" in node:
            assert set(node) == {"$ref"}, node  # 3.0 ignores a $ref's siblings
            assert node["$ref"].removeprefix("#/components/schemas/") in schemas, node
    # the submission's payload is one of the types' payloads, each named by its type
    body = doc["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]
    payload = body["schema"]["properties"]["payload"]
    refs = {ref["$ref"].rsplit("/", 1)[1] for ref in payload["anyOf"]}
    assert refs == {f"Payload.{name}" for name in public_types(True)}
    assert "Payload.invoice_test" in payload["description"]
