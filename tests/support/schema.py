"""The published OpenAPI schema, generated once per test run, and a check that an answer is
what the schema says it is (the same check Schemathesis makes against a live server)."""

from __future__ import annotations

import functools
import re

from drf_spectacular.generators import SchemaGenerator
from openapi_schema_validator import OAS30Validator


@functools.cache
def openapi_schema() -> dict:
    """What ``manage.py spectacular`` writes (and ``/api/schema/`` serves), as a dict."""
    return SchemaGenerator().get_schema(request=None, public=True)


def _operation(path: str, method: str) -> dict:
    paths = openapi_schema()["paths"]
    path = path.split("?")[0]
    for template, item in paths.items():
        pattern = "^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return item[method.lower()]
    raise AssertionError(f"{path} is not in the schema")


def response_schema(path: str, method: str, status: int) -> dict:
    responses = _operation(path, method)["responses"]
    answer = responses.get(str(status))
    assert answer is not None, f"{method} {path}: {status} is not documented"
    return answer["content"]["application/json"]["schema"]


def assert_conforms(response, method: str = "GET") -> None:
    """The response's JSON body validates against its operation's schema for its status."""
    path = response.wsgi_request.path
    schema = {
        **response_schema(path, method, response.status_code),
        "components": openapi_schema()["components"],
    }
    errors = sorted(OAS30Validator(schema).iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
