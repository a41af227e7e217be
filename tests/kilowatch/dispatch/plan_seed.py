"""Stored plans and forecasts of a site, made by hand, for the views and site page tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from kilowatch.dispatch import plan, store
from kilowatch.dispatch.forecast import HORIZON_STEPS, STEP

LOAD_KW, PV_KW = 30.0, 20.0  # what tests.dashboards.seed meters on average


def battery_kw(start: datetime, timezone: str) -> float:
    """The planned battery power of a step: charge at night, discharge in the evening."""
    hour = start.astimezone(ZoneInfo(timezone)).hour
    return -20.0 if 1 <= hour < 5 else 20.0 if 17 <= hour < 21 else 0.0


def soc_after(start: datetime, timezone: str) -> float:
    """The planned SoC (%) at the end of a step: 10 % at night, 90 % from 05:00 to 17:00."""
    local = start.astimezone(ZoneInfo(timezone))
    hours = local.hour + local.minute / 60 + 0.25
    return float(np.interp(hours, (1, 5, 17, 21), (10, 90, 90, 10)))


def make_plan(start: datetime, timezone: str) -> plan.Plan:
    """A 48-hour plan from ``start`` with one demand peak and its charge/discharge windows."""
    steps, windows = [], []
    for k in range(HORIZON_STEPS):
        moment = start + k * STEP
        power = battery_kw(moment, timezone)
        soc = soc_after(moment, timezone)
        mode = "charge" if power < 0 else "discharge" if power > 0 else "idle"
        grid = LOAD_KW - PV_KW - power
        steps.append(plan.PlanStep(moment, mode, {"power_kw": abs(power)} if power else {},
                                   power, soc, grid, LOAD_KW, PV_KW, grid * 0.25 * 0.2))
        kind = "charge" if power < 0 else "discharge" if power > 0 else None
        if kind and windows and windows[-1].kind == kind and windows[-1].end == moment:
            last = windows[-1]
            windows[-1] = plan.Window(kind, last.start, moment + STEP, last.kwh + abs(power) / 4,
                                      last.rate)
        elif kind:
            windows.append(plan.Window(kind, moment, moment + STEP, abs(power) / 4,
                                       0.1 if kind == "charge" else 0.4))
    cost = sum(step.cost for step in steps)
    return plan.Plan(timezone, tuple(steps), cost, cost + 42.5, 0.0,
                     (plan.Peak("Demand", 12.0, 15.0, 12.5),), tuple(windows), 0.2)


def store_plans(conn, site_id: int, timezone: str, now: datetime) -> None:
    """Store a plan made a day ago, one every 6 hours since, and one at ``now``'s quarter."""
    latest = store.quarter(now)
    for hours in (24, 18, 12, 6, 0):
        start = latest - timedelta(hours=hours)
        store.store_plan(conn, site_id, start, make_plan(start, timezone))


def store_day_ahead(conn, site_id: int, timezone: str, now: datetime, *, days: int = 3,
                    load_kw: float = 33.0, pv_kw: float = 18.0) -> None:
    """Store a flat forecast made at each local midnight of the last ``days`` days."""
    tz = ZoneInfo(timezone)
    today = now.astimezone(tz).date()
    for back in range(days):
        midnight = datetime.combine(today - timedelta(days=back), datetime.min.time(), tz)
        store.store_forecasts(conn, site_id, midnight, np.full(HORIZON_STEPS, load_kw),
                              np.full(HORIZON_STEPS, pv_kw))


def follow_plan(conn, device_id: int, timezone: str, since: datetime, until: datetime) -> None:
    """Rewrite a device's minute rows of SoC, battery and grid power to follow the plans loosely.

    The site of ``tests.dashboards.seed`` meters 30 kW of load and 20 kW of PV; the
    battery runs 90 % of the planned power and the SoC lags the plan by a few points.
    """
    ids = {r["name"]: r["id"] for r in conn.execute(
        "SELECT id, name FROM points WHERE name IN ('pcs.p', 'bms.soc', 'meter.grid.p')")}
    rows = []
    minute = since.replace(second=0, microsecond=0)
    while minute < until:
        wobble = np.sin(minute.timestamp() / 1700)
        battery = 0.9 * battery_kw(minute, timezone) + 0.8 * wobble
        soc = soc_after(minute - 2 * STEP, timezone) + 3 * wobble
        values = {"pcs.p": battery, "bms.soc": soc,
                  "meter.grid.p": LOAD_KW - PV_KW - battery + 1.5 * wobble}
        rows += [(minute, device_id, ids[name], value, value, value, value)
                 for name, value in values.items()]
        minute += timedelta(minutes=1)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry_1m (bucket, device_id, point_id, avg, min, max, last, count) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 6) ON CONFLICT (bucket, device_id, point_id) "
            "DO UPDATE SET avg = excluded.avg, min = excluded.min, max = excluded.max, "
            "last = excluded.last", rows)
