"""``key=value`` arguments, and values typed the way the API's schema declares them. Pure.

Typing here is a convenience, not a check: a value that does not read as its declared type is
sent as the string it was, and the service (the one place that checks a workflow's spec)
refuses it naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0"})


class BadPair(ValueError):
    """An argument that is not ``key=value``."""


def split_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadPair(f"{text!r} is not key=value")
    return key, value


def pairs(texts: Iterable[str]) -> list[tuple[str, str]]:
    """Query parameters from ``-f key=value``; a repeated key stays repeated (the API ORs)."""
    return [split_pair(t) for t in texts]


def loose(text: str) -> Any:
    """A value of unknown type: JSON if it reads as JSON (``5``, ``true``, ``[1,2]``), else the
    string itself (``DE``, ``2026.11.1``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def typed(text: str, schema: Mapping[str, Any] | None) -> Any:
    """``text`` as the JSON Schema ``schema`` declares it (``integer``, ``number``,
    ``boolean``, ``array``, ``string``); without a schema, :func:`loose`."""
    if not schema or "type" not in schema:
        return loose(text)
    kind = schema["type"]
    if kind == "string":
        return text
    if kind == "boolean":
        word = text.strip().lower()
        return True if word in TRUE else False if word in FALSE else text
    if kind in ("integer", "number"):
        value = loose(text)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return text
        return value
    if kind == "array":
        if text.strip().startswith("["):
            return loose(text)
        items = schema.get("items") or {}
        return [typed(part.strip(), items) for part in text.split(",") if part.strip()]
    return loose(text)


def typed_pairs(
    texts: Iterable[str], properties: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """``k=v`` arguments as a JSON object, each value typed by ``properties[k]`` when known."""
    known = properties or {}
    return {key: typed(value, known.get(key)) for key, value in pairs(texts)}


def schema_properties(document: Mapping[str, Any], component: str, field: str) -> dict[str, Any]:
    """The properties of ``component.field`` in an OpenAPI document (``$ref`` followed), e.g.
    the declared parameters of a workflow's ``spec``; empty if the schema does not say."""
    schemas = document.get("components", {}).get("schemas", {})

    def resolve(node: Any) -> Any:
        seen = 0
        while isinstance(node, Mapping) and "$ref" in node and seen < 10:
            node = schemas.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
            seen += 1
        if isinstance(node, Mapping) and "allOf" in node and len(node["allOf"]) == 1:
            return resolve(node["allOf"][0])
        return node

    holder = resolve(schemas.get(component, {}))
    node = resolve(holder.get("properties", {}).get(field, {})) if holder else {}
    properties = node.get("properties", {}) if isinstance(node, Mapping) else {}
    return {k: resolve(v) for k, v in properties.items()}
