"""Measure a backfill arriving late: its ingest rate against the rate the rollups catch up.

Runs on the local stack (``scripts/stack up``) with its own database, Redis key
prefix and topic prefix, and a real ``kilowatch collector`` subprocess:

1. the table already holds ``--filler`` times as many rows as the backfill (other
   devices over the same days, copied in and rolled up), and the rollups are at
   the present, as in any running installation;
2. ``--devices`` devices publish ``--days`` days of ``--points`` points every
   ``--interval`` seconds over MQTT (QoS 1), oldest first, as a site reconnecting
   after an outage or a new site with its history does: all of it is late data.
   Ingest rate: rows / (first publish → last commit);
3. the worker's late-data path rolls the same rows up as its two jobs do
   (``rollups`` and ``rollups.late``, each a connection taking half the devices,
   newest window first). Rollup rate: rows / time; and the time until the last
   7 days are fully rolled up (what the dashboards show by default).

It prints both rates, their ratio, the cost per late minute bucket, and the plan
of one window's statement (chunks read, through which index). Run it at two
table sizes (``--filler 1`` and ``--filler 4``) to see whether the cost of late
data follows the late rows or the table.

    uv run python benchmarks/backfill.py [--devices 3 --days 30 --points 20 --interval 60
                                          --filler 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import math
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ingest import Collector, Environment, point_names, wait_stored
from kilowatch import db, fleet
from kilowatch.access import system_scope
from kilowatch.jobs.rollups import PARTS
from kilowatch.telemetry import rollups
from kilowatch.telemetry import storage as telemetry
from kilowatch.telemetry.storage import ROLLUPS
from tests.collector.helpers import Publisher
from tests.conftest import broker_accounts, delete_broker_accounts

WEEK = dt.timedelta(days=7)


def value(device: int, point: int, t: float) -> float:
    """A plausible reading: a daily wave per point, a counter for every fifth point."""
    if point % 5 == 1:
        return round(t / 3600 * (10 + device), 6)
    return round(50 + 20 * math.sin(t / 13_751 + point) + device, 4)


def timeline(args: argparse.Namespace, end: dt.datetime) -> list[dt.datetime]:
    """Sample times over ``--days`` days up to ``end``."""
    step = dt.timedelta(seconds=args.interval)
    count = int(dt.timedelta(days=args.days) / step)
    return [end - (count - k) * step for k in range(count)]


def copy_filler(url: str, devices: list[int], names: list[str], times: list[dt.datetime]) -> int:
    """COPY the filler devices' rows straight into ``telemetry`` and register their points."""
    rows = 0
    with db.connect(url, autocommit=True) as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM points WHERE name = ANY(%s) "
                                             "ORDER BY id", (names,))]
        conn.execute("INSERT INTO device_points (device_id, point_id) SELECT d, p FROM "
                     "unnest(%s::int[]) d, unnest(%s::int[]) p", (devices, ids))
        for device in devices:
            for day in range(0, len(times), 1440):
                encoder = telemetry.CopyEncoder()
                encoder.add_rows((t, device, p, value(device, p, t.timestamp()))
                                 for t in times[day:day + 1440] for p in ids)
                with conn.transaction():
                    telemetry.store_samples(conn, encoder)
                rows += encoder.rows
    return rows


def register(environment: Environment, count: int) -> dict[str, int]:
    """Create the database with a site per device and register them; return serial → id."""
    sites = environment.create(count)
    with db.connect(environment.url, autocommit=True) as conn:
        return {f"BACKFILL-{n:04d}": fleet.register_device(
            conn, system_scope("benchmark"), site_id=site, serial=f"BACKFILL-{n:04d}",
            model="HES-XL") for n, site in enumerate(sites)}


def register_points(url: str, names: list[str]) -> None:
    """Make sure every point name exists (the collector would register them)."""
    with db.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO points (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                     (names,))


