"""The OpenAPI schema is one worth generating a client from: it is valid OpenAPI 3.0 (as
``manage.py spectacular`` writes it), every response has a typed shape, and each enum has one
name and one set of values wherever it appears."""

from __future__ import annotations

import yaml
from django.core.management import call_command
from openapi_spec_validator import validate

from factory.inventory.choices import ChipHealth
from factory.telemetry.services import MAX_POINTS
from tests.support.schema import openapi_schema

REF = "#/components/schemas/"
# Objects that are free-form by design, each with its reason: (component prefix, property).
FREE_FORM = {
    ("JobRun", "summary"),  # each scheduled job's own figures (JobRun, JobRunPartial)
}


def test_the_generated_schema_is_valid_openapi_without_warnings(tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(path), "--fail-on-warn")
    spec = yaml.safe_load(path.read_text())
    assert spec["openapi"].startswith("3.0")
    validate(spec)  # openapi-spec-validator: raises on the first problem


def _untyped(schema: dict, components: dict, where: str, seen: frozenset = frozenset()):
    """Places in a response schema that say "an object" (or "a list") and nothing more."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        if name not in seen:
            yield from _untyped(components[name], components, name, seen | {name})
        return
    for key in ("allOf", "oneOf", "anyOf"):
        for part in schema.get(key, []):
            yield from _untyped(part, components, where, seen)
    kind = schema.get("type")
    if kind == "object":
        extra = schema.get("additionalProperties")
        if not schema.get("properties") and not extra:
            yield where
        if isinstance(extra, dict) and extra:
            yield from _untyped(extra, components, f"{where}.*", seen)
    if kind == "array":
        if not schema.get("items"):
            yield f"{where}[]"
        else:
            yield from _untyped(schema["items"], components, f"{where}[]", seen)
    for name, prop in schema.get("properties", {}).items():
        if not any(where.startswith(c) and name == p for c, p in FREE_FORM):
            yield from _untyped(prop, components, f"{where}.{name}", seen)


def test_every_response_is_typed():
    spec = openapi_schema()
    components = spec["components"]["schemas"]
    bare = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, answer in operation.get("responses", {}).items():
                if not status.startswith("2"):
                    continue
                content = answer.get("content")
                if content is None:
                    assert status == "204", f"{method} {path} {status}: no body documented"
                    continue
                for media, body in content.items():
                    if "json" not in media:
                        continue
                    assert body.get("schema"), f"{method} {path} {status}: no schema"
                    where = f"{method.upper()} {path} {status}"
                    bare += [f"{where}: {w}" for w in _untyped(body["schema"], components, "")]
    assert not bare, "\n".join(bare)


def _props(name: str) -> dict:
    return openapi_schema()["components"]["schemas"][name]["properties"]


def _enum_ref(prop: dict) -> str:
    refs = [prop.get("$ref")] + [p.get("$ref") for p in prop.get("allOf", prop.get("oneOf", []))]
    return next(r.removeprefix(REF) for r in refs if r and r != f"{REF}NullEnum")


def test_chip_health_is_one_string_enum_everywhere():
    schemas = openapi_schema()["components"]["schemas"]
    assert schemas["ChipHealthEnum"]["type"] == "string"
    assert schemas["ChipHealthEnum"]["enum"] == list(ChipHealth.values)
    assert _enum_ref(_props("Chip")["health"]) == "ChipHealthEnum"
    reading = _props("ChipReading")
    assert _enum_ref(reading["health"]) == "ChipHealthEnum"
    assert _enum_ref(reading["reported_health"]) == "ChipHealthEnum"
    assert _enum_ref(_props("ChipValues")["health"]["items"]) == "ChipHealthEnum"
    # the capacity counts are by the same names
    assert set(_props("ChipCounts")) == {"total", *ChipHealth.values}


def test_each_choice_set_has_one_name():
    schemas = openapi_schema()["components"]["schemas"]
    names: dict[tuple, list[str]] = {}
    for name, schema in schemas.items():
        if "enum" in schema and name != "NullEnum":
            names.setdefault(tuple(sorted(map(str, schema["enum"]))), []).append(name)
    assert not {values: n for values, n in names.items() if len(n) > 1}


def test_the_telemetry_series_says_when_it_is_cut():
    spec = openapi_schema()
    operation = spec["paths"]["/api/v1/ultraservers/{id}/telemetry/"]["get"]
    limit = next(p for p in operation["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == MAX_POINTS
    series = spec["components"]["schemas"]["TelemetrySeries"]
    assert {"truncated", "next_start", "limit"} <= set(series["required"])
    assert series["properties"]["next_start"]["nullable"] is True
