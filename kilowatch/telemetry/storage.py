"""Raw telemetry storage, the rollup definitions and watermarks, late-data marks, retention.

Writing: :func:`store_samples` copies rows with binary COPY straight into the
``telemetry`` hypertable inside a savepoint; if the unique key (device, point,
time) rejects the copy because some rows are already stored (a redelivered
message), it copies into a temporary table and moves the rows over with
``INSERT … ON CONFLICT DO NOTHING``, so duplicates are dropped by the key.

Rollups: ``telemetry_1m`` and ``telemetry_1h`` (computed by
:mod:`kilowatch.telemetry.rollups`) are complete below a watermark. Rows that
arrive later for times below it are recorded by the collector as ranges of
minutes per device in ``rollup_pending`` (:func:`mark_dirty`) and recomputed.
The collector reads the watermark under a shared advisory lock that the worker
takes exclusively while it moves the watermark, so a row is either committed
before the watermark moves (and seen by the computation) or marked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import struct
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Row = tuple[dt.datetime, int, int, float]  # time, device_id, point_id, value

WATERMARK_LOCK = (7_120_300, 1)  # advisory lock guarding rollup watermarks
MINUTE = dt.timedelta(minutes=1)
MERGE_GAP = dt.timedelta(minutes=30)  # late minutes closer than this are one range


@dataclasses.dataclass(frozen=True)
class Rollup:
    """One rollup table: its name, bucket width and how long it lags real time."""

    name: str
    table: str
    width: dt.timedelta
    lag: dt.timedelta

    def floor(self, moment: dt.datetime) -> dt.datetime:
        """Return the start of the bucket holding ``moment`` (UTC-aligned, like time_bucket)."""
        epoch = moment.timestamp()
        width_s = self.width.total_seconds()
        return dt.datetime.fromtimestamp(epoch - epoch % width_s, dt.UTC)


ROLLUPS = (
    Rollup("1m", "telemetry_1m", dt.timedelta(minutes=1), dt.timedelta(minutes=1)),
    Rollup("1h", "telemetry_1h", dt.timedelta(hours=1), dt.timedelta(minutes=1)),
)
ROLLUP_BY_NAME = {r.name: r for r in ROLLUPS}


# ---- writing raw rows ---------------------------------------------------------------

_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension
_COPY_TRAILER = b"\xff\xff"
# One row: 4 fields, each length-prefixed: timestamptz (µs since 2000), int4, int4, float8.
_ROW = struct.Struct(">hiqiiiiid")


class CopyEncoder:
    """Build a binary COPY stream of telemetry rows, sample by sample.

    Equivalent to psycopg's ``write_row`` with types timestamptz/int4/int4/float8,
    several times cheaper per row, which matters at hundreds of thousands of rows
    a second.
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = [_COPY_HEADER]
        self.rows = 0

    def add(self, ts: dt.datetime, device_id: int, values: dict[str, float],
            point_ids: dict[str, int]) -> None:
        """Add one sample: every (point name → value) of one device at one time."""
        micros = (ts - _PG_EPOCH) // _MICROSECOND
        pack = _ROW.pack
        append = self._parts.append
        for name, value in values.items():
            append(pack(4, 8, micros, 4, device_id, 4, point_ids[name], 8, value))
        self.rows += len(values)

    def add_rows(self, rows: Iterable[Row]) -> None:
        """Add (time, device_id, point_id, value) rows."""
        pack = _ROW.pack
        append = self._parts.append
        for ts, device_id, point_id, value in rows:
            append(pack(4, 8, (ts - _PG_EPOCH) // _MICROSECOND, 4, device_id, 4, point_id, 8,
                        value))
            self.rows += 1

    def data(self) -> bytes:
        """Return the complete stream (header, rows, trailer)."""
        return b"".join([*self._parts, _COPY_TRAILER])


def _copy(cur: psycopg.Cursor, table: str, data: bytes) -> None:
    statement = sql.SQL("COPY {} (time, device_id, point_id, value) FROM STDIN "
                        "(FORMAT BINARY)").format(sql.Identifier(table))
    with cur.copy(statement) as copy:
        copy.write(data)


def copy_samples(conn: psycopg.Connection, rows: Sequence[Row]) -> int:
    """COPY rows straight into ``telemetry``; raises UniqueViolation if any is stored already."""
    encoder = CopyEncoder()
    encoder.add_rows(rows)
    with conn.cursor() as cur:
        _copy(cur, "telemetry", encoder.data())
    return encoder.rows


def insert_dedup(conn: psycopg.Connection, data: bytes) -> int:
    """COPY a stream into a temporary table and insert the new rows; return how many."""
    with conn.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS incoming_telemetry "
                    "(time timestamptz, device_id int, point_id int, value float8) "
                    "ON COMMIT DELETE ROWS")
        cur.execute("TRUNCATE incoming_telemetry")
        _copy(cur, "incoming_telemetry", data)
        cur.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                    "SELECT time, device_id, point_id, value FROM incoming_telemetry "
                    "ON CONFLICT DO NOTHING")
        return max(cur.rowcount, 0)


