"""Measure the dashboards' server time per callback on a seeded fleet, and response sizes.

Creates a private database, Redis prefix and app on the local stack
(``scripts/stack up``) and seeds, straight into the rollup tables with
``generate_series`` (the worker would compute the same rows from raw data):

- a company of ``--sites`` sites (default 20), one storage device each, with 16
  canonical points (powers, SoC/SoH, temperatures, cell voltages and the six
  energy counters, one counter reset): hourly rows for ``--hourly-days``
  (default 365), minute rows for ``--minute-days`` (default 31) and raw rows for
  the last two hours;
- one company per size of ``--fleet`` (default 1,000 and 10,000 sites) for the
  fleet page: a live Redis hash per device, today's hourly counter rows and active
  alarms on some sites.

Then, in-process through Flask's test client exactly as the browser posts them
(login session, guard, role check, scope check, Dash serialisation), it calls
each callback ``--repeat`` times and prints p50/p95/max in ms and the response
size in kB. For each fleet it also times the old full-table read (every site
read by ``overview.fleet_overview`` and turned into grid rows, as the page did
before it loaded windows) and prints the ratio of the first window to it.

    uv run python benchmarks/dashboards.py [--sites 20 --fleet 1000 --fleet 10000 --repeat 30]
    uv run python benchmarks/dashboards.py --fleet-only   # skip the site-page company
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kilowatch import db, fleet, migrations
from kilowatch.access import AccessScope, system_scope
from kilowatch.accounts import passwords, users
from kilowatch.redis_client import get_redis
from kilowatch.settings import load_settings, reset_settings
from kilowatch.telemetry import live, overview

PASSWORD = "benchmark password 42"
# point: SQL expression of the hourly/minute value at time g (site index i)
WAVES = {
    "meter.pv.p": "greatest(0, 40 * sin(pi() * (extract(hour FROM g) - 6) / 12))",
    "meter.load.p": "30 + 10 * sin(extract(epoch FROM g) / 20000 + i)",
    "meter.grid.p": "20 - 15 * sin(extract(epoch FROM g) / 9000 + i)",
    "pcs.p": "15 * sin(extract(epoch FROM g) / 7000 + i)",
    "bms.soc": "50 + 40 * sin(extract(epoch FROM g) / 30000 + i)",
    "bms.soh": "99 - extract(epoch FROM g - '2025-01-01'::timestamptz) / 86400 / 365",
    "bms.t_min": "22 + 3 * sin(extract(epoch FROM g) / 40000)",
    "bms.t_max": "28 + 4 * sin(extract(epoch FROM g) / 40000)",
    "bms.cell_v_min": "3.28 + 0.01 * sin(extract(epoch FROM g) / 5000)",
    "bms.cell_v_max": "3.31 + 0.01 * sin(extract(epoch FROM g) / 5000)",
}
COUNTERS = {"meter.pv.e": 15.0, "meter.load.e": 30.0, "meter.grid.e_import": 20.0,
            "meter.grid.e_export": 5.0, "pcs.e_charge": 8.0, "pcs.e_discharge": 7.5}


class Bench:
    """A private database, Redis prefix and Dash app on the local stack."""

    def __init__(self, reuse: str | None = None) -> None:
        token = reuse.rsplit("_", 1)[1] if reuse else secrets.token_hex(4)
        base = os.environ.get("KILOWATCH_DATABASE_URL",
                              "postgresql://kilowatch@127.0.0.1:55432/kilowatch")
        self.admin_url = base.rsplit("/", 1)[0] + "/postgres"
        self.database = f"kw_bench_dash_{token}"
        self.url = base.rsplit("/", 1)[0] + "/" + self.database
        self.env = {"KILOWATCH_DATABASE_URL": self.url,
                    "KILOWATCH_REDIS_PREFIX": f"kwbench-{token}",
                    "KILOWATCH_LOG_LEVEL": "ERROR"}
        os.environ.update(self.env)
        reset_settings()
        self.settings = load_settings()

    def create(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with db.connect(self.url, autocommit=True) as conn:
            migrations.upgrade(conn)

    def drop(self) -> None:
        db.close_pools()
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.database)))
        client = redis.Redis.from_url(self.settings.redis_url)
        for key in client.scan_iter(self.env["KILOWATCH_REDIS_PREFIX"] + ":*"):
            client.delete(key)


def _company(conn, name: str, sites: int, timezone: str) -> tuple[int, list[int]]:
    scope = system_scope("benchmark")
    company = fleet.create_company(conn, scope, name)
    conn.execute("INSERT INTO sites (company_id, name, timezone) "
                 "SELECT %s, %s || ' ' || lpad(g::text, 5, '0'), %s "
                 "FROM generate_series(1, %s) g", (company, name, timezone, sites))
    conn.execute("INSERT INTO devices (site_id, serial, model, rated_power_kw, capacity_kwh, "
                 "online, last_seen) SELECT id, %s || '-' || id, 'HES-XL', 125, 250, true, now() "
                 "FROM sites WHERE company_id = %s", (name[:4].upper(), company))
    devices = [r["id"] for r in conn.execute(
        "SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id WHERE s.company_id = %s "
        "ORDER BY d.id", (company,))]
    return company, devices


def _points(conn) -> dict[str, int]:
    return {r["name"]: r["id"] for r in conn.execute("SELECT id, name FROM points")}


def _seed_table(conn, table: str, step: str, devices: list[int], start: datetime,
                end: datetime) -> None:
    ids = _points(conn)
    reset_at = start + (end - start) / 2
    for index, device in enumerate(devices):
        conn.execute("INSERT INTO device_points (device_id, point_id) "
                     "SELECT %s, unnest(%s::int[]) ON CONFLICT DO NOTHING",
                     (device, [ids[n] for n in [*WAVES, *COUNTERS]]))
        for name, wave in WAVES.items():
            conn.execute(sql.SQL(
                "INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count) "
                "SELECT g, %(device)s, %(point)s, v, v - 1, v + 1, v, 60 FROM ("
                " SELECT g, {wave} AS v FROM generate_series(%(start)s::timestamptz,"
                " %(end)s::timestamptz, %(step)s::interval) g, (SELECT %(i)s AS i) x) y"
            ).format(table=sql.Identifier(table), wave=sql.SQL(wave)),
                {"device": device, "point": ids[name], "start": start, "end": end,
                 "step": step, "i": index})
        for name, rate in COUNTERS.items():  # kWh per hour, reset to zero half-way
            conn.execute(sql.SQL(
                "INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count) "
                "SELECT g, %(device)s, %(point)s, v, v, v, v, 60 FROM ("
                " SELECT g, %(rate)s * extract(epoch FROM g - CASE WHEN g < %(reset)s"
                " THEN %(start)s ELSE %(reset)s END) / 3600 AS v"
                " FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz,"
                " %(step)s::interval) g) y").format(table=sql.Identifier(table)),
                {"device": device, "point": ids[name], "rate": rate, "start": start,
                 "end": end, "step": step, "reset": reset_at})


def seeded_before(bench: Bench) -> dict:
    """Find what :func:`seed` created in a kept database."""
    with db.connect(bench.url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT d.id, d.site_id FROM devices d JOIN sites s ON s.id = d.site_id "
            "JOIN companies c ON c.id = s.company_id WHERE c.name = 'Bench' ORDER BY d.id "
            "LIMIT 1").fetchone()
        fleets = conn.execute(
            "SELECT c.id, count(*) AS n FROM companies c JOIN sites s ON s.company_id = c.id "
            "WHERE c.name LIKE 'Fleet %%' GROUP BY c.id ORDER BY n").fetchall()
    accounts = {f"fleet{f['n']}": f"admin@fleet{f['n']}.bench.example" for f in fleets}
    if row:
        accounts["bench"] = "admin@bench.bench.example"
    return {"site": row and row["site_id"], "device": row and row["id"], "accounts": accounts,
            "fleets": {f["n"]: f["id"] for f in fleets}}


def _seed_bench(conn, args, now: datetime) -> tuple[int, list[int]]:
    """The site-page company: a year of hourly rows, a month of minutes, two hours raw."""
    hour = now.replace(minute=0)
    started = time.monotonic()
    company, devices = _company(conn, "Bench", args.sites, "Europe/Paris")
    _seed_table(conn, "telemetry_1h", "1 hour", devices,
                hour - timedelta(days=args.hourly_days), hour - timedelta(hours=1))
    print(f"seeded hourly rows: {time.monotonic() - started:.0f} s", flush=True)
    _seed_table(conn, "telemetry_1m", "1 minute", devices,
                now - timedelta(days=args.minute_days), now - timedelta(minutes=1))
    print(f"seeded minute rows: {time.monotonic() - started:.0f} s", flush=True)
    ids = _points(conn)
    conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                 "SELECT g, d, p, 10 * random() FROM generate_series(%s::timestamptz, "
                 "%s::timestamptz, '10 seconds') g, unnest(%s::int[]) d, "
                 "unnest(%s::int[]) p", (now - timedelta(hours=2), now, devices,
                                         [ids[n] for n in WAVES]))
    conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s WHERE rollup = "
                 "'1h'", (hour, hour))
    conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s WHERE rollup = "
                 "'1m'", (now, now))
    return company, devices


def _seed_fleet(conn, size: int, now: datetime) -> tuple[int, list[int]]:
    """A fleet company: today's hourly counters, alarms on one site in 20, one offline in 50."""
    hour = now.replace(minute=0)
    ids = _points(conn)
    company, devices = _company(conn, f"Fleet {size}", size, "America/New_York")
    conn.execute(
        "INSERT INTO telemetry_1h (bucket, device_id, point_id, avg, min, max, last, count) "
        "SELECT g, d, p, 1, 1, 1, extract(epoch FROM g - %s::timestamptz) / 3600 * 10, 60 "
        "FROM generate_series(%s::timestamptz, %s::timestamptz, '1 hour') g, "
        "unnest(%s::int[]) d, unnest(%s::int[]) p ON CONFLICT DO NOTHING",
        (hour - timedelta(days=2), hour - timedelta(hours=30), hour - timedelta(hours=1),
         devices, [ids[n] for n in COUNTERS]))
    conn.execute(
        "INSERT INTO alarms (device_id, site_id, code, severity, source, message, "
        "raised_at, last_raised_at) SELECT d.id, d.site_id, 'BMS_OVERTEMP', "
        "(ARRAY['critical','major','minor','warning'])[1 + d.id %% 4], 'device', 'hot', "
        "now(), now() FROM devices d WHERE d.id = ANY(%s) AND d.id %% 20 = 0", (devices,))
    conn.execute("UPDATE devices SET online = false, last_seen = now() - interval '1 hour' "
                 "WHERE id = ANY(%s) AND id %% 50 = 7", (devices,))
    return company, devices


