"""Server-Sent Events, parsed as the HTML standard says (§9.2.6). Pure: bytes in, events out.

The parser outlives one connection: its ``last_event_id`` is what the next connection sends as
``Last-Event-ID``, so a reconnect resumes where the last one left off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    data: str
    event: str = "message"
    id: str = ""


class Parser:
    def __init__(self, last_event_id: str = "") -> None:
        self.last_event_id = last_event_id
        #: The server's ``retry:`` advice, in milliseconds (None: it gave none).
        self.retry_ms: int | None = None
        self._buffer = b""
        self._pending_cr = False
        self._reset()

    def _reset(self) -> None:
        self._data: list[str] = []
        self._event = ""

    def new_connection(self) -> None:
        """A half-received line or event dies with its connection."""
        self._buffer = b""
        self._pending_cr = False
        self._reset()

    def feed(self, chunk: bytes) -> list[Event]:
        """The events that ``chunk`` completes (a line may arrive in pieces; CRLF, LF and CR
        all end one)."""
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split across chunks
        self._pending_cr = False
        self._buffer += chunk
        events: list[Event] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                break
            end, width = cut
            # a CR last in what has come may be the first half of a CRLF
            self._pending_cr = width == 1 and end + 1 == len(self._buffer) and self._ends_cr()
            raw, self._buffer = self._buffer[:end], self._buffer[end + width :]
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _ends_cr(self) -> bool:
        return self._buffer.endswith(b"\r")

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. the keepalive
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event
        self._reset()
        if not data:
            return None
        return Event("\n".join(data), event or "message", self.last_event_id)


def _line_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first line of ``buffer`` ends and how wide its end is (CRLF 2, LF or CR 1);
    None while it has not ended. A CR last in the buffer ends a line (its LF, if it is a CRLF,
    is dropped when it comes)."""
    lf, cr = buffer.find(b"\n"), buffer.find(b"\r")
    if lf == -1 and cr == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, 1
    if cr + 1 < len(buffer) and buffer[cr + 1 : cr + 2] == b"\n":
        return cr, 2
    return cr, 1
