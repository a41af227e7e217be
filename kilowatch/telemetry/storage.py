"""Raw telemetry storage, the per-minute and per-hour rollups, and retention.

Writing: :func:`store_samples` copies rows with binary COPY straight into the
``telemetry`` hypertable inside a savepoint; if the unique key (device, point,
time) rejects the copy because some rows are already stored (a redelivered
message), it copies into a temporary table and moves the rows over with
``INSERT … ON CONFLICT DO NOTHING``, so duplicates are dropped by the key.

Rollups: ``telemetry_1m`` and ``telemetry_1h`` hold avg/min/max/last/count per
(device, point, bucket), the same figures a ``time_bucket`` query over raw rows
returns. The worker computes closed buckets up to a watermark; rows that arrive
later for buckets below the watermark are marked in ``rollup_dirty`` by the
collector and recomputed. The collector reads the watermark under a shared
advisory lock that the worker takes exclusively while it moves the watermark,
so a row is either committed before the watermark moves (and seen by the
computation) or marked dirty.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import struct
import time
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Row = tuple[dt.datetime, int, int, float]  # time, device_id, point_id, value

WATERMARK_LOCK = (7_120_300, 1)  # advisory lock guarding rollup watermarks


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
    """Mark (device, bucket) pairs of a rollup for recomputation."""
    pairs = sorted(set(buckets))
    if not pairs:
        return
    conn.execute(
        """INSERT INTO rollup_dirty (rollup, device_id, bucket)
           SELECT %s, unnest(%s::int[]), unnest(%s::timestamptz[])
           ON CONFLICT DO NOTHING""",
        (rollup, [p[0] for p in pairs], [p[1] for p in pairs]),
    )


# ---- rollups --------------------------------------------------------------------------

def _aggregate(rollup: Rollup, where: sql.Composable) -> sql.Composed:
    return sql.SQL(
        """INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count)
           SELECT time_bucket({width}, t.time) AS bucket, t.device_id, t.point_id,
                  avg(t.value), min(t.value), max(t.value), last(t.value, t.time), count(*)
           FROM telemetry t {where}
           GROUP BY 1, 2, 3
           ON CONFLICT (device_id, point_id, bucket) DO UPDATE
           SET avg = excluded.avg, min = excluded.min, max = excluded.max,
               last = excluded.last, count = excluded.count"""
    ).format(table=sql.Identifier(rollup.table), width=sql.Literal(rollup.width), where=where)


def rollup_range(conn: psycopg.Connection, rollup: Rollup, start: dt.datetime,
                 end: dt.datetime) -> int:
    """(Re)compute every bucket in [start, end); return the number of rollup rows written."""
    where = sql.SQL("WHERE t.time >= %s AND t.time < %s")
    return conn.execute(_aggregate(rollup, where), (start, end)).rowcount


def recompute_dirty(conn: psycopg.Connection, rollup: Rollup, *, limit: int = 2000) -> int:
    """Recompute up to ``limit`` marked buckets in one transaction; return how many."""
    with conn.transaction():
        marked = conn.execute(
            """DELETE FROM rollup_dirty WHERE (rollup, device_id, bucket) IN (
                   SELECT rollup, device_id, bucket FROM rollup_dirty WHERE rollup = %s
                   ORDER BY bucket LIMIT %s FOR UPDATE SKIP LOCKED)
               RETURNING device_id, bucket""",
            (rollup.name, limit),
        ).fetchall()
        if not marked:
            return 0
        where = sql.SQL(
            "JOIN (SELECT unnest(%s::int[]) AS device_id, unnest(%s::timestamptz[]) AS bucket)"
            " d ON t.device_id = d.device_id AND t.time >= d.bucket"
            " AND t.time < d.bucket + {width}"
        ).format(width=sql.Literal(rollup.width))
        conn.execute(_aggregate(rollup, where),
                     ([m["device_id"] for m in marked], [m["bucket"] for m in marked]))
    return len(marked)


def advance_watermark(conn: psycopg.Connection, rollup: Rollup, now: dt.datetime) -> dict:
    """Move a rollup's watermark up to its last closed bucket; return its state row."""
    target = rollup.floor(now - rollup.lag)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", WATERMARK_LOCK)
        state = conn.execute(
            """UPDATE rollup_state SET watermark = greatest(watermark, %s), updated_at = now()
               WHERE rollup = %s RETURNING watermark, done_until""",
            (target, rollup.name),
        ).fetchone()
    if state["done_until"] is None:
        first = conn.execute("SELECT min(time) AS first FROM telemetry").fetchone()["first"]
        start = rollup.floor(first) if first is not None else state["watermark"]
        conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = %s "
                     "AND done_until IS NULL", (min(start, state["watermark"]), rollup.name))
        state = conn.execute("SELECT watermark, done_until FROM rollup_state WHERE rollup = %s",
                             (rollup.name,)).fetchone()
    return state


def catch_up(conn: psycopg.Connection, rollup: Rollup, now: dt.datetime, *,
             slice_width: dt.timedelta = dt.timedelta(hours=6), budget_s: float = 50.0) -> dict:
    """Compute closed buckets up to the watermark, then marked ones; return what was done."""
    started = time.monotonic()
    state = advance_watermark(conn, rollup, now)
    done, watermark = state["done_until"], state["watermark"]
    rows = buckets = 0
    while done < watermark and time.monotonic() - started < budget_s:
        end = min(done + slice_width, watermark)
        with conn.transaction():
            rows += rollup_range(conn, rollup, done, end)
            conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = %s",
                         (end, rollup.name))
        done = end
    while time.monotonic() - started < budget_s:
        count = recompute_dirty(conn, rollup)
        buckets += count
        if count == 0:
            break
    return {"rollup": rollup.name, "rows": rows, "dirty_buckets": buckets,
            "done_until": done, "watermark": watermark}


# ---- retention ------------------------------------------------------------------------

def drop_old_chunks(conn: psycopg.Connection, table: str, days: int) -> int:
    """Drop the chunks of a hypertable older than ``days``; return how many were dropped."""
    rows = conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s::interval)",
                        (table, dt.timedelta(days=days))).fetchall()
    return len(rows)


def compression_available(conn: psycopg.Connection) -> bool:
    """Say whether this TimescaleDB build may compress chunks (community license)."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true) AS license"
                       ).fetchone()
    return (row["license"] or "") == "timescale"


def compress_old_raw(conn: psycopg.Connection, *, older_than: dt.timedelta) -> int:
    """Compress raw chunks older than ``older_than`` (community build only); return how many."""
    enabled = conn.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'telemetry'").fetchone()
    if not enabled["compression_enabled"]:
        conn.execute("ALTER TABLE telemetry SET (timescaledb.compress, "
                     "timescaledb.compress_segmentby = 'device_id, point_id', "
                     "timescaledb.compress_orderby = 'time')")
    chunks = conn.execute(
        """SELECT format('%%I.%%I', chunk_schema, chunk_name) AS chunk
           FROM timescaledb_information.chunks
           WHERE hypertable_name = 'telemetry' AND NOT is_compressed
             AND range_end < now() - %s::interval
           ORDER BY range_end""",
        (older_than,)).fetchall()
    for chunk in chunks:
        conn.execute("SELECT compress_chunk(%s::regclass, if_not_compressed => true)",
                     (chunk["chunk"],))
    return len(chunks)
