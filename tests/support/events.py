"""Events in tests: numbering them inside a test's transaction, and reading a watch stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db import connection


def commit_events() -> None:
    """Fire the deferred trigger that numbers events (it runs at COMMIT, which a plain
    ``django_db`` test never reaches). Events written after it are numbered at once, until
    ``defer_events()``."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def defer_events() -> None:
    """Events written from now on are numbered at COMMIT again, as outside tests."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@dataclass
class Frame:
    """One server-sent event as a client reads it (comments are counted, not kept)."""

    id: int | None = None
    event: str | None = None
    data: dict[str, Any] | None = None
    retry: int | None = None
    fields: list[str] = field(default_factory=list)


def parse_stream(text: str) -> tuple[list[Frame], int]:
    """The frames of a ``text/event-stream`` body and how many comment lines (``: keepalive``)
    it had. Strict: a line that is neither a field we send nor a comment fails the test."""
    frames, comments = [], 0
    blocks = text.split("\n\n")
    assert blocks[-1] == "", f"the stream ends mid-frame: {blocks[-1]!r}"
    for block in blocks[:-1]:
        frame = Frame()
        for line in block.split("\n"):
            if line.startswith(":"):
                comments += 1
                continue
            name, _, value = line.partition(": ")
            frame.fields.append(name)
            if name == "id":
                frame.id = int(value)
            elif name == "event":
                frame.event = value
            elif name == "data":
                frame.data = json.loads(value)
            elif name == "retry":
                frame.retry = int(value)
            else:
                raise AssertionError(f"unexpected line in the stream: {line!r}")
        if frame.fields:
            frames.append(frame)
    return frames, comments


def events_of(frames: list[Frame]) -> list[Frame]:
    """The frames that carry an event (not the ``retry`` advice)."""
    return [f for f in frames if f.data is not None]
