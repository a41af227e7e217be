"""Measure the schedule page's work: the 7-day preview and the checks it runs as you type.

Creates its own database on the local stack (``scripts/stack up``), one site with
a meter and two storage systems, fills per-minute rollups of the load and PV
counters for the past 7 days plus a recent state of charge, and prints the
median time of:

- ``schedule_preview.preview`` end to end (what the preview callback waits for),
  and its parts: ``energy.site_energy`` over the past week and the 672-step
  simulation,
- the preview chart (``preview_figure``), and the per-keystroke work of the
  editor: ``schedules.validate`` of a week of rows and the week timeline.

    uv run python benchmarks/schedule_preview.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import math
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboards.components.schedules import editor as schedule_editor
from dashboards.components.schedules import timeline as schedule_timeline
from dashboards.components.schedules.preview_chart import preview_figure
from kilowatch import db, fleet, migrations
from kilowatch.access import system_scope
from kilowatch.schedules import model as schedules
from kilowatch.schedules import preview as schedule_preview
from kilowatch.telemetry import energy

ADMIN_URL = "postgresql://kilowatch@127.0.0.1:55432/postgres"
NOW = datetime(2026, 9, 21, 12, 7, tzinfo=UTC)
COUNTERS = {  # point: kW as a function of the hour of the day
    "meter.load.e": lambda h: 40 + 15 * math.sin(h / 24 * 2 * math.pi),
    "meter.pv.e": lambda h: max(0.0, 30 * math.sin((h - 6) / 12 * math.pi)),
}
SCHEDULE = {"timezone": "Europe/Paris", "default_mode": "self_consumption",
            "default_params": {"soc_min": 10, "soc_max": 95}, "exceptions": [],
            "periods": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "01:00", "end": "05:00",
                 "mode": "charge", "power_kw": 60, "soc_max": 90},
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00", "end": "21:00",
                 "mode": "discharge", "power_kw": 100, "soc_min": 20},
                {"days": ["sat", "sun"], "start": "11:00", "end": "15:00",
                 "mode": "peak_shaving", "grid_limit_kw": 30, "soc_min": 15}]}


def load_week(conn, meter: int, points: dict[str, int]) -> int:
    """COPY a week of per-minute counter readings of the meter; return the rows."""
    start = NOW.replace(minute=0) - timedelta(days=7, hours=1)
    buffer = io.StringIO()
    rows = 0
    for name, power in COUNTERS.items():
        value = 1000.0
        for i in range(7 * 24 * 60 + 60):
            bucket = start + timedelta(minutes=i)
            value += power(bucket.hour + bucket.minute / 60) / 60
            buffer.write(f"{bucket.isoformat()}\t{meter}\t{points[name]}\t0\t0\t0\t{value}\t1\n")
            rows += 1
    buffer.seek(0)
    with conn.cursor() as cur, cur.copy(
            "COPY telemetry_1m (bucket, device_id, point_id, avg, min, max, last, count) "
            "FROM STDIN") as copy:
        copy.write(buffer.read())
    return rows


def timed(action, runs: int) -> tuple[float, object]:
    durations, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def run(conn, runs: int) -> None:
    scope = system_scope("benchmark")
    company = fleet.create_company(conn, scope, "Bench")
    site = fleet.create_site(conn, scope, company_id=company, name="Plant",
                             timezone="Europe/Paris")
    meter = fleet.register_device(conn, scope, site_id=site, serial="B-M", model="meter")
    storage = [fleet.register_device(conn, scope, site_id=site, serial=f"B-{n}", model="HES-XL")
               for n in range(2)]
    points = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM points")}
    rows = load_week(conn, meter, points)
    for device in storage:
        conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                     "VALUES (%s, %s, %s, 55)", (NOW - timedelta(minutes=1), device,
                                                 points["bms.soc"]))
    conn.execute("ANALYZE")
    print(f"loaded {rows:,} per-minute rows (load and PV counters, 7 days)")

    seconds, result = timed(lambda: schedule_preview.preview(conn, scope, site, SCHEDULE,
                                                             now=NOW), runs)
    peak, _ = result.peak_import
    print(f"preview end to end: {seconds * 1000:.0f} ms ({len(result.steps)} steps, "
          f"peak import {peak:.0f} kW, import {result.import_kwh:,.0f} kWh)")
    start = NOW.replace(minute=0)
    seconds, _ = timed(lambda: energy.site_energy(conn, scope, site, start - timedelta(days=7),
                                                  start, schedule_preview.STEP, now=NOW), runs)
    print(f"  site_energy, past 7 days per 15 min: {seconds * 1000:.0f} ms")
    checked = schedules.validate(SCHEDULE, schedules.SiteLimits(timezone="Europe/Paris",
                                                                rated_power_kw=250), now=NOW)
    seconds, _ = timed(lambda: schedule_preview.simulate(
        checked, result.battery, start=start, soc=55, site_power=lambda _t: (40.0, 10.0)), runs)
    print(f"  simulate, 672 steps: {seconds * 1000:.0f} ms")
    seconds, _ = timed(lambda: preview_figure(result).to_json(), runs)
    print(f"preview chart (figure + JSON): {seconds * 1000:.0f} ms")
    rows_ = schedule_editor.period_rows(SCHEDULE)

    def keystroke():
        draft = schedule_editor.draft("Europe/Paris", "self_consumption",
                                      {"soc_min": 10, "soc_max": 95}, rows_, [])
        schedules.validate(draft.per_row, schedules.SiteLimits(timezone="Europe/Paris"), now=NOW)
        return schedule_timeline.week_figure(draft.merged).to_json()

    seconds, _ = timed(keystroke, runs * 10)
    print(f"per keystroke (rows → draft → validate → week timeline JSON, {len(rows_)} rows): "
          f"{seconds * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = f"kw_bench_preview_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql://kilowatch@127.0.0.1:55432/{name}"
    try:
        with db.connect(url, autocommit=True) as conn:
            migrations.upgrade(conn)
            run(conn, args.runs)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    main()
