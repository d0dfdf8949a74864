"""The agent's durable outbox (SQLite): reports wait here until the control plane has them.

Reports are numbered per source within a numbering epoch: a random identity chosen each time
the outbox is opened (kept in it, and stamped on every report as ``ReportEpoch``). The control
plane keeps a watermark per (source, epoch) and treats a report at or below its epoch's as a
replay. The numbers themselves go on rising across restarts of one outbox (a new outbox numbers
from 1): the epoch alone tells a control plane that knows epochs that a new stream began, and
one older than epochs, which ignores them, still sees each source's numbers increase. A
report that waited in the outbox across a restart keeps the epoch and number it was sent with
(a resend is still a replay), while nothing numbered after a restart, a deleted or restored
outbox, or by a second agent of the site can collide with numbers the control plane has seen
in that epoch: no new report is ever taken for a replay. The cost is one watermark
row per source and start, which the control plane prunes once unused.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Mapping

from factory.wire import OEM, Event, ReportKey

#: Where a report carries its epoch (a JSON path for SQLite's json functions).
_EPOCH_PATH = f"$.Oem.{OEM}.{ReportKey.EPOCH}"


def new_epoch() -> str:
    """A numbering epoch: 64 random bits, so two agents or two starts never share one."""
    return secrets.token_hex(8)


class Outbox:
    def __init__(self, path: str, max_reports: int = 200_000):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS sequence (source TEXT PRIMARY KEY, last INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS report (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                               body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                              body TEXT NOT NULL);
            """
        )
        self.lock = threading.Lock()
        self.max_reports = max_reports
        self.dropped = 0
        self.epoch = self._begin_epoch()

    def _begin_epoch(self) -> str:
        """A new numbering epoch for this run; each source's numbers carry on from the last
        (so a control plane older than epochs takes none for a replay). Reports still waiting
        keep their epoch; those of an outbox older than epochs are marked as the legacy epoch
        ("") their numbers belong to."""
        epoch = new_epoch()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS identity (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "epoch TEXT NOT NULL)"
            )
            if self.db.execute("SELECT epoch FROM identity").fetchone() is None:
                self.db.execute(
                    "UPDATE report SET body = json_set(body, ?, '') "
                    "WHERE json_extract(body, ?) IS NULL",
                    (_EPOCH_PATH, _EPOCH_PATH),
                )
            self.db.execute("INSERT OR REPLACE INTO identity (id, epoch) VALUES (1, ?)", (epoch,))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return epoch

    def add_reports(self, reports: list[dict]) -> None:
        """Number each report for its source in this run's epoch and store them, in one
        transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for report in reports:
                    oem = report["Oem"][OEM]
                    source = oem[ReportKey.SOURCE]
                    oem[ReportKey.EPOCH] = self.epoch
                    row = self.db.execute(
                        "SELECT last FROM sequence WHERE source = ?", (source,)
                    ).fetchone()
                    number = (row[0] if row else 0) + 1
                    self.db.execute(
                        "INSERT INTO sequence (source, last) VALUES (?, ?) "
                        "ON CONFLICT(source) DO UPDATE SET last = excluded.last",
                        (source, number),
                    )
                    report["ReportSequence"] = str(number)
                    self.db.execute("INSERT INTO report (body) VALUES (?)", (json.dumps(report),))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._trim()

    def _trim(self) -> None:
        """A site cut off for days: keep the newest ``max_reports``, count what is dropped."""
        (count,) = self.db.execute("SELECT count(*) FROM report").fetchone()
        if count > self.max_reports:
            excess = count - self.max_reports
            self.db.execute(
                "DELETE FROM report WHERE id IN (SELECT id FROM report ORDER BY id LIMIT ?)",
                (excess,),
            )
            self.dropped += excess

    def oldest_reports(self, limit: int) -> list[tuple[int, dict]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, body FROM report ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(row_id, json.loads(body)) for row_id, body in rows]

    def delete_reports(self, ids: list[int]) -> None:
        with self.lock:
            self.db.executemany("DELETE FROM report WHERE id = ?", [(i,) for i in ids])

    def pending_reports(self) -> int:
        with self.lock:
            return self.db.execute("SELECT count(*) FROM report").fetchone()[0]

    def add_event(self, event: Mapping[str, object]) -> None:
        with self.lock:
            self.db.execute("INSERT INTO event (body) VALUES (?)", (json.dumps(event),))

    def oldest_events(self, limit: int, kind: str | None = None) -> list[tuple[int, Event]]:
        """The oldest waiting events (of one ``kind`` only, when given: leaks go first)."""
        with self.lock:
            if kind is None:
                rows = self.db.execute(
                    "SELECT id, body FROM event ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self.db.execute(
                    "SELECT id, body FROM event WHERE json_extract(body, '$.kind') = ? "
                    "ORDER BY id LIMIT ?",
                    (kind, limit),
                ).fetchall()
        return [(row_id, json.loads(body)) for row_id, body in rows]

    def delete_events(self, ids: list[int]) -> None:
        with self.lock:
            self.db.executemany("DELETE FROM event WHERE id = ?", [(i,) for i in ids])
