"""The collector's database work besides raw rows: devices, the points catalog,
seq gaps, online/offline state and the dead-letter store.

The collector calls these inside its batch transaction; readers (support
staff, the ``deadletter`` command) go through functions taking an access scope.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql

from kilowatch.access import AccessScope, site_filter
from kilowatch.alarms import events as alarms

COMM_LOST = "COMM_LOST"
_POINTS_LOCK = 7_120_301  # advisory lock class: one catalog writer per device


@dataclasses.dataclass(frozen=True)
class Device:
    """What the collector needs to know about a registered device."""

    id: int
    site_id: int
    serial: str


def find_devices(conn: psycopg.Connection, serials: Iterable[str]) -> dict[str, Device]:
    """Return the registered devices among ``serials``, by serial."""
    rows = conn.execute("SELECT id, site_id, serial FROM devices WHERE serial = ANY(%s)",
                        (sorted(set(serials)),)).fetchall()
    return {r["serial"]: Device(r["id"], r["site_id"], r["serial"]) for r in rows}


# ---- points catalog ---------------------------------------------------------------------

def device_point_ids(conn: psycopg.Connection, device_ids: Iterable[int]) -> dict[int, dict]:
    """Return device_id → {point name: point id} of the points each device registered."""
    ids = sorted(set(device_ids))
    known: dict[int, dict[str, int]] = {d: {} for d in ids}
    rows = conn.execute(
        "SELECT dp.device_id, p.name, p.id FROM device_points dp "
        "JOIN points p ON p.id = dp.point_id WHERE dp.device_id = ANY(%s)", (ids,)).fetchall()
    for row in rows:
        known[row["device_id"]][row["name"]] = row["id"]
    return known


def register_points(conn: psycopg.Connection, wanted: dict[int, Sequence[str]], *,
                    limit: int) -> dict[int, dict[str, int]]:
    """Register new point names per device, first come first served, up to ``limit`` each.

    Returns device_id → every name the device has registered after the call, with ids.
    """
    ids = sorted(wanted)
    with conn.transaction():
        for device_id in ids:
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_POINTS_LOCK, device_id))
        known = device_point_ids(conn, ids)
        pairs: list[tuple[int, str]] = []
        for device_id in ids:
            fresh = [n for n in dict.fromkeys(wanted[device_id]) if n not in known[device_id]]
            pairs += [(device_id, n) for n in fresh[: max(limit - len(known[device_id]), 0)]]
        if pairs:
            names = sorted({name for _, name in pairs})
            conn.execute("INSERT INTO points (name) SELECT unnest(%s::text[]) "
                         "ON CONFLICT (name) DO NOTHING", (names,))
            conn.execute(
                """INSERT INTO device_points (device_id, point_id)
                   SELECT w.device_id, p.id
                   FROM unnest(%s::int[], %s::text[]) AS w (device_id, name)
                   JOIN points p ON p.name = w.name
                   ON CONFLICT DO NOTHING""",
                ([p[0] for p in pairs], [p[1] for p in pairs]))
            known = device_point_ids(conn, ids)
    return known


# ---- seq gaps -----------------------------------------------------------------------------

def track_seq(conn: psycopg.Connection, seqs: dict[int, Iterable[int]]) -> list[tuple]:
    """Record new seq gaps and fill known ones from this batch's seqs per device.

    Returns the new gaps as (device_id, first_missing, last_missing).
    """
    if not seqs:
        return []
    ids = sorted(seqs)
    rows = conn.execute("SELECT device_id, last_seq FROM device_seq WHERE device_id = ANY(%s) "
                        "ORDER BY device_id FOR UPDATE", (ids,)).fetchall()
    last_by_device = {r["device_id"]: r["last_seq"] for r in rows}
    gaps: list[tuple] = []
    late: dict[int, list[int]] = {}
    for device_id in ids:
        last = last_by_device.get(device_id)
        for seq in sorted(set(seqs[device_id])):
            if last is not None and seq > last + 1:
                gaps.append((device_id, last + 1, seq - 1))
            if last is None or seq > last:
                last = seq
            else:
                late.setdefault(device_id, []).append(seq)
        last_by_device[device_id] = last
    conn.execute(
        """INSERT INTO device_seq (device_id, last_seq)
           SELECT unnest(%s::int[]), unnest(%s::bigint[])
           ON CONFLICT (device_id) DO UPDATE
           SET last_seq = greatest(device_seq.last_seq, excluded.last_seq), updated_at = now()""",
        (ids, [last_by_device[i] for i in ids]))
    if gaps:
        conn.execute(
            """INSERT INTO seq_gaps (device_id, first_missing, last_missing)
               SELECT unnest(%s::int[]), unnest(%s::bigint[]), unnest(%s::bigint[])""",
            ([g[0] for g in gaps], [g[1] for g in gaps], [g[2] for g in gaps]))
    for device_id, arrived in late.items():
        _fill_gaps(conn, device_id, arrived)
    return gaps


def _fill_gaps(conn: psycopg.Connection, device_id: int, arrived: list[int]) -> None:
    """Shrink or split the recorded gaps that late messages fill."""
    gaps = conn.execute(
        "SELECT id, first_missing, last_missing FROM seq_gaps WHERE device_id = %s "
        "AND last_missing >= %s AND first_missing <= %s",
        (device_id, min(arrived), max(arrived))).fetchall()
    present = set(arrived)
    for gap in gaps:
        missing = [s for s in range(gap["first_missing"], gap["last_missing"] + 1)
                   if s not in present]
        if len(missing) == gap["last_missing"] - gap["first_missing"] + 1:
            continue
        conn.execute("DELETE FROM seq_gaps WHERE id = %s", (gap["id"],))
        for first, last in _runs(missing):
            conn.execute("INSERT INTO seq_gaps (device_id, first_missing, last_missing) "
                         "VALUES (%s, %s, %s)", (device_id, first, last))


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


# ---- online state ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Activity:
    """Something a device did: sent a message (online) or went offline (will/status)."""

    at: dt.datetime
    online: bool
    reason: str
    firmware: str | None = None
    # False for a stale retained status: it tells the firmware, not that the device is alive.
    liveness: bool = True


@dataclasses.dataclass(frozen=True)
class Transition:
    """A device's change of online state, as logged."""

    device_id: int
    online: bool
    at: dt.datetime
    reason: str


