"""``events tail``: the tenant's events as they happen, over Server-Sent Events
(``GET /api/v1/events/watch/``). The stream ends now and then (the server's ``timeout``) or
breaks; each reconnect sends ``Last-Event-ID``, so nothing is missed or shown twice."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import click

from factory.cli import output, sse
from factory.cli.client import ApiError, Client, Unreachable, chunks
from factory.cli.session import EXIT_TIMEOUT, Session, note, pass_session

EVENTS = "events/"
WATCH = "events/watch/"
#: Longer than the server's 15 s keepalive: a stream silent for this long is dead.
READ_TIMEOUT = 45.0
BACKOFF_MAX = 30.0
#: How long one stream is asked to last (the API's most: each stream holds a server thread)
#: before the reconnect.
STREAM_SECONDS = 300


def line(event: Mapping[str, Any]) -> str:
    """``2026-12-01T12:00:00Z  workflow.state_changed  acme  workflow 17 "FRA1 upgrade"  {...}``"""
    subject = event.get("subject") or {}
    what = " ".join(str(subject.get(k)) for k in ("type", "id") if subject.get(k) is not None)
    if subject.get("name"):
        what += f" {json.dumps(subject['name'], ensure_ascii=False)}"
    data = event.get("data")
    return "  ".join(
        [
            str(event.get("occurred_at", "")),
            str(event.get("kind", "")),
            str(event.get("tenant") or "-"),
            what or "-",
            output.cell(data, width=200) if data else "",
        ]
    ).rstrip()


def stream(
    client: Client,
    params: list[tuple[str, Any]],
    *,
    deadline: float | None = None,
    stream_seconds: int = STREAM_SECONDS,
) -> Iterator[dict[str, Any]]:
    """Events as they come, across reconnects, until ``deadline`` (``time.monotonic()``) if
    one is given. A refusal (a 4xx other than 429) ends it; a lost stream is reconnected."""
    parser = sse.Parser()
    backoff = 0.0
    while deadline is None or time.monotonic() < deadline:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        query = list(params)
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
            query = [(k, v) for k, v in query if k != "after"]  # the header says where
        left = None if deadline is None else deadline - time.monotonic()
        seconds = stream_seconds if left is None else min(stream_seconds, math.ceil(left))
        query.append(("timeout", max(1, seconds)))
        opened = time.monotonic()
        asked: float | None = None  # what a 429 says to wait
        try:
            response = client.request(
                "GET",
                WATCH,
                params=query,
                headers=headers,
                stream=True,
                timeout=(client.timeout, READ_TIMEOUT),
            )
            with response:
                parser.new_connection()
                for chunk in chunks(response):
                    for event in parser.feed(chunk):
                        backoff = 0.0
                        try:
                            body = json.loads(event.data)
                        except ValueError:
                            note(f"not an event (id {event.id}): {event.data[:80]!r}")
                            continue
                        if isinstance(body, dict):
                            yield body
            if time.monotonic() - opened > 1:
                continue  # the server ended the stream on time: straight back
            problem = "the stream ended at once"
        except Unreachable as exc:
            problem = f"stream lost ({exc.reason})"
        except ApiError as exc:
            if exc.status < 500 and exc.status != 429:
                raise
            problem = f"the server answered {exc}"
            asked = _retry_after(exc)  # too many streams open, or over the rate limit
        backoff = min(max(backoff * 2, 1.0), BACKOFF_MAX)
        if parser.retry_ms is not None:
            backoff = max(backoff, parser.retry_ms / 1000)
        if asked is not None:
            backoff = max(backoff, min(asked, BACKOFF_MAX))
        note(f"{problem}; reconnecting in {backoff:g}s")
        time.sleep(backoff)


def _retry_after(exc: ApiError) -> float | None:
    try:
        return float(exc.retry_after) if exc.retry_after else None
    except ValueError:
        return None


def recent(
    client: Client, params: list[tuple[str, Any]], last: int
) -> tuple[list[dict[str, Any]], int]:
    """The newest ``last`` events that match, oldest first, and the id to follow on from
    (the newest one's, printed or not): the log is oldest first, so they are its last page.
    The list pages by cursor unless asked for offsets; ``offset`` brings the ``count``."""
    head = client.get(EVENTS, [*params, ("limit", 1), ("offset", 0)])
    total = int(head.get("count") or 0) if isinstance(head, dict) else 0
    if total == 0:
        return [], 0
    wanted = max(last, 1)
    page = client.get(EVENTS, [*params, ("limit", wanted), ("offset", max(total - wanted, 0))])
    found = [e for e in page.get("results", []) if isinstance(e, dict)]
    newest = int(found[-1]["id"]) if found else 0
    return (found[-last:] if last else []), newest


@click.group()
def events() -> None:
    """The tenant's events: faults, workflows, access requests, windows."""


@events.command()
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    help="Only this kind (workflow.state_changed, fault.opened, ...); repeat for several.",
)
@click.option("--subject-type", help="Only about this type of subject (workflow, site, ...).")
@click.option("--subject-id", help="Only about this subject (with --subject-type).")
@click.option(
    "-n",
    "--last",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Show this many past events first, then follow.",
)
@click.option("--after", type=click.IntRange(0), help="Start after this event id instead.")
@click.option("--count", type=click.IntRange(1), help="Stop after this many events.")
@click.option("--timeout", type=click.FloatRange(1), help="Stop after SECONDS.")
@click.option(
    "--stream-seconds",
    type=click.IntRange(1, 300),
    default=STREAM_SECONDS,
    show_default=True,
    help="Ask the server to end each stream after SECONDS; the tail reconnects and resumes.",
)
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="A line per event, or one JSON object per line.",
)
@pass_session
def tail(
    session: Session,
    kinds: tuple[str, ...],
    subject_type: str | None,
    subject_id: str | None,
    last: int,
    after: int | None,
    count: int | None,
    timeout: float | None,
    stream_seconds: int,
    fmt: str,
) -> None:
    """Follow events as they happen; reconnects by itself and resumes where it left off."""
    params: list[tuple[str, Any]] = []
    if len(kinds) == 1:
        params.append(("kind", kinds[0]))
    elif kinds:
        params.append(("kind__in", ",".join(kinds)))
    if subject_type:
        params.append(("subject_type", subject_type))
    if subject_id:
        params.append(("subject_id", subject_id))
    client = session.client()
    deadline = time.monotonic() + timeout if timeout else None
    seen = 0
    if after is None:
        past, after = recent(client, params, last)
    else:
        past = []
    params.append(("after", after))
    following = stream(client, params, deadline=deadline, stream_seconds=stream_seconds)
    for event in itertools.chain(past, following):
        if fmt == "json":
            click.echo(json.dumps(event, ensure_ascii=False, default=str))
        else:
            click.echo(line(event))
        seen += 1
        if count is not None and seen >= count:
            return
    if count is not None:
        note(f"{seen} of {count} events in {timeout:g}s")
        raise click.exceptions.Exit(EXIT_TIMEOUT)
