"""Preview a schedule: simulate the next 7 days of a site's battery following it.

The site's load and PV for the coming week are taken from its last 7 days
(:func:`kilowatch.telemetry.energy.site_energy` per 15 minutes, so counters, power
fallbacks and derived load all count), matched by local weekday and time of
day so that a DST change does not shift the profile. A slot without data takes
the average of the same time of day on the other days, and zero when the site
has no reading at all (the preview says so). The storage devices of the site
act as one battery (their rated powers and capacities added up) that starts
from their last measured state of charge and runs :func:`kilowatch.schedules.battery.step`
in the mode the schedule puts in force at the start of every 15-minute step.
Grid power is ``load − PV − battery`` (> 0 import), as on the site's meter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable

import psycopg
from psycopg import sql

from kilowatch.access import AccessScope, site_filter
from kilowatch.errors import UserFacingError
from kilowatch.fleet import STORAGE_MODELS
from kilowatch.schedules import battery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import program as schedule_program
from kilowatch.schedules import store as schedule_store
from kilowatch.telemetry import energy

STEP = dt.timedelta(minutes=15)
DAYS = 7
# Used when a storage device was registered without its capacity (the HES data sheets).
NOMINAL_CAPACITY_KWH = {"HES-L": 100.0, "HES-XL": 250.0, "HES-XXL": 500.0}
ASSUMED_SOC = 50.0
SOC_MAX_AGE = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Average load and PV power (kW) by local (weekday, minute of day) of a 15-minute slot."""

    load_kw: dict[tuple[int, int], float]
    pv_kw: dict[tuple[int, int], float]
    missing_share: float  # share of the past week's slots without a load value

    def at(self, local: dt.datetime) -> tuple[float, float]:
        """Return (load, PV) in kW expected at a local time."""
        key = (local.weekday(), local.hour * 60 + local.minute // 15 * 15)
        return _lookup(self.load_kw, key), _lookup(self.pv_kw, key)


def _lookup(values: dict[tuple[int, int], float], key: tuple[int, int]) -> float:
    if key in values:
        return values[key]
    same_time = [v for (_, minute), v in values.items() if minute == key[1]]
    return math.fsum(same_time) / len(same_time) if same_time else 0.0


@dataclasses.dataclass(frozen=True)
class PreviewStep:
    """One 15-minute step: the mode, powers in kW (battery > 0 discharge, grid > 0 import)."""

    start: dt.datetime
    mode: str
    load_kw: float
    pv_kw: float
    battery_kw: float
    grid_kw: float
    soc: float  # at the end of the step, %


@dataclasses.dataclass(frozen=True)
class Preview:
    """The simulated week with what it started from and notes on the data behind it."""

    timezone: str
    battery: battery.Battery
    initial_soc: float
    steps: list[PreviewStep]
    notes: tuple[str, ...] = ()

    @property
    def import_kwh(self) -> float:
        """Energy bought from the grid over the week."""
        return math.fsum(max(s.grid_kw, 0.0) for s in self.steps) * STEP / dt.timedelta(hours=1)

    @property
    def export_kwh(self) -> float:
        """Energy sent to the grid over the week."""
        return math.fsum(max(-s.grid_kw, 0.0) for s in self.steps) * STEP / dt.timedelta(hours=1)

    @property
    def peak_import(self) -> tuple[float, dt.datetime | None]:
        """The highest grid import (kW) and when it starts."""
        step = max(self.steps, key=lambda s: s.grid_kw, default=None)
        return (max(step.grid_kw, 0.0), step.start) if step else (0.0, None)


class NoStorage(UserFacingError, LookupError):
    """The site has no storage device, so there is no battery to simulate."""


# ---- the simulation (pure) ------------------------------------------------------------

def simulate(schedule: dict, storage: battery.Battery, *, start: dt.datetime, soc: float,
             site_power: Callable[[dt.datetime], tuple[float, float]], days: int = DAYS,
             step: dt.timedelta = STEP) -> list[PreviewStep]:
    """Step a battery through ``days`` of a validated schedule from aware ``start``.

    ``site_power(local_time)`` returns the expected (load, PV) in kW at a local time
    of the schedule's zone.
    """
    tz = schedules.zone(schedule["timezone"])
    steps: list[PreviewStep] = []
    moment = start.astimezone(dt.UTC)
    for _ in range(int(dt.timedelta(days=days) / step)):
        setpoint = schedule_program.mode_at(schedule, moment)
        load_kw, pv_kw = site_power(moment.astimezone(tz))
        result = battery.step(storage, soc, setpoint.mode, setpoint.params, load_kw=load_kw,
                              pv_kw=pv_kw, dt_s=step.total_seconds())
        soc = result.soc
        steps.append(PreviewStep(moment, setpoint.mode, load_kw, pv_kw, result.power_kw,
                                 load_kw - pv_kw - result.power_kw, soc))
        moment += step
    return steps


def build_profile(site_energy: energy.SiteEnergy) -> Profile:
    """Average a site's past 15-minute energy into load and PV power by local slot."""
    tz = schedules.zone(site_energy.timezone)
    sums: dict[str, dict[tuple[int, int], list[float]]] = {"load": defaultdict(list),
                                                            "pv": defaultdict(list)}
    missing = 0
    for interval in site_energy.intervals:
        local = interval.start.astimezone(tz)
        key = (local.weekday(), local.hour * 60 + local.minute // 15 * 15)
        hours = (interval.end - interval.start) / dt.timedelta(hours=1)
        for quantity, bucket in sums.items():
            kwh = interval.kwh.get(quantity)
            if kwh is not None:
                bucket[key].append(kwh / hours)
        missing += interval.kwh.get("load") is None

    def average(bucket: dict[tuple[int, int], list[float]]) -> dict[tuple[int, int], float]:
        return {key: math.fsum(values) / len(values) for key, values in bucket.items()}

    total = len(site_energy.intervals)
    return Profile(average(sums["load"]), average(sums["pv"]),
                   missing / total if total else 1.0)


# ---- what the site starts from (database) ---------------------------------------------

def site_battery(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                 *, now: dt.datetime) -> tuple[battery.Battery, float | None]:
    """Return a visible site's storage as one battery and its last SoC (None when unknown).

    Raises NoStorage when the site has no storage device.
    """
    query = sql.SQL(
        """SELECT dev.model, dev.rated_power_kw, dev.capacity_kwh, soc.value AS soc
           FROM devices dev JOIN sites s ON s.id = dev.site_id
           LEFT JOIN LATERAL (
               SELECT t.value FROM telemetry t
               WHERE t.device_id = dev.id
                 AND t.point_id = (SELECT id FROM points WHERE name = 'bms.soc')
                 AND t.time > %(since)s AND t.time <= %(now)s AND t.value IS NOT NULL
               ORDER BY t.time DESC LIMIT 1) soc ON TRUE
           WHERE dev.site_id = %(site)s AND dev.model = ANY(%(models)s) AND {}
           ORDER BY dev.id"""
    ).format(site_filter(scope))
    rows = conn.execute(query, {"site": site_id, "models": list(STORAGE_MODELS), "now": now,
                                "since": now - SOC_MAX_AGE}).fetchall()
    if not rows:
        raise NoStorage("this site has no storage device to preview")
    for row in rows:
        row["power"] = schedule_store.rated_power(row)
        row["capacity"] = row["capacity_kwh"] or NOMINAL_CAPACITY_KWH[row["model"]]
    storage = battery.Battery(rated_power_kw=math.fsum(r["power"] for r in rows),
                              capacity_kwh=math.fsum(r["capacity"] for r in rows))
    measured = [r for r in rows if r["soc"] is not None]
    if not measured:
        return storage, None
    soc = math.fsum(r["soc"] * r["capacity"] for r in measured) / math.fsum(
        r["capacity"] for r in measured)
    return storage, min(100.0, max(0.0, soc))


def preview(conn: psycopg.Connection, scope: AccessScope, site_id: int, body: object, *,
            now: dt.datetime | None = None) -> Preview:
    """Validate a schedule for a visible site and simulate its next 7 days.

    Raises ScheduleInvalid for a schedule that breaks a rule, AccessDenied for a
    site outside the scope and NoStorage for a site without a storage device.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    limits = schedule_store.site_limits(conn, scope, site_id)
    checked = schedules.validate(body, limits, now=now)
    storage, soc = site_battery(conn, scope, site_id, now=now)
    start = now - dt.timedelta(minutes=now.minute % 15, seconds=now.second,
                               microseconds=now.microsecond)
    past = energy.site_energy(conn, scope, site_id, start - dt.timedelta(days=DAYS), start,
                              STEP, now=now)
    profile = build_profile(past)
    notes = _notes(profile, soc)
    steps = simulate(checked, storage, start=start, soc=ASSUMED_SOC if soc is None else soc,
                     site_power=profile.at)
    return Preview(limits.timezone, storage, ASSUMED_SOC if soc is None else soc, steps, notes)


def _notes(profile: Profile, soc: float | None) -> tuple[str, ...]:
    notes = []
    if not profile.load_kw:
        notes.append("No load was measured in the last 7 days: the preview assumes none.")
    elif profile.missing_share > 0.01:
        notes.append(f"{profile.missing_share:.0%} of the last 7 days has no load reading; "
                     "those times use the same time of day on other days.")
    if soc is None:
        notes.append(f"No recent state of charge: the preview starts at {ASSUMED_SOC:g} %.")
    return tuple(notes)
