"""What the demo fleet shows: history window, tariff, storage strategies, and their check.

Each site gets a storage strategy in turn (peak shaving against the demand
charge, time-of-use arbitrage, self-consumption) as an operating schedule sized
from the simulated site's ratings and load, and every site gets the shipped
time-of-use tariff (``demo_tariff.json``, URDB-shaped, with demand charges)
with export compensation, from the first day of the history. Both go through
the ``kilowatch`` CLI as an operator would. The history covers the two
calendar months before the current one, so the last complete month has bills.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from kilowatch import db
from kilowatch.access import system_scope

TARIFF_FILE = Path(__file__).with_name("demo_tariff.json")
TARIFF_NAME = "Demo Business TOU-D"
TARIFF_CURRENCY = "EUR"
EXPORT_RATE = 0.05  # per kWh exported: the tariff's net billing compensation
STUCK_ALARM = "BMS_CELL_IMBALANCE"  # minor: the battery keeps running while it is raised
# Peak shaving keeps the grid import under 85 % of the storage's rated power (the
# simulated sites' loads peak between 0.8 and 1.6 times it, so the battery works).
PEAK_LIMIT_SHARE = 0.85
HISTORY_MONTHS = 2
BACKFILL_INTERVAL_S = 900  # one sample per device every 15 minutes: the bills' resolution
STRATEGIES = ("peak shaving", "time-of-use arbitrage", "optimized", "self-consumption")


def first_of_month(day: date, months_back: int = 0) -> date:
    """Return the first day of the month ``months_back`` months before ``day``'s."""
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def history_days(now: datetime) -> float:
    """Days of history covering the two months before ``now``'s in every time zone."""
    start = datetime.combine(first_of_month(now.date(), HISTORY_MONTHS) - timedelta(days=1),
                             datetime.min.time(), UTC)  # a day early: zones east of UTC
    return math.ceil((now - start).total_seconds() / 864) / 100


def raw_retention_for(days: float, configured: int) -> int:
    """The raw retention the services need to accept ``days`` of history."""
    return max(configured, math.floor(days) + 2)


def tariff_start(now: datetime, days: float) -> date:
    """The first day of the first month the history covers in full (at most this month's)."""
    covered = (now - timedelta(days=days - 1)).date()  # a day late: zones west of UTC
    start = covered if covered.day == 1 else first_of_month(covered, -1)
    return min(start, first_of_month(now.date()))


def strategy(position: int) -> str:
    """Return the storage strategy of the demo's site number ``position`` (from 0)."""
    return STRATEGIES[position % len(STRATEGIES)]


def schedule_for(name: str, device: dict) -> dict:
    """Return the operating schedule of a strategy, sized from the storage's ratings.

    ``device`` has the site's ``timezone`` and the storage's ``rated_power_kw`` and
    ``capacity_kwh`` as registered.
    """
    schedule: dict = {"timezone": device["timezone"], "periods": [], "exceptions": []}
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    rated_kw, capacity_kwh = device["rated_power_kw"], device["capacity_kwh"]
    if name == "peak shaving":
        limit = round(rated_kw * PEAK_LIMIT_SHARE, 1)
        return {**schedule, "default_mode": "peak_shaving",
                "default_params": {"grid_limit_kw": limit, "soc_min": 10}}
    if name == "time-of-use arbitrage":
        # Charge off-peak before 07:00, discharge over the 17:00–21:00 on-peak hours,
        # and keep PV surplus by day with a reserve for the evening.
        charge = min(rated_kw, round(capacity_kwh / 6, 1))
        discharge = min(rated_kw, round(capacity_kwh * 0.85 / 4, 1))
        return {**schedule, "default_mode": "self_consumption",
                "default_params": {"soc_min": 40, "soc_max": 95},
                "periods": [
                    {"days": weekdays, "start": "00:00", "end": "07:00", "mode": "charge",
                     "power_kw": charge, "soc_max": 95},
                    {"days": weekdays, "start": "17:00", "end": "21:00", "mode": "discharge",
                     "power_kw": discharge, "soc_min": 10}]}
    if name == "optimized":  # the worker plans it every 15 minutes from forecasts
        return {**schedule, "default_mode": "optimized", "default_params": {}}
    return {**schedule, "default_mode": "self_consumption",
            "default_params": {"soc_min": 10, "soc_max": 95}}


def describe(name: str, schedule: dict) -> str:
    """One line saying what a strategy's schedule does."""
    if name == "peak shaving":
        return f"peak shaving at {schedule['default_params']['grid_limit_kw']:g} kW"
    if name == "time-of-use arbitrage":
        charge, discharge = schedule["periods"]
        return (f"time-of-use arbitrage (charge {charge['power_kw']:g} kW 00:00–07:00, "
                f"discharge {discharge['power_kw']:g} kW 17:00–21:00 on weekdays)")
    if name == "optimized":
        return "optimized (a dispatch plan from load and PV forecasts every 15 minutes)"
    return "self-consumption"


def tariff_import_args(company: str) -> list[str]:
    """Return the ``kilowatch`` arguments importing the demo tariff for the company."""
    return ["tariff", "import", str(TARIFF_FILE), "--company", company, "--name", TARIFF_NAME,
            "--currency", TARIFF_CURRENCY, "--export-rate", f"{EXPORT_RATE:g}"]


def schedule_of(device: dict) -> tuple[str, dict]:
    """Return the strategy and schedule of a demo device's site (SIM-0001 peak shaving …)."""
    name = strategy(int(device["serial"].rsplit("-", 1)[1]) - 1)
    return name, schedule_for(name, device)


