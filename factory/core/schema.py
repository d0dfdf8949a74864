"""OpenAPI post-processing: document the one error shape on every operation, so clients (and
Schemathesis) can rely on it."""

from __future__ import annotations

ERROR_ITEM = {
    "type": "object",
    "required": ["field", "code", "message"],
    "properties": {
        "field": {
            "type": "string",
            "nullable": True,
            "description": "Dotted path of the field at fault; null for the whole request.",
        },
        "code": {"type": "string", "description": "Machine-readable rule or error code."},
        "message": {"type": "string"},
    },
}
ERROR = {
    "type": "object",
    "required": ["status", "code", "message", "errors"],
    "properties": {
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "message": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorItem"}},
    },
}
_DESCRIPTIONS = {
    "400": "Invalid input; `errors` names each field and rule.",
    "401": "Missing, invalid, expired or revoked credentials.",
    "403": "Authenticated, but the role or token scope does not allow this.",
    "404": "No such object, or it belongs to another tenant.",
    "409": "Conflicts with the current state (e.g. the object is still in use).",
    "413": "The request body is over the limit (named in the message).",
    "429": "Over the rate limit; `Retry-After` says when to try again.",
}
_UNSAFE = {"post", "put", "patch", "delete"}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}


def add_error_responses(result, generator, request, public):
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorItem"] = ERROR_ITEM
    schemas["Error"] = ERROR
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = ["400", "401", "403", "404", "429"]
            if method in _UNSAFE:
                codes += ["409", "413"]
            for code in codes:
                response = operation["responses"].setdefault(
                    code, {"description": _DESCRIPTIONS[code]}
                )
                # A view's own words for a refusal (its description) keep the one body.
                response.setdefault(
                    "content",
                    {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                )
                if code == "429":
                    response.setdefault("headers", {}).setdefault("Retry-After", RETRY_AFTER)
    return result