def apply_activity(conn: psycopg.Connection,
                   activity: dict[int, list[Activity]]) -> dict[int, tuple[bool, list]]:
    """Update devices' last-seen, online state and firmware from activity in arrival order.

    Logs transitions, clears ``COMM_LOST`` when a device comes back and raises it
    when one goes offline. Returns device_id → (online now, transitions).
    """
    ids = sorted(activity)
    if not ids:
        return {}
    current = {r["id"]: r for r in conn.execute(
        "SELECT id, online, last_seen, firmware FROM devices WHERE id = ANY(%s) "
        "ORDER BY id FOR UPDATE", (ids,)).fetchall()}
    result: dict[int, tuple[bool, list]] = {}
    updates: list[tuple] = []
    for device_id in ids:
        row = current.get(device_id)
        if row is None:
            continue
        online, last_seen, firmware = row["online"], row["last_seen"], row["firmware"]
        transitions: list[Transition] = []
        for act in activity[device_id]:
            firmware = act.firmware or firmware
            if not act.liveness:
                continue
            if act.online:
                last_seen = act.at if last_seen is None else max(last_seen, act.at)
            if act.online != online:
                online = act.online
                transitions.append(Transition(device_id, online, act.at, act.reason))
        updates.append((device_id, online, last_seen, firmware))
        result[device_id] = (online, transitions)
    if not updates:
        return result
    conn.execute(
        """UPDATE devices d SET online = u.online, last_seen = u.last_seen,
                                firmware = u.firmware
           FROM (SELECT unnest(%s::int[]) AS id, unnest(%s::bool[]) AS online,
                        unnest(%s::timestamptz[]) AS last_seen,
                        unnest(%s::text[]) AS firmware) u
           WHERE d.id = u.id""",
        tuple(list(column) for column in zip(*updates, strict=True)))
    firmware_by_device = {u[0]: u[3] for u in updates}
    for device_id, (_, transitions) in result.items():
        for change in transitions:
            record_transition(conn, change, firmware=firmware_by_device[device_id])
    return result


