"""The API's JSON parser: DRF's, but JSON nested deeper than ``settings.JSON_MAX_DEPTH`` is a 400
(``too_deep``) before anything parses (and recurses into) it."""

from __future__ import annotations

import codecs
import io
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from factory.core.limits import json_depth_exceeds, too_deep_message


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        data = stream.read() if stream is not None else b""
        try:
            utf8 = codecs.lookup(encoding).name == "utf-8"
        except LookupError:
            raise ParseError(f"JSON parse error - unknown charset {encoding!r}") from None
        if not utf8:
            try:  # count brackets in UTF-8, where no other character contains their bytes
                data = data.decode(encoding).encode("utf-8")
            except UnicodeError as exc:
                raise ParseError(f"JSON parse error - {exc}") from None
            parser_context = {**parser_context, "encoding": "utf-8"}
        limit = settings.JSON_MAX_DEPTH
        if json_depth_exceeds(data, limit):
            raise ParseError(too_deep_message(limit), code="too_deep")
        return super().parse(io.BytesIO(data), media_type, parser_context)
