"""The agent's durable outbox (SQLite): reports wait here until the control plane has them.

Sequence numbers per source live here too, so a restarted agent goes on counting where it
stopped; the control plane treats a report at or below a source's last sequence as a replay.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping

from factory.wire import OEM, Event, ReportKey


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

    def add_reports(self, reports: list[dict]) -> None:
        """Number each report for its source and store them, in one transaction."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for report in reports:
                    source = report["Oem"][OEM][ReportKey.SOURCE]
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

    def oldest_events(self, limit: int) -> list[tuple[int, Event]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, body FROM event ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(row_id, json.loads(body)) for row_id, body in rows]

    def delete_events(self, ids: list[int]) -> None:
        with self.lock:
            self.db.executemany("DELETE FROM event WHERE id = ?", [(i,) for i in ids])
