"""Measure interval energy and monthly bills on a site with a realistic amount of data.

Creates its own database on the local stack (``scripts/stack up``), one site with
a meter and a storage system, fills per-minute rollups of the six energy counters
for a month and hourly rollups for a year, and prints how long these take:

- ``energy.site_energy`` at 15 minutes over the month (the input of a bill),
- ``scenarios.compute_bills`` (three scenarios) on those intervals,
- ``savings.compute_month`` end to end (energy, bills, storing them),
- ``energy.site_energy`` by day over the year and by month (dashboard energy bars).

    uv run python benchmarks/savings.py [--runs 3]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import secrets
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kilowatch import db, fleet, migrations
from kilowatch.access import system_scope
from kilowatch.billing import bills, savings, scenarios, tariff_store, urdb
from kilowatch.billing.savings import _flows
from kilowatch.telemetry import energy
from tests.kilowatch.billing.test_tariffs import DATA

ADMIN_URL = "postgresql://kilowatch@127.0.0.1:55432/postgres"
MONTH_START = datetime(2026, 9, 1, tzinfo=UTC)
COUNTERS = {  # point: (device index, kW as a function of the hour)
    "meter.grid.e_import": (0, lambda h: 20 + 10 * math.sin(h / 24 * 2 * math.pi)),
    "meter.grid.e_export": (0, lambda h: 3 if 11 <= h % 24 < 15 else 0),
    "meter.load.e": (0, lambda h: 40 + 15 * math.sin(h / 24 * 2 * math.pi)),
    "meter.pv.e": (0, lambda h: max(0.0, 30 * math.sin((h % 24 - 6) / 12 * math.pi))),
    "pcs.e_charge": (1, lambda h: 8 if 10 <= h % 24 < 14 else 0),
    "pcs.e_discharge": (1, lambda h: 10 if 17 <= h % 24 < 21 else 0),
}


def copy_rollups(conn, table: str, devices: list[int], points: dict[str, int], start: datetime,
                 count: int, width: timedelta) -> int:
    """COPY ``count`` buckets of every counter into a rollup table; return the rows."""
    buffer = io.StringIO()
    hours = width.total_seconds() / 3600
    rows = 0
    for name, (device_index, power) in COUNTERS.items():
        value = 1000.0
        for i in range(count):
            bucket = start + i * width
            value += power(i * hours) * hours
            buffer.write(f"{bucket.isoformat()}\t{devices[device_index]}\t{points[name]}\t"
                         f"0\t0\t0\t{value}\t1\n")
            rows += 1
    buffer.seek(0)
    with conn.cursor() as cur, cur.copy(
            sql.SQL("COPY {} (bucket, device_id, point_id, avg, min, max, last, count) "
                    "FROM STDIN").format(sql.Identifier(table))) as copy:
        copy.write(buffer.read())
    return rows


def timed(action, runs: int) -> tuple[float, object]:
    durations, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = action()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Keep the database (its name is "
                        "printed) to look at query plans.")
    args = parser.parse_args()
    name = f"kw_bench_savings_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql://kilowatch@127.0.0.1:55432/{name}"
    try:
        with db.connect(url, autocommit=True) as conn:
            migrations.upgrade(conn)
            run(conn, args.runs)
    finally:
        if args.keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


def run(conn, runs: int) -> None:
    scope = system_scope("benchmark")
    company = fleet.create_company(conn, scope, "Bench")
    site = fleet.create_site(conn, scope, company_id=company, name="Plant", timezone="UTC")
    devices = [fleet.register_device(conn, scope, site_id=site, serial=f"B-{i}", model=model)
               for i, model in enumerate(("meter", "HES-XL"))]
    points = {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM points")}
    started = time.perf_counter()
    minute_rows = copy_rollups(conn, "telemetry_1m", devices, points, MONTH_START,
                               30 * 24 * 60, timedelta(minutes=1))
    year_start = MONTH_START - timedelta(days=335)
    hour_rows = copy_rollups(conn, "telemetry_1h", devices, points, year_start, 365 * 24,
                             timedelta(hours=1))
    conn.execute("ANALYZE")
    print(f"loaded {minute_rows:,} per-minute and {hour_rows:,} hourly rows "
          f"in {time.perf_counter() - started:.1f} s")

    # The URDB fixture of the tests: TOU energy, TOU and flat demand, net billing.
    tariff = urdb.import_urdb(json.loads((DATA / "urdb_sunridge.json").read_text()))
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="GS",
                                           tariff=tariff)
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 1, 1))
    period = bills.BillingPeriod("UTC", 2026, 9)

    seconds, month = timed(lambda: energy.site_energy(conn, scope, site, period.start,
                                                      period.end), runs)
    print(f"site_energy, 15 min over a month ({len(month.intervals)} intervals, "
          f"6 counters × 43,200 minutes): {seconds * 1000:.0f} ms")
    flows = _flows(month)
    seconds, result = timed(lambda: scenarios.compute_bills(tariff, flows, period), runs)
    print(f"compute_bills, 3 scenarios: {seconds * 1000:.0f} ms "
          f"(actual {result['actual'].total:.2f}, storage saves "
          f"{scenarios.savings(result)['storage']['total']:.2f} {tariff.currency})")
    seconds, _ = timed(lambda: savings.compute_month(conn, scope, site, "2026-09"), runs)
    print(f"savings.compute_month (energy + bills + store): {seconds * 1000:.0f} ms")
    year_end = MONTH_START + timedelta(days=30)
    seconds, days = timed(lambda: energy.site_energy(conn, scope, site, year_start, year_end,
                                                     "day"), runs)
    print(f"site_energy by day over a year ({len(days.intervals)} days, hourly rollups): "
          f"{seconds * 1000:.0f} ms")
    seconds, months = timed(lambda: energy.site_energy(conn, scope, site, year_start, year_end,
                                                       "month"), runs)
    print(f"site_energy by month over a year ({len(months.intervals)} months): "
          f"{seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
