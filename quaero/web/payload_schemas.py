"""Each submittable type's payload schema for the OpenAPI document, generated from the
executor's `Payload` model.

pydantic writes JSON Schema 2020-12; OpenAPI 3.0 wants its own dialect, so the schema is
rewritten: `anyOf [X, null]` becomes X with `nullable`, numeric exclusive bounds become
boolean ones, `const` becomes a one-value `enum`, and nested models become components
named `Payload.<type>.<Model>` (so two plugins' `Item` models never collide).
"""

from __future__ import annotations

from typing import Any

from quaero.executors.base import REGISTRY, public_types

PREFIX = "#/components/schemas/"


def component_name(type_name: str) -> str:
    """The component that holds a type's payload schema."""
    return f"Payload.{type_name}"


def _nullable(schema: dict[str, Any], options: list[Any]) -> dict[str, Any]:
    """`anyOf` without its `{"type": "null"}` member, the rest marked nullable."""
    rest = [option for option in options if option != {"type": "null"}]
    if len(rest) == len(options):
        return {**schema, "anyOf": rest}
    if len(rest) == 1 and "$ref" in rest[0]:
        return {**schema, "allOf": rest, "nullable": True}  # 3.0: no siblings of $ref
    if len(rest) == 1:
        return {**rest[0], **schema, "nullable": True}
    return {**schema, "anyOf": rest, "nullable": True}


def to_openapi30(schema: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema rewritten in OpenAPI 3.0's dialect."""
    if isinstance(schema, list):
        return [to_openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "examples":
            if value:
                out["example"] = value[0]
        elif key == "prefixItems":
            continue  # tuples: 3.0 has no per-position items; "items" still applies
        elif key in ("properties", "patternProperties"):
            out[key] = {name: to_openapi30(sub) for name, sub in value.items()}
        else:
            out[key] = to_openapi30(value)
    if "anyOf" in out:
        options = out.pop("anyOf")
        out = _nullable(out, options)
    if isinstance(out.get("type"), list):  # ["string", "null"]
        kinds = [kind for kind in out["type"] if kind != "null"]
        out["type"] = kinds[0] if len(kinds) == 1 else out["type"]
        out["nullable"] = "null" in schema["type"] or out.get("nullable", False)
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}]
    return out


def payload_schemas(demo_types: bool) -> dict[str, Any]:
    """`components.schemas` entries: `Payload.<type>` for every submittable type (a
    plain object for a type without a model), plus the models those refer to."""
    schemas: dict[str, Any] = {}
    for name in public_types(demo_types):
        model = REGISTRY[name].Payload
        if model is None:
            schemas[component_name(name)] = {
                "type": "object",
                "description": f"any JSON object: {name} declares no Payload model",
            }
            continue
        generated = model.model_json_schema(ref_template=PREFIX + component_name(name) + ".{model}")
        for nested, sub in generated.pop("$defs", {}).items():
            schemas[f"{component_name(name)}.{nested}"] = to_openapi30(sub)
        schemas[component_name(name)] = to_openapi30(generated)
    return schemas


def payload_property(demo_types: bool, limits: str) -> dict[str, Any]:
    """The `payload` of `POST /api/jobs`: one of the types' payload schemas."""
    names = public_types(demo_types)
    listed = ", ".join(f"{name} → {component_name(name)}" for name in names)
    return {
        "description": (
            "validated by the type's Payload model, whose schema is the component named "
            f"after the type ({listed}); {limits}"
        ),
        "anyOf": [{"$ref": PREFIX + component_name(name)} for name in names],
    }
