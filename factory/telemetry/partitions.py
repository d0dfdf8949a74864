"""Raw samples in day partitions (PostgreSQL declarative partitioning by ``ts``).

Why: retention on one table deleted rows (~28k rows/s, a day of a million-chip fleet is ~60M
rows) and the table never shrank. With a partition per UTC day, retention drops a whole day
at once (no dead rows, the space goes back to the file system) and each query of a time range
reads only the days it names.

The partitions, by name (the name is the bound, so no bound expression is ever parsed):

- ``<table>_pYYYYMMDD``: that UTC day, ``[day, day + 1)``; made a few days ahead by the
  retention job (and at migration).
- ``<table>_upto_YYYYMMDD``: everything before that day; the table as it was before it was
  partitioned (the migration attaches it in place, nothing is copied).
- ``<table>_default``: a sample no day partition holds (a device clock far off, a day not made
  yet). Never lost: when its day's partition is made, its rows move there first.

A day is dropped when all of it is past the retention, so raw samples are kept between the
retention and the retention plus a day. Only PostgreSQL: on SQLite (``make up``'s embedded
default) the table is plain and retention deletes rows.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db import OperationalError, connection, transaction
from psycopg.errors import LockNotAvailable

TABLE = "telemetry_serversample"
DEFAULT = f"{TABLE}_default"
_NAME = re.compile(rf"^{TABLE}_(?P<kind>p|upto_)(?P<day>\d{{8}})$")
#: Dropping or making a partition locks the parent briefly; never wait long behind ingest.
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Partition:
    name: str
    lower: dt.datetime | None  # None: no lower bound (MINVALUE)
    upper: dt.datetime


def enabled() -> bool:
    """Whether the raw table is partitioned here (PostgreSQL, migrated)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s", [TABLE])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def day_start(moment: dt.datetime) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)


def day_name(day: dt.datetime) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def partitions() -> list[Partition]:
    """The day and ``upto`` partitions, oldest first (the default partition is not listed)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = [name for (name,) in cursor.fetchall()]
    found = []
    for name in names:
        match = _NAME.match(name)
        if not match:
            continue
        day = dt.datetime.strptime(match["day"], "%Y%m%d").replace(tzinfo=dt.UTC)
        if match["kind"] == "p":
            found.append(Partition(name, day, day + dt.timedelta(days=1)))
        else:
            found.append(Partition(name, None, day))
    return sorted(found, key=lambda p: p.upper)


def ensure(now: dt.datetime, ahead_days: int = 3, lock_timeout: str = LOCK_TIMEOUT) -> list[str]:
    """Make the partitions of today and the next ``ahead_days`` days that are missing, each
    from its first moment not yet covered (so a day never overlaps the ``upto`` partition).
    Rows of that day waiting in the default partition move into it first: made, filled and
    attached in one transaction. Returns the partitions made."""
    covered_until = max((p.upper for p in partitions()), default=None)
    made = []
    for offset in range(ahead_days + 1):
        day = day_start(now) + dt.timedelta(days=offset)
        if covered_until is not None and day < covered_until:
            continue
        name = day_name(day)
        upper = day + dt.timedelta(days=1)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {name} (LIKE {TABLE} INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)"
            )
            cursor.execute(
                f"WITH moved AS (DELETE FROM {DEFAULT} WHERE ts >= %s AND ts < %s RETURNING *) "
                f"INSERT INTO {name} SELECT * FROM moved",
                [day, upper],
            )
            cursor.execute(
                f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                [day, upper],
            )
        covered_until = upper
        made.append(name)
    return made


def drop_before(cutoff: dt.datetime, lock_timeout: str = LOCK_TIMEOUT) -> list[str]:
    """Drop every partition wholly before ``cutoff``; one whose lock is not had at once is
    left for the next run. Returns the partitions dropped."""
    dropped = []
    for partition in partitions():
        if partition.upper > cutoff:
            break
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [lock_timeout])
                # Inside a caller's transaction, rows it wrote have deferred FK checks
                # pending, which DROP refuses: run them now, as its commit would.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"DROP TABLE {partition.name}")
        except OperationalError as exc:
            if not isinstance(exc.__cause__, LockNotAvailable):
                raise
            continue  # ingest held it past the timeout: the next run tries again
        dropped.append(partition.name)
    return dropped


def delete_stray_before(cutoff: dt.datetime, chunk: int) -> int:
    """Rows past the retention in the default partition (strays: few), deleted in chunks."""
    deleted = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                f"DELETE FROM {DEFAULT} WHERE ctid IN "
                f"(SELECT ctid FROM {DEFAULT} WHERE ts < %s LIMIT %s)",
                [cutoff, chunk],
            )
            if cursor.rowcount <= 0:
                return deleted
            deleted += cursor.rowcount
