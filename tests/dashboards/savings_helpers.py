"""Test data for the savings and tariff pages: a TOU tariff and a site's metered energy.

``seed_energy`` stores the cumulative counters of one meter device every 15
minutes (a reading per quarter hour is enough for exact 15-minute energy) and
rolls them up with the worker's code: an office load, PV, and a battery that
charges around noon and discharges in the weekday evening peak, so that the
three bills differ.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.billing import tariff_store, tariffs
from kilowatch.telemetry import coverage, rollups
from kilowatch.telemetry import storage as telemetry

QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
COUNTERS = {"grid_import": "meter.grid.e_import", "grid_export": "meter.grid.e_export",
            "load": "meter.load.e", "pv": "meter.pv.e"}


def tou_structure(currency: str = "EUR") -> dict:
    """Weekday 17-21 h peak energy and demand periods, a flat demand charge, a fixed charge."""
    weekday = [[1 if 17 <= h < 21 else 0 for h in range(24)] for _ in range(12)]
    weekend = [[0] * 24 for _ in range(12)]
    return {
        "currency": currency,
        "energy": {"periods": [{"label": "Off-peak", "tiers": [{"rate": 0.15}]},
                               {"label": "Peak", "tiers": [{"rate": 0.40}]}],
                   "weekday": weekday, "weekend": weekend},
        "demand": {"periods": [{"label": "Off-peak", "tiers": [{"rate": 0.0}]},
                               {"label": "Peak", "tiers": [{"rate": 8.0}]}],
                   "weekday": weekday, "weekend": weekend},
        "flat_demand": {"periods": [{"tiers": [{"rate": 10.0}]}], "months": [0] * 12},
        "fixed_charge": {"amount": 25.0, "per": "month"},
        "export": {"compensation": "net_billing", "rate": 0.05},
    }


def assign_tou(conn, company_id: int, site_id: int, valid_from: date,
               name: str = "Office TOU") -> int:
    """Create the TOU tariff for a company and assign it to a site; return the tariff id."""
    scope = system_scope("test")
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company_id, name=name,
                                           tariff=tariffs.parse(tou_structure()))
    tariff_store.assign_tariff(conn, scope, site_id=site_id, tariff_id=tariff_id,
                               valid_from=valid_from)
    return tariff_id


def flows_kw(moment: datetime, timezone: str) -> dict[str, float]:
    """Return the average kW of load, PV and battery (+ discharge) of a quarter hour."""
    local = moment.astimezone(ZoneInfo(timezone))
    hour = local.hour + local.minute / 60
    weekday = local.weekday() < 5
    load = 60.0 if weekday and 8 <= hour < 18 else 20.0
    pv = max(0.0, 50.0 * math.sin(math.pi * (hour - 7) / 12)) if 7 <= hour < 19 else 0.0
    battery = 0.0
    if weekday and 11 <= hour < 15:
        battery = -20.0
    elif weekday and 17 <= hour < 21:
        battery = 20.0
    return {"load": load, "pv": round(pv, 3), "battery": battery}


def seed_energy(conn, site_id: int, start: datetime, end: datetime, *,
                skip: tuple[datetime, datetime] | None = None) -> int:
    """Register a meter on the site and write its counters for [start, end); return its id.

    ``skip`` leaves a stretch without readings (a data gap).
    """
    site = fleet.get_site(conn, system_scope("test"), site_id)
    device = fleet.register_device(conn, system_scope("test"), site_id=site_id,
                                   serial=f"SAV-{secrets.token_hex(4)}", model="meter")
    points = {row["name"]: row["id"] for row in conn.execute(
        "SELECT id, name FROM points WHERE name = ANY(%s)", (list(COUNTERS.values()),))}
    totals = dict.fromkeys(COUNTERS, 0.0)
    rows = [(start, name, 0.0) for name in COUNTERS]
    moment = start
    while moment < end:
        flow = flows_kw(moment, site["timezone"])
        grid = flow["load"] - flow["pv"] - flow["battery"]
        kwh = {"load": flow["load"] / 4, "pv": flow["pv"] / 4,
               "grid_import": max(grid, 0.0) / 4, "grid_export": max(-grid, 0.0) / 4}
        for name in COUNTERS:
            totals[name] += kwh[name]
        moment += QUARTER
        if skip is None or not skip[0] < moment <= skip[1]:
            rows += [(moment, name, totals[name]) for name in COUNTERS]
    with conn.transaction():
        telemetry.copy_samples(conn, [(t, device, points[COUNTERS[name]], value)
                                      for t, name, value in rows])
        lo, hi = coverage.floor(start, HOUR), coverage.ceil(end + QUARTER, HOUR)
        rollups.compute_minutes(conn, lo, hi, devices=[device])
        rollups.compute_hours(conn, lo, hi, devices=[device])
        conn.execute("UPDATE rollup_state SET done_until = greatest(coalesce(done_until, %s), "
                     "%s), watermark = greatest(coalesce(watermark, %s), %s)", (hi, hi, hi, hi))
    return device


def month_start(moment: datetime, timezone: str) -> datetime:
    """Return local midnight of the first day of ``moment``'s month, in UTC."""
    local = moment.astimezone(ZoneInfo(timezone))
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
