"""JSON rendering with orjson (fast, strict) instead of the stdlib encoder."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import orjson
from rest_framework.renderers import JSONRenderer


def _default(value):
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    # Lazy translation strings, country codes and other objects that render as text.
    return str(value)


class OrjsonRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS)
