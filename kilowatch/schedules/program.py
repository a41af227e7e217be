"""Reading a validated schedule: which mode applies when, and what each storage device runs.

Pure (no I/O), like :mod:`kilowatch.schedules.model`, which owns the schedule's rules;
the preview, the delivery and the simulator use it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import NamedTuple

from kilowatch.schedules.model import DAYS, MODE_PARAMS, minutes


class Setpoint(NamedTuple):
    """The mode in force at one instant and its parameters."""

    mode: str
    params: dict[str, float]


# ---- which mode applies when ----------------------------------------------------------

def mode_at(schedule: dict, t: dt.datetime) -> Setpoint:
    """Return the mode and parameters a validated schedule puts in force at aware time ``t``."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("mode_at needs a time with a time zone")
    local = t.astimezone(zoneinfo.ZoneInfo(schedule["timezone"]))
    seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    for period in periods_on(schedule, local.date()):
        if minutes(period["start"]) * 60 <= seconds < minutes(period["end"]) * 60:
            return Setpoint(period["mode"], _params(period["mode"], period))
    mode = schedule["default_mode"]
    return Setpoint(mode, _params(mode, schedule.get("default_params", {})))


def periods_on(schedule: dict, date: dt.date) -> list[dict]:
    """Return the periods in force on a local date: its exception's, or the weekly ones."""
    iso = date.isoformat()
    for exception in schedule.get("exceptions", []):
        if exception["date"] == iso:
            return exception.get("periods", [])
    day = DAYS[date.weekday()]
    return [p for p in schedule.get("periods", []) if day in p["days"]]


def day_program(schedule: dict, day: str | dt.date) -> list[tuple[str, str, Setpoint]]:
    """Cover 00:00–24:00 of a weekday name or a date with (start, end, setpoint) slices.

    Gaps between periods get the default mode, so a week timeline can be drawn
    straight from the result. A date uses its exception when it has one.
    """
    if isinstance(day, dt.date):
        periods = periods_on(schedule, day)
    else:
        periods = [p for p in schedule.get("periods", []) if day in p["days"]]
    default = Setpoint(schedule["default_mode"],
                       _params(schedule["default_mode"], schedule.get("default_params", {})))
    slices: list[tuple[str, str, Setpoint]] = []
    cursor = "00:00"
    for period in sorted(periods, key=lambda p: minutes(p["start"])):
        if minutes(period["start"]) > minutes(cursor):
            slices.append((cursor, period["start"], default))
        slices.append((period["start"], period["end"],
                       Setpoint(period["mode"], _params(period["mode"], period))))
        cursor = period["end"]
    if minutes(cursor) < 24 * 60:
        slices.append((cursor, "24:00", default))
    return slices


def _params(mode: str, source: dict) -> dict[str, float]:
    return {k: source[k] for k in MODE_PARAMS[mode] if k in source}


# ---- what each storage device runs ---------------------------------------------------

SHARED_PARAMS = ("power_kw", "grid_limit_kw")


def device_part(schedule: dict, device_kw: float, site_kw: float) -> dict:
    """Return the part of a site's validated schedule that one of its storage devices runs.

    The site's ``power_kw`` and ``grid_limit_kw`` are split between its storage devices
    in proportion to their rated power (``device_kw`` out of ``site_kw``), so the
    devices together deliver what the schedule asks and none is asked for more than
    its own rating. SoC limits apply to every device unchanged. A site's only
    device gets the schedule as it is.
    """
    if site_kw <= 0 or device_kw >= site_kw:
        return schedule

    def part(params: dict) -> dict:
        return device_params(params, device_kw, site_kw)

    result = {**schedule, "periods": [part(p) for p in schedule.get("periods", [])],
              "exceptions": [{**e, "periods": [part(p) for p in e.get("periods", [])]}
                             for e in schedule.get("exceptions", [])]}
    if "default_params" in schedule:
        result["default_params"] = part(schedule["default_params"])
    return result


def device_params(params: dict, device_kw: float, site_kw: float) -> dict:
    """Return one storage device's share of a site's mode parameters (see :func:`device_part`).

    Dispatch plans split their steps with it too (:mod:`kilowatch.dispatch.message`).
    """
    if site_kw <= 0 or device_kw >= site_kw:
        return params
    share = device_kw / site_kw
    split = {k: round(params[k] * share, 2) for k in SHARED_PARAMS if k in params}
    if "power_kw" in split:
        # Rounding never lifts a share above the device's rating nor down to 0 kW;
        # a site power above the site's rating stays too high, for the device to refuse.
        if params["power_kw"] <= site_kw:
            split["power_kw"] = min(split["power_kw"], device_kw)
        split["power_kw"] = max(split["power_kw"], 0.01)
    return {**params, **split}
