"""Entity tags of object representations, and the two ways a request states one.

An object's ``ETag`` is a strong validator: a hash of what it is (model and primary key) and of
its full representation, as ``GET`` on its detail URL returns it. Any change to what a client
could see changes it, a write included; the same object read twice unchanged has the same tag.

- ``If-Match`` (``PUT``/``PATCH``/``DELETE``): strong comparison; ``*`` matches any existing
  object; a value that is not an entity tag matches nothing.
- ``If-None-Match`` (``GET``): weak comparison; a match is a 304.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from django.db import models

_TAG = re.compile(r'(W/)?"([^"]*)"')


def entity_tag(instance: models.Model, representation: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(f"{instance._meta.label_lower}:{instance.pk}\n".encode())
    digest.update(
        json.dumps(
            representation, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False
        ).encode()
    )
    return f'"{digest.hexdigest()[:40]}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """``(weak, opaque)`` for each entity tag in a header; anything else in it is ignored."""
    return [(bool(weak), opaque) for weak, opaque in _TAG.findall(header)]


def if_match(header: str, etag: str) -> bool:
    """Does an ``If-Match`` value hold for the current ``etag`` (strong comparison)?"""
    if header.strip() == "*":
        return True
    return any(not weak and f'"{opaque}"' == etag for weak, opaque in _tags(header))


def if_none_match_fails(header: str | None, etag: str) -> bool:
    """Does an ``If-None-Match`` value name the current ``etag`` (weak comparison), so that a
    ``GET`` answers 304?"""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(f'"{opaque}"' == etag for _, opaque in _tags(header))