def seed(bench: Bench, args) -> dict:
    """Create the companies, their rollups, live hashes, alarms and users."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    started = time.monotonic()
    companies, live_devices, fleets = {}, [], {}
    site = device = None
    with db.connect(bench.url, autocommit=True) as conn:
        if not args.fleet_only:
            companies["bench"], devices = _seed_bench(conn, args, now)
            live_devices += devices
            site = conn.execute("SELECT site_id FROM devices WHERE id = %s",
                                (devices[0],)).fetchone()["site_id"]
            device = devices[0]
        for size in args.fleet:
            company, devices = _seed_fleet(conn, size, now)
            companies[f"fleet{size}"], fleets[size] = company, company
            live_devices += devices
            print(f"seeded a fleet of {size}: {time.monotonic() - started:.0f} s", flush=True)
        conn.execute("ANALYZE")
        accounts = {}
        scope = system_scope("benchmark")
        for label, company in companies.items():
            email = f"admin@{label}.bench.example"
            users.create_user(conn, scope, email=email, role="admin", company_id=company,
                              password_hash=passwords.hash_password(PASSWORD),
                              must_change_password=False)
            accounts[label] = email
        offline = {r["id"] for r in conn.execute("SELECT id FROM devices WHERE NOT online")}
    client = redis.Redis.from_url(bench.settings.redis_url)
    writer = live.LiveWriter(client)
    values = {"bms.soc": 55.0, "pcs.p": 12.0, "meter.pv.p": 30.0, "meter.load.p": 40.0,
              "meter.grid.p": -2.0, **{name: 300.0 for name in COUNTERS}}
    for chunk in range(0, len(live_devices), 200):
        batch = live_devices[chunk:chunk + 200]
        writer.write({d: (now, 1, values) for d in batch}, last_seen=now.timestamp(),
                     committed_at=now.timestamp(), offline=[d for d in batch if d in offline])
    print(f"seeded everything: {time.monotonic() - started:.0f} s", flush=True)
    return {"site": site, "device": device, "accounts": accounts, "fleets": fleets}


# ---- measuring ----------------------------------------------------------------------------------

def _login(app, email: str):
    client = app.server.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={"email": email, "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 302, "login failed"
    assert client.get("/_dash-dependencies").status_code == 200
    return client


def _body(app, output: str, values: dict) -> dict:
    key = next(k for k in app.callback_map if output in k.strip(".").split("..."))
    entry = app.callback_map[key]

    def items(dependencies):
        return [{"id": d["id"], "property": d["property"],
                 "value": values.get(f"{d['id']}.{d['property']}")} for d in dependencies]

    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1].split("@")[0]}
               for part in key.strip(".").split("...")]
    inputs = items(entry["inputs"])
    return {"output": key, "outputs": outputs[0] if len(outputs) == 1 else outputs,
            "inputs": inputs, "state": items(entry["state"]),
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in inputs]}


def measure(client, app, output: str, values: dict, repeat: int) -> tuple[list[float], int]:
    """Post one callback ``repeat`` times (after a warm-up); return times in ms and size."""
    body = _body(app, output, values)
    sizes = []
    for _ in range(2):
        client.post("/_dash-update-component", json=body)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.post("/_dash-update-component", json=body)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (output, response.status_code)
        sizes.append(len(response.get_data()))
    return times, max(sizes)


def _site_values(site: int, tab: str, range_key: str) -> dict:
    return {"site-id.data": site, "site-tabs.active_tab": tab, "site-range.value": range_key}


def _fleet_window(request: dict, view: str = "all", search: str = "") -> dict:
    return {"fleet-grid.getRowsRequest": request, "fleet-filter.value": view,
            "fleet-search.value": search}


def cases(seeded: dict) -> list[tuple[str, str, str, dict]]:
    """Return (label, account, output, input values) of every measured callback."""
    site, device = seeded["site"], seeded["device"]
    cases_ = []
    if site is not None:
        cases_.append(("site live tiles (Redis)", "bench", "site-flow.figure",
                       {"site-id.data": site}))
        for range_key, label in (("yesterday", "24 h"), ("30d", "30 days"),
                                 ("12m", "12 months")):
            for tab, output in (("power", "site-power-graph.figure"),
                                ("battery", "site-battery-graph.figure"),
                                ("health", "site-health-graph.figure"),
                                ("energy", "site-energy-graph.figure")):
                cases_.append((f"site {tab} {label}", "bench", output,
                               _site_values(site, tab, range_key)))
        cases_.append(("site energy, last 12 months", "bench",
                       "site-energy-months-graph.figure",
                       {"site-id.data": site, "site-tabs.active_tab": "energy"}))
        cases_.append(("explorer 12 months, 2 points", "bench", "explorer-graph.figure",
                       {"explorer-device.value": device, "explorer-range.value": "12m",
                        "explorer-points.value": ["pcs.p", "bms.soc"]}))
    for size in sorted(seeded["fleets"]):
        account, n, rows = f"fleet{size}", f"{size:,}", "fleet-grid.getRowsResponse"
        last = {"startRow": max(size - 100, 0), "endRow": size,
                "sortModel": [{"colId": "name", "sort": "desc"}]}
        filtered = {"startRow": 0, "endRow": 100,
                    "sortModel": [{"colId": "alarms", "sort": "asc"}],
                    "filterModel": {"name": {"filterType": "text", "type": "contains",
                                             "filter": "7"},
                                    "alarms": {"filterType": "number", "type": "greaterThan",
                                               "filter": 0}}}
        cases_ += [
            (f"fleet first window, {n}", account, rows,
             _fleet_window({"startRow": 0, "endRow": 100})),
            (f"fleet last window by name, {n}", account, rows, _fleet_window(last)),
            (f"fleet filtered+sorted, {n}", account, rows, _fleet_window(filtered)),
            (f"fleet search+problems, {n}", account, rows,
             _fleet_window({"startRow": 0, "endRow": 100}, "problems", "12")),
            (f"fleet summary (kpis), {n}", account, "fleet-kpis.children",
             {"fleet-refresh.n_intervals": 1}),
            (f"fleet page layout, {n}", account, "_pages_content.children",
             {"_pages_location.pathname": "/", "_pages_location.search": ""}),
        ]
    return cases_


def measure_full_table(bench: Bench, company: int, repeat: int) -> tuple[list[float], int]:
    """Time the page's old full-table read in-process: every site, its grid row, as JSON."""
    from dashboards.components.telemetry.tiles import fleet_row

    scope = AccessScope(role="admin", company_id=company)
    client = get_redis(bench.settings)
    times, size = [], 0
    with db.connect(bench.url, autocommit=True) as conn:
        for run in range(repeat + 2):
            started = time.perf_counter()
            sites = overview.fleet_overview(conn, client, scope)
            body = json.dumps([fleet_row(s) for s in sites], default=str)
            if run >= 2:  # two warm-up runs, as for the callbacks
                times.append((time.perf_counter() - started) * 1000)
            size = max(size, len(body.encode()))
    return times, size


