"""OpenAPI for the object responses of ``tenants.api.base``: ``?brief`` and ``?fields``,
``ETag``, ``If-None-Match`` (304), ``If-Match`` (412) and ``Location``.

``ObjectAutoSchema`` documents the parameters, headers and status codes per operation;
``document_partial_objects`` (a postprocessing hook) lets a shaped list or detail answer be a
subset of the full representation: ``anyOf`` the full component and ``<Name>Partial``, the same
properties with none required, plus ``url`` and ``display``.
"""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

BRIEF = OpenApiParameter(
    "brief",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description=(
        "Only the identifying fields: `id`, `url` (the object's absolute URL), `display` (its "
        "name) and a few declared per resource. Not together with `fields`."
    ),
)


def _fields(names: list[str]) -> OpenApiParameter:
    return OpenApiParameter(
        "fields",
        {"type": "array", "minItems": 1, "items": {"type": "string", "enum": names}},
        OpenApiParameter.QUERY,
        style="form",
        explode=False,
        description=(
            "Comma-separated names of the only fields to return (`fields=id,name`); an unknown "
            "name is a 400 naming it. Not together with `brief`."
        ),
    )


IF_NONE_MATCH = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="An ETag of this object: 304 (no body) while it is still current.",
)
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description=(
        "Change only this version: the object's current ETag, or `*` (any). Otherwise 412 "
        "and nothing is written. Without it the write has no precondition."
    ),
)
_ETAG_HELP = "The object's version: send it back in `If-Match` or `If-None-Match`."


def _etag(codes: list[int]) -> OpenApiParameter:
    return OpenApiParameter(
        "ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, description=_ETAG_HELP, response=codes
    )


LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    OpenApiParameter.HEADER,
    description="The created object's absolute URL.",
    response=[201],
)
NOT_MODIFIED = {
    "description": "Not modified: the `If-None-Match` ETag is still current. No body.",
    "headers": {"ETag": {"schema": {"type": "string"}, "description": _ETAG_HELP}},
}
PRECONDITION_FAILED = {
    "description": "`If-Match` does not name the object's current version; nothing is written.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_WRITES = frozenset({"update", "partial_update", "destroy"})


class ObjectAutoSchema(AutoSchema):
    def _action(self) -> str | None:
        if not getattr(self.view, "object_responses", False):
            return None
        return getattr(self.view, "action", None)

    def _conditional_writes(self) -> bool:
        return hasattr(self.view, "check_if_match")

    def get_override_parameters(self):
        params = list(super().get_override_parameters())
        action = self._action()
        if action is None:
            return params
        if self.view.shapes_responses():
            params += [BRIEF, _fields(list(self.view._offered_fields()))]
        if action == "retrieve":
            params += [IF_NONE_MATCH, _etag([200])]
        elif action in _WRITES and self._conditional_writes():
            params += [IF_MATCH] + ([_etag([200])] if action != "destroy" else [])
        elif action in getattr(self.view, "conditional_actions", ()):
            params.append(IF_MATCH)
            if action in getattr(self.view, "object_actions", ()):
                params.append(_etag([200]))
        elif action == "create":
            if self._conditional_writes() or getattr(self.view, "etag_on_create", False):
                params.append(_etag([200, 201]))
            if self.view.has_detail_route():
                params.append(LOCATION)
        return params

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        action = self._action()
        if operation is None or action is None:
            return operation
        responses = operation.setdefault("responses", {})
        if action == "retrieve":
            responses.setdefault("304", NOT_MODIFIED)
        elif (action in _WRITES and self._conditional_writes()) or action in getattr(
            self.view, "conditional_actions", ()
        ):
            responses.setdefault("412", PRECONDITION_FAILED)
        return operation


def _partial(component: dict[str, Any]) -> dict[str, Any]:
    partial = copy.deepcopy(component)
    partial.pop("required", None)
    partial.setdefault("properties", {}).update(
        {
            "url": {"type": "string", "format": "uri", "readOnly": True},
            "display": {"type": "string", "readOnly": True},
        }
    )
    partial["description"] = "With `brief` or `fields`: only the fields asked for."
    return partial


def _name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def document_partial_objects(result, generator, request, public):
    """Where an operation takes ``brief``, its 200 answer may be a partial object."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})

    def either(ref: str) -> dict[str, Any]:
        name = _name(ref)
        if f"{name}Partial" not in schemas:
            schemas[f"{name}Partial"] = _partial(schemas[name])
        return {"anyOf": [{"$ref": ref}, {"$ref": f"#/components/schemas/{name}Partial"}]}

    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            if not any(p.get("name") == "brief" for p in operation.get("parameters", [])):
                continue
            content = operation.get("responses", {}).get("200", {}).get("content", {})
            for media in content.values():
                ref = media.get("schema", {}).get("$ref")
                if ref is None:
                    continue
                component = schemas[_name(ref)]
                results = component.get("properties", {}).get("results")
                if results is not None and "$ref" in results.get("items", {}):
                    results["items"] = either(results["items"]["$ref"])
                elif "anyOf" not in component:
                    media["schema"] = either(ref)
    return result