def problems(company: str, last_month: date | None) -> list[str]:
    """Say what the demo does not show yet; empty when everything is there.

    Checks a schedule applied by every storage device, a dispatch plan applied by
    those of a site offered the optimizer, battery power in the last hour on every
    device, an active device alarm and, unless ``last_month`` is None (a history too
    short for it), that month's bills with savings on every site and a device alarm
    raised and cleared in the history.
    """
    with db.connect(autocommit=True) as conn:
        devices = conn.execute(_DEVICES_SQL, {"company": company}).fetchall()
        alarms = conn.execute(_ALARMS_SQL, {"company": company}).fetchone()
        bills = {} if last_month is None else {row["site_id"]: row for row in conn.execute(
            _BILLS_SQL, {"company": company, "month": last_month}).fetchall()}
    found = [f"{d['serial']}: no schedule applied" for d in devices if not d["applied"]]
    found += [f"{d['serial']}: no battery power in the last hour" for d in devices
              if not d["active"]]
    found += [f"{d['serial']}: no dispatch plan applied" for d in devices if not d["planned"]]
    if last_month is not None:
        found += [f"site {d['site_id']}: no savings in {last_month:%Y-%m}" for d in devices
                  if not bills.get(d["site_id"], {}).get("saved")]
    if last_month is not None and not alarms["history"]:
        found.append("no cleared device alarm in the history")
    if not alarms["active"]:
        found.append("no active device alarm")
    return found if devices else ["no demo device"]


def applied_plans(company: str) -> int:
    """Count the company's storage devices following a dispatch plan they applied."""
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            """SELECT count(DISTINCT pd.device_id) AS n FROM dispatch_plan_deliveries pd
               JOIN devices d ON d.id = pd.device_id JOIN sites s ON s.id = d.site_id
               JOIN companies c ON c.id = s.company_id
               WHERE c.name = %s AND pd.status = 'applied'""", (company,)).fetchone()["n"]


_DEVICES_SQL = """
SELECT d.serial, d.site_id,
       EXISTS (SELECT 1 FROM schedule_deliveries sd
               JOIN schedule_revisions r ON r.id = sd.revision_id
               WHERE sd.device_id = d.id AND sd.status = 'applied'
                 AND r.revision = (SELECT max(revision) FROM schedule_revisions
                                   WHERE site_id = d.site_id)) AS applied,
       EXISTS (SELECT 1 FROM telemetry t JOIN points p ON p.id = t.point_id
               WHERE t.device_id = d.id AND p.name = 'pcs.p'
                 AND t.time > now() - interval '1 hour' AND abs(t.value) > 0.01) AS active,
       NOT s.has_optimizer OR EXISTS (SELECT 1 FROM dispatch_plan_deliveries pd
                                      WHERE pd.device_id = d.id AND pd.status = 'applied')
         AS planned
FROM devices d JOIN sites s ON s.id = d.site_id JOIN companies c ON c.id = s.company_id
WHERE c.name = %(company)s ORDER BY d.serial
"""
_ALARMS_SQL = """
SELECT count(*) FILTER (WHERE a.cleared_at IS NOT NULL) AS history,
       count(*) FILTER (WHERE a.cleared_at IS NULL) AS active
FROM alarms a JOIN sites s ON s.id = a.site_id JOIN companies c ON c.id = s.company_id
WHERE c.name = %(company)s AND a.source = 'device'
"""
_BILLS_SQL = """
SELECT b.site_id, bool_and(b.final)
       AND max(b.total) FILTER (WHERE b.scenario = 'without_system')
         > max(b.total) FILTER (WHERE b.scenario = 'actual') AS saved
FROM bills b JOIN sites s ON s.id = b.site_id JOIN companies c ON c.id = s.company_id
WHERE c.name = %(company)s AND b.period_start = %(month)s
GROUP BY b.site_id HAVING count(*) = 3
"""


def report_id(site_id: int) -> int | None:
    """Return the id of the site's newest commissioning report, if one was issued."""
    with db.connect(autocommit=True) as conn:
        row = conn.execute("SELECT max(id) AS id FROM commissioning_reports WHERE site_id = %s",
                           (site_id,)).fetchone()
    return row["id"]


def commission(site_ids: list[int], settings) -> str:
    """Issue the first site's commissioning report (once); return what to print.

    The next site stays in the middle of commissioning: its checklist shows what
    is still open (the demo admin is not set to receive its alarm e-mails).
    """
    # Imported here: every `kilowatch` command imports this module, and the report's PDF
    # library alone would add a third of a second to each of them.
    from kilowatch.commissioning import checklist as commissioning_checklist
    from kilowatch.commissioning import report as commissioning_report

    scope = system_scope("demo")
    with db.connect(autocommit=True) as conn:
        if not commissioning_report.list_reports(conn, scope, site_ids[0]):
            commissioning_report.issue(conn, scope, settings, site_ids[0],
                                       comment="Commissioned by the demo: storage strategy, "
                                               "tariff and two months of history in place.")
        line = f"commissioning: report issued for site {site_ids[0]}"
        if len(site_ids) > 1:
            items = commissioning_checklist.checklist(conn, scope, site_ids[1])
            line += (f"; site {site_ids[1]} in progress, "
                     f"{sum(not item.ok for item in items)} of {len(items)} checklist items open")
    return line