def store_samples(conn: psycopg.Connection, encoder: CopyEncoder, *,
                  try_direct: bool = True) -> tuple[int, bool]:
    """Store an encoder's rows exactly once inside the caller's transaction.

    Returns (rows inserted, whether duplicates were found). ``try_direct=False``
    skips the fast path, e.g. right after duplicates when more redeliveries are likely.
    """
    if not encoder.rows:
        return 0, False
    data = encoder.data()
    if try_direct:
        try:
            with conn.transaction(), conn.cursor() as cur:
                _copy(cur, "telemetry", data)
            return encoder.rows, False
        except psycopg.errors.UniqueViolation:
            pass
    inserted = insert_dedup(conn, data)
    return inserted, inserted < encoder.rows


def read_watermarks(conn: psycopg.Connection) -> dict[str, dt.datetime | None]:
    """Lock the watermarks shared for this transaction and return them by rollup name."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", WATERMARK_LOCK)
    rows = conn.execute("SELECT rollup, watermark FROM rollup_state").fetchall()
    return {r["rollup"]: r["watermark"] for r in rows}


def mark_dirty(conn: psycopg.Connection, rollup: str,
               buckets: Iterable[tuple[int, dt.datetime]]) -> None:
    """Record late (device, bucket) pairs of a rollup as ranges of minutes to recompute.

    Only the minute rollup's marks are kept: hourly rows are recomputed from the
    minute rows of the hours a range touches, and every row below the hourly
    watermark is below the minute one too, so it is marked for minutes as well.
    """
    if rollup != "1m":
        return
    add_pending(conn, minute_ranges(buckets))


def add_pending(conn: psycopg.Connection,
                ranges: Sequence[tuple[int, dt.datetime, dt.datetime]], *,
                refresh: bool = False) -> None:
    """Record (device, lo, hi) ranges of minutes whose rollups must be recomputed.

    ``refresh``: the rollup rows there are complete and may be read meanwhile
    (they are recomputed only to gain what they lack); late data never is.
    """
    ranges = sorted(set(ranges))  # one row per key: ON CONFLICT DO UPDATE needs it
    if not ranges:
        return
    conn.execute(
        """INSERT INTO rollup_pending (device_id, lo, hi, refresh)
           SELECT *, %s FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[])
           ON CONFLICT (device_id, lo, hi) DO UPDATE
           SET refresh = rollup_pending.refresh AND excluded.refresh""",
        (refresh, [r[0] for r in ranges], [r[1] for r in ranges], [r[2] for r in ranges]),
    )


def minute_ranges(buckets: Iterable[tuple[int, dt.datetime]]
                  ) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """Merge (device, minute bucket) pairs into (device, lo, hi) ranges.

    Minutes less than :data:`MERGE_GAP` apart share a range: recomputing the few
    minutes between them costs less than one more range to track and recompute.
    """
    ranges: list[list] = []
    for device_id, bucket in sorted(set(buckets)):
        if ranges and ranges[-1][0] == device_id and bucket - ranges[-1][2] < MERGE_GAP:
            ranges[-1][2] = bucket + MINUTE
        else:
            ranges.append([device_id, bucket, bucket + MINUTE])
    return [(d, lo, hi) for d, lo, hi in ranges]


# ---- retention ------------------------------------------------------------------------

def drop_old_chunks(conn: psycopg.Connection, table: str, days: int) -> int:
    """Drop the chunks of a hypertable older than ``days``; return how many were dropped.

    Through ``kilowatch_drop_chunks`` (sql/016_service_roles.sql), which runs as the
    hypertable's owner: only an owner may drop chunks, and the worker is not one.
    """
    return conn.execute("SELECT kilowatch_drop_chunks(%s, %s::interval) AS n",
                        (table, dt.timedelta(days=days))).fetchone()["n"]


def drop_old_pending(conn: psycopg.Connection, days: int) -> int:
    """Forget late-data ranges older than the raw retention (their raw rows are gone)."""
    return conn.execute("DELETE FROM rollup_pending WHERE hi < now() - %s::interval",
                        (dt.timedelta(days=days),)).rowcount


def compression_available(conn: psycopg.Connection) -> bool:
    """Say whether this TimescaleDB build may compress chunks (community license)."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true) AS license"
                       ).fetchone()
    return (row["license"] or "") == "timescale"


def compress_old_raw(conn: psycopg.Connection, *, older_than: dt.timedelta) -> int:
    """Compress raw chunks older than ``older_than`` (community build only); return how many.

    Through ``kilowatch_compress_raw`` (sql/016_service_roles.sql), which runs as the
    hypertable's owner: enabling compression alters the table.
    """
    return conn.execute("SELECT kilowatch_compress_raw(%s::interval) AS n",
                        (older_than,)).fetchone()["n"]