def record_transition(conn: psycopg.Connection, change: Transition, *,
                      firmware: str | None = None, offline_message: str | None = None) -> None:
    """Log an online/offline transition and raise or clear ``COMM_LOST`` accordingly."""
    conn.execute("INSERT INTO device_events (device_id, at, state, reason, firmware) "
                 "VALUES (%s, %s, %s, %s, %s)",
                 (change.device_id, change.at, "online" if change.online else "offline",
                  change.reason, firmware))
    if change.online:
        alarms.clear_alarm(conn, device_id=change.device_id, code=COMM_LOST, at=change.at)
    else:
        message = offline_message or f"Device went offline ({change.reason})"
        alarms.raise_alarm(conn, device_id=change.device_id, code=COMM_LOST, severity="major",
                           source="platform", message=message, at=change.at)


def mark_silent_devices_offline(conn: psycopg.Connection, *, silent_s: int,
                                now: dt.datetime) -> list[int]:
    """Set devices silent for ``silent_s`` seconds offline (one transaction each); return ids."""
    cutoff = now - dt.timedelta(seconds=silent_s)
    candidates = conn.execute("SELECT id FROM devices WHERE online AND last_seen < %s "
                              "ORDER BY id", (cutoff,)).fetchall()
    gone: list[int] = []
    for candidate in candidates:
        with conn.transaction():
            row = conn.execute(
                "UPDATE devices SET online = false WHERE id = %s AND online "
                "AND last_seen < %s RETURNING id, last_seen, firmware",
                (candidate["id"], cutoff)).fetchone()
            if row is None:
                continue
            message = (f"No message from the device since "
                       f"{row['last_seen']:%Y-%m-%d %H:%M:%S %Z} ({silent_s} s)")
            record_transition(conn, Transition(row["id"], False, now, "silence"),
                              firmware=row["firmware"], offline_message=message)
        gone.append(row["id"])
    return gone


# ---- collector heartbeat --------------------------------------------------------------------

def record_heartbeat(conn: psycopg.Connection, client_id: str) -> None:
    """Note that this collector is subscribed and can write, now."""
    conn.execute("INSERT INTO collector_heartbeats (client_id, beat_at) VALUES (%s, now()) "
                 "ON CONFLICT (client_id) DO UPDATE SET beat_at = excluded.beat_at",
                 (client_id[:200],))


def last_heartbeat(conn: psycopg.Connection) -> dt.datetime | None:
    """Return when any collector last said it could ingest, or None if none ever did."""
    return conn.execute("SELECT max(beat_at) AS at FROM collector_heartbeats").fetchone()["at"]


# ---- dead letters ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A refused message, as stored."""

    topic: str
    reason: str
    payload: str
    serial: str | None = None
    device_id: int | None = None
    detail: str | None = None
    received_at: dt.datetime | None = None


def add_dead_letters(conn: psycopg.Connection, letters: Sequence[DeadLetter]) -> None:
    """Store refused messages."""
    if not letters:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO dead_letters (received_at, topic, serial, device_id, reason, detail,
                                         payload)
               VALUES (coalesce(%s, now()), %s, %s, %s, %s, %s, %s)""",
            [(d.received_at, d.topic, d.serial, d.device_id, d.reason, d.detail, d.payload)
             for d in letters])


def trim_dead_letters(conn: psycopg.Connection, keep: int) -> int:
    """Delete all but the newest ``keep`` dead letters; return how many were deleted."""
    return conn.execute(
        "DELETE FROM dead_letters WHERE id <= (SELECT max(id) FROM dead_letters) - %s",
        (keep,)).rowcount


def list_dead_letters(conn: psycopg.Connection, scope: AccessScope, *, limit: int = 50,
                      reason: str | None = None, serial: str | None = None) -> list[dict]:
    """Return the newest dead letters the caller may see.

    Platform staff see every letter, unknown serials included; company users see
    only letters of devices on their sites.
    """
    conditions: list[sql.Composable] = []
    params: list[object] = []
    if not scope.platform_wide:
        conditions.append(sql.SQL("s.id IS NOT NULL AND {}").format(site_filter(scope)))
    if reason:
        conditions.append(sql.SQL("dl.reason = %s"))
        params.append(reason)
    if serial:
        conditions.append(sql.SQL("dl.serial = %s"))
        params.append(serial)
    where = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("TRUE")
    query = sql.SQL(
        "SELECT dl.* FROM dead_letters dl LEFT JOIN devices d ON d.id = dl.device_id "
        "LEFT JOIN sites s ON s.id = d.site_id WHERE {} ORDER BY dl.id DESC LIMIT %s"
    ).format(where)
    return conn.execute(query, [*params, limit]).fetchall()
