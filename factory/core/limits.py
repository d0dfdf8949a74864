"""Limits on what a request may carry, checked before anything reads it:

- its body's size (``settings.REQUEST_MAX_BODY_BYTES``, larger for the paths in
  ``settings.REQUEST_BODY_LIMITS``, e.g. telemetry batches): over it is a 413 naming the limit,
  answered from the ``Content-Length`` before the body is read
  (``factory.core.middleware.RequestBodyLimitMiddleware``);
- the nesting of its JSON (``settings.JSON_MAX_DEPTH``): deeper is refused before a parser (or
  anything after it) recurses (``json_depth_exceeds``; the API's ``JSONParser`` and telemetry
  ingest call it);
- integers the database cannot hold (beyond 64 bits): ``BIGINT_MIN`` / ``BIGINT_MAX``, and the
  parameters of a request that hold one (``out_of_range_params``, for the error handler).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from django.conf import settings

from tenants.errors import DomainError

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def body_limit(path: str) -> int:
    """The largest body, in bytes, a request to ``path`` may carry."""
    for prefix, limit in settings.REQUEST_BODY_LIMITS.items():
        if path.startswith(prefix):
            return int(limit)
    return int(settings.REQUEST_MAX_BODY_BYTES)


def _size(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor and n % (factor // 16) == 0:
            return f"{n / factor:g} {unit}"
    return f"{n:,} bytes"


class PayloadTooLarge(DomainError):
    """413: the body is larger than this path takes."""

    status: ClassVar[int] = 413
    default_code: ClassVar[str] = "too_large"
    default_message: ClassVar[str] = "The request body is too large."


def too_large(length: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is {length:,} bytes; at most {limit:,} bytes ({_size(limit)}) "
        "are accepted here."
    )


# --- JSON nesting -----------------------------------------------------------------------------

#: Brackets as "(" and ")", quotes kept, everything else dropped (``bytes.translate``).
_BRACKETS = bytes.maketrans(b"[]{}", b"()()")
_OTHERS = bytes(b for b in range(256) if b not in b'[]{}"')


def json_depth_exceeds(data: bytes | bytearray | memoryview, limit: int) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects more than ``limit`` deep.

    Recursion-free and in C passes over the bytes (no Python loop per byte): escaped backslashes
    and quotes are dropped (so every quote left opens or closes a string), then all but brackets
    and quotes, then the strings. Of the brackets left, each pass removes every innermost pair
    ``()``: the pairs of a structure ``limit`` deep are gone after ``limit`` passes, and one
    still there is deeper. Brackets never closed (malformed JSON, which the parser refuses, but
    only after descending into them) count too.
    """
    data = bytes(data)
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = b"".join(data.translate(_BRACKETS, _OTHERS).split(b'"')[::2])
    if len(skeleton) <= limit:
        return False
    if b"(" * (limit + 1) in skeleton:
        return True
    for _ in range(limit):
        reduced = skeleton.replace(b"()", b"")
        if len(reduced) == len(skeleton):
            break
        skeleton = reduced
    else:
        if b"()" in skeleton:
            return True
    return skeleton.count(b"(") > limit


def too_deep_message(limit: int) -> str:
    return f"JSON nested more than {limit} levels deep is not accepted."


# --- integers the database can hold -------------------------------------------------------------

_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def beyond_bigint(value: object) -> bool:
    """Whether ``value`` (a query parameter, a path part) is a number past 64 bits."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return False
    if isinstance(value, str):
        if len(value) > 400 or not _NUMBER.fullmatch(value):
            return False
        try:
            number = Decimal(value)
        except InvalidOperation:
            return False
        return not (BIGINT_MIN <= number <= BIGINT_MAX)
    return not (BIGINT_MIN <= value <= BIGINT_MAX)


def out_of_range_params(request: Any) -> list[str]:
    """The query parameters and URL path parts of ``request`` that hold a number past 64 bits."""
    names: list[str] = []
    query = getattr(request, "GET", None)
    if query is not None:
        names += [name for name, values in query.lists() if any(map(beyond_bigint, values))]
    match = getattr(request, "resolver_match", None)
    if match is not None:
        names += [name for name, value in match.kwargs.items() if beyond_bigint(value)]
    return names
