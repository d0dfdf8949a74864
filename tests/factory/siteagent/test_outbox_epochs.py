"""The outbox numbers reports in an epoch of its own, new at every start (no database)."""

from __future__ import annotations

import json
import sqlite3

from factory.siteagent.outbox import Outbox
from factory.wire import OEM, ReportKey


def reading(source: str) -> dict:
    return {"Id": "PduMetrics", "Oem": {OEM: {ReportKey.SOURCE: source, ReportKey.FEEDS: {}}}}


def numbered(outbox: Outbox) -> list[tuple[str, str, str]]:
    return [
        (r["Oem"][OEM][ReportKey.SOURCE], r["Oem"][OEM][ReportKey.EPOCH], r["ReportSequence"])
        for _, r in outbox.oldest_reports(100)
    ]


def test_every_report_carries_the_outboxs_epoch_and_counts_per_source(tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.sqlite3"))
    assert len(outbox.epoch) == 16
    outbox.add_reports([reading("A"), reading("B")])
    outbox.add_reports([reading("A")])
    e = outbox.epoch
    assert numbered(outbox) == [("A", e, "1"), ("B", e, "1"), ("A", e, "2")]


def test_a_restart_numbers_in_a_new_epoch_and_waiting_reports_keep_theirs(tmp_path):
    """The numbers go on rising across the restart: a control plane older than epochs (it
    ignores them) takes none of the new reports for a replay."""
    path = str(tmp_path / "outbox.sqlite3")
    first = Outbox(path)
    first.add_reports([reading("A"), reading("A")])
    first.db.close()
    again = Outbox(path)
    assert again.epoch != first.epoch
    again.add_reports([reading("A"), reading("B")])
    assert numbered(again) == [
        ("A", first.epoch, "1"),
        ("A", first.epoch, "2"),
        ("A", again.epoch, "3"),
        ("B", again.epoch, "1"),
    ]


def test_two_outboxes_of_one_site_never_share_an_epoch(tmp_path):
    epochs = {Outbox(str(tmp_path / f"{i}.sqlite3")).epoch for i in range(20)}
    assert len(epochs) == 20


def test_an_outbox_from_before_epochs_marks_its_waiting_reports_as_the_legacy_epoch(tmp_path):
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE sequence (source TEXT PRIMARY KEY, last INTEGER NOT NULL);
        CREATE TABLE report (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
        CREATE TABLE event (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
        INSERT INTO sequence VALUES ('A', 41);
        """
    )
    old = {**reading("A"), "ReportSequence": "41"}
    db.execute("INSERT INTO report (body) VALUES (?)", (json.dumps(old),))
    db.commit()
    db.close()

    outbox = Outbox(str(path))
    outbox.add_reports([reading("A")])
    # The waiting report keeps its number, judged against the legacy watermark; the new one
    # is in the new epoch, numbered on from it (an old control plane sees 42 after 41).
    assert numbered(outbox) == [("A", "", "41"), ("A", outbox.epoch, "42")]