def roll_up_all(url: str, now: dt.datetime) -> float:
    """Roll everything stored up through the normal path; return the seconds it took."""
    started = time.perf_counter()
    with db.connect(url, autocommit=True) as conn:
        for rollup in ROLLUPS:
            rollups.catch_up(conn, rollup, now, budget_s=10_000)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def payloads(args, serials: dict[str, int], names: list[str], times: list[dt.datetime],
             prefix: str) -> list[tuple[str, bytes]]:
    """Messages of 5,000 values (under the broker's 256 kB packets), oldest first."""
    per_message = max(1, 5_000 // len(names))
    messages = []
    for start in range(0, len(times), per_message):
        for serial, device in serials.items():
            samples = [{"ts": t.isoformat(), "v": {n: value(device, k + 1, t.timestamp())
                                                   for k, n in enumerate(names)}}
                       for t in times[start:start + per_message]]
            body = {"seq": start // per_message + 1, "samples": samples}
            messages.append((f"{prefix}/{serial}/telemetry", json.dumps(body).encode()))
    return messages


def _share(url: str, part: tuple[int, int], now: dt.datetime, started: float) -> dict:
    """One late-data job's loop: windows of its devices, newest first, until none is left."""
    week_s, windows, minute_rows = None, 0, 0
    with db.connect(url, autocommit=True) as conn:
        while (done := rollups.recompute_late_window(conn, part=part)) is not None:
            if not done["ranges"]:  # the other job holds this window's ranges for a moment
                time.sleep(0.05)
                continue
            windows += 1
            minute_rows += done["minute_rows"]
            if week_s is None and done["oldest"] <= now - WEEK:
                week_s = time.perf_counter() - started
    finished = time.perf_counter() - started
    return {"week_s": finished if week_s is None else week_s, "seconds": finished,
            "windows": windows, "minute_rows": minute_rows}


def catch_up(url: str, now: dt.datetime) -> dict:
    """Run the two late-data jobs side by side until nothing is pending; time them."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(PARTS) as pool:
        shares = list(pool.map(lambda k: _share(url, (k, PARTS), now, started), range(PARTS)))
    return {"seconds": max(s["seconds"] for s in shares),
            "week_s": max(s["week_s"] for s in shares),
            "windows": sum(s["windows"] for s in shares),
            "minute_rows": sum(s["minute_rows"] for s in shares)}


def explain_window(url: str, devices: list[int], hi: dt.datetime) -> list[str]:
    """EXPLAIN ANALYZE the minute statement of the window ending at ``hi`` (rolled back)."""
    where = rollups._DEVICES["devices"].format(alias="t")
    with db.connect(url) as conn:
        params = {"lo": hi - rollups.LATE_WINDOW, "hi": hi, "devices": devices}
        conn.execute(rollups._DELETE_MINUTES_SQL.format(devices=where), params)
        plan = [r["QUERY PLAN"] for r in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + rollups._MINUTES_SQL.format(devices=where), params)]
        conn.rollback()
    keep = ("Scan", "Index Cond", "Execution Time", "Planning Time", "actual time")
    return [line[:140] for line in plan if any(k in line for k in keep)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=3, help="devices backfilling late")
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--points", type=int, default=20, help="points per sample")
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--filler", type=float, default=1.0,
                        help="rows already stored, as a multiple of the backfill's rows")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    filler_devices = max(0, round(args.filler * args.devices))
    environment = Environment()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    print(f"setting up database {environment.database} ...", flush=True)
    registered = register(environment, args.devices + filler_devices)
    serials = dict(list(registered.items())[:args.devices])
    filler = list(registered.values())[args.devices:]
    token, prefix = secrets.token_hex(4), environment.env["KILOWATCH_MQTT_PREFIX"]
    environment.env.update(broker_accounts(token, prefix))
    names = point_names(args.points)
    register_points(environment.url, names)
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    times = timeline(args, now - dt.timedelta(minutes=2))
    late_rows = len(times) * args.points * args.devices
    log_path = Path(tempfile.mkdtemp(prefix="kwbench-")) / "collector.log"
    try:
        started = time.perf_counter()
        stored = copy_filler(environment.url, filler, names, times)
        rolled = roll_up_all(environment.url, now)
        print(f"table: {stored:,} rows of {len(filler)} other devices copied in "
              f"{time.perf_counter() - started - rolled:.0f} s, rolled up in {rolled:.0f} s",
              flush=True)
        messages = payloads(args, serials, names, times, environment.env["KILOWATCH_MQTT_PREFIX"])
        print(f"backfill: {args.devices} devices × {args.days:g} days × {args.points} points "
              f"every {args.interval:g} s = {late_rows:,} rows in {len(messages)} messages",
              flush=True)
        collector = Collector(environment.env, log_path)
        try:
            first_publish = time.time()
            publisher = Publisher(environment.env["KILOWATCH_SIMULATOR_MQTT_URL"],
                                  client_id=f"kwbench-backfill-{token}")
            try:
                publisher.publish_many(messages)
            finally:
                publisher.close()
            wait_stored(collector, late_rows, timeout_s=3600)
            last_commit = collector.metric("kilowatch_collector_last_commit_timestamp_seconds")
        finally:
            collector.stop()
        ingest_s = last_commit - first_publish
        with db.connect(environment.url) as conn:
            pending = conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"]
        result = catch_up(environment.url, now)
        middle = now - dt.timedelta(days=args.days / 2)
        plan = explain_window(environment.url, list(serials.values()),
                              middle.replace(minute=0, second=0, microsecond=0))
    finally:
        delete_broker_accounts(token, prefix)
        if not args.keep:
            environment.drop()

    ingest_rate = late_rows / ingest_s
    rollup_rate = late_rows / result["seconds"]
    print()
    print(f"table before the backfill: {stored:,} rows ({args.filler:g}× the backfill)")
    print(f"ingest (MQTT → collector → telemetry): {ingest_rate:,.0f} rows/s "
          f"({late_rows:,} rows in {ingest_s:.1f} s; {pending:,} pending ranges marked)")
    print(f"late-data rollup, newest first:       {rollup_rate:,.0f} rows/s "
          f"({result['windows']} windows, {result['minute_rows']:,} minute rows "
          f"in {result['seconds']:.1f} s)")
    print(f"ratio rollup / ingest:                 {rollup_rate / ingest_rate:.2f}")
    print(f"cost per late minute bucket:           "
          f"{result['seconds'] / result['minute_rows'] * 1e6:.1f} µs")
    print(f"last 7 days fully rolled up after:     {result['week_s']:.1f} s "
          f"(all {args.days:g} days: {result['seconds']:.1f} s)")
    print("one window's minute statement (EXPLAIN ANALYZE):")
    for line in plan:
        print("   ", line.strip())
    print(f"collector log: {log_path}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