def _print(label: str, times: list[float], size: int) -> None:
    print(f"{label:34} {statistics.median(times):8.1f} {_percentile(times, 0.95):8.1f} "
          f"{max(times):8.1f} {size / 1000:7.1f}", flush=True)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    """Seed, measure, print the table, and clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--fleet", type=int, action="append",
                        help="Sites of one fleet company (repeatable; default 1000 and 10000).")
    parser.add_argument("--fleet-only", action="store_true",
                        help="Seed and measure only the fleet companies (no site pages).")
    parser.add_argument("--hourly-days", type=int, default=365)
    parser.add_argument("--minute-days", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--keep", action="store_true",
                        help="Keep the seeded database (and print its name) for inspection.")
    parser.add_argument("--reuse", metavar="DATABASE",
                        help="Measure on a database kept by an earlier --keep run.")
    args = parser.parse_args()
    args.fleet = args.fleet or [1000, 10000]
    bench = Bench(args.reuse)
    if args.reuse:
        args.keep = True
    else:
        bench.create()
    try:
        seeded = seeded_before(bench) if args.reuse else seed(bench, args)
        from dashboards.app import create_app

        app = create_app(bench.settings)
        clients = {label: _login(app, email) for label, email in seeded["accounts"].items()}
        print(f"\n{'callback':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'kB':>7}")
        figures = {}
        for label, account, output, values in cases(seeded):
            times, size = measure(clients[account], app, output, values, args.repeat)
            figures[label] = (_percentile(times, 0.95), size)
            _print(label, times, size)
        for size, company in sorted(seeded["fleets"].items()):
            times, body = measure_full_table(bench, company, args.repeat)
            label = f"old full table, {size:,} (in-proc)"
            _print(label, times, body)
            p95, kb = figures[f"fleet first window, {size:,}"]
            print(f"{'  first window / old full table':34} {'p95':>8} "
                  f"{p95 / _percentile(times, 0.95):8.2f} {'size':>8} {kb / body:7.3f}",
                  flush=True)
    finally:
        if args.keep:
            print(f"kept database {bench.database} (Redis prefix "
                  f"{bench.env['KILOWATCH_REDIS_PREFIX']})")
        else:
            bench.drop()


if __name__ == "__main__":
    main()
