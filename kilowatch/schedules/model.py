"""Operating schedules: the model, its validation, and diffs between revisions.

A schedule is the JSON object of docs/schedules.md (kilowatch/schemas/schedule.json):
a weekly program of periods in the site's time zone, dated exceptions that replace the weekly
program on their date, and a default mode for the time outside every period.
Periods are wall-clock times, so a period keeps its local hours across DST changes.
This module is pure (no I/O): the store, the CLI, the editor and the simulator use it;
:mod:`kilowatch.schedules.program` reads which mode a schedule puts in force when.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import zoneinfo
from typing import Any

from kilowatch.errors import UserFacingError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = dict(zip(DAYS, ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                            "Saturday", "Sunday"), strict=True))
MODE_PARAMS: dict[str, tuple[str, ...]] = {
    "idle": (),
    "charge": ("power_kw", "soc_max"),
    "discharge": ("power_kw", "soc_min"),
    "peak_shaving": ("grid_limit_kw", "soc_min"),
    "self_consumption": ("soc_min", "soc_max"),
    "optimized": (),
}
MODES = tuple(MODE_PARAMS)
PARAM_LABELS = {"power_kw": "power", "grid_limit_kw": "grid limit", "soc_min": "SoC min",
                "soc_max": "SoC max"}
_UNITS = {"power_kw": "kW", "grid_limit_kw": "kW", "soc_min": "%", "soc_max": "%"}
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_KEYS = {"timezone", "default_mode", "default_params", "periods", "exceptions", "revision"}
_EXCEPTION_KEYS = {"date", "name", "periods"}
MAX_PERIODS = 200  # weekly periods; also the most exceptions, and periods per exception


class ScheduleInvalid(UserFacingError, ValueError):
    """A schedule breaks one or more rules; ``errors`` lists them in plain words."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiteLimits:
    """What a site allows: its time zone, storage rated power, and optimiser."""

    timezone: str
    rated_power_kw: float | None = None
    has_optimizer: bool = False


# ---- formatting -----------------------------------------------------------------------

def minutes(hhmm: str) -> int:
    """Return minutes since midnight of an ``HH:MM`` time (``24:00`` is 1440)."""
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def format_days(days: list[str]) -> str:
    """Say which days a period runs on: ``Mon–Fri``, ``Sat, Sun`` or ``Monday``."""
    ordered = [d for d in DAYS if d in days]
    if len(ordered) == 1:
        return DAY_NAMES[ordered[0]]
    if len(ordered) == 7:
        return "every day"
    indexes = [DAYS.index(d) for d in ordered]
    if len(ordered) > 2 and indexes == list(range(indexes[0], indexes[-1] + 1)):
        return f"{ordered[0].title()}–{ordered[-1].title()}"
    return ", ".join(d.title() for d in ordered)


def format_params(mode: str, params: dict[str, Any]) -> str:
    """Describe a mode with its parameters: ``discharge 60 kW, SoC min 20 %``."""
    parts = [f"{PARAM_LABELS[k]} {_number(params[k])} {_UNITS[k]}"
             for k in MODE_PARAMS.get(mode, ()) if k in params]
    return f"{mode} ({', '.join(parts)})" if parts else mode


def format_period(period: dict[str, Any], date: str | None = None) -> str:
    """Describe a valid period in one line, for histories and diffs."""
    when = date or format_days(period["days"])
    return f"{when} {period['start']}–{period['end']} {format_params(period['mode'], period)}"


def _number(value: float) -> str:
    return f"{value:g}"


# ---- validation -----------------------------------------------------------------------

def validate(body: Any, limits: SiteLimits, *, now: dt.datetime | None = None) -> dict:
    """Check a schedule against every rule and return it normalised, or raise ScheduleInvalid."""
    if not isinstance(body, dict):
        raise ScheduleInvalid(["a schedule is a JSON object with timezone, default_mode, "
                               "periods and exceptions"])
    errors: list[str] = []
    _check_keys(body, _TOP_KEYS, "the schedule", errors)
    timezone = body.get("timezone")
    if timezone is None:
        errors.append(f"timezone is missing (this site runs on {limits.timezone})")
    elif timezone != limits.timezone:
        errors.append(f"timezone {timezone!r} is not the site's time zone {limits.timezone!r}")
    default = _check_default(body, limits, errors)
    periods = _check_weekly(body.get("periods", []), limits, errors)
    exceptions = _check_exceptions(body.get("exceptions", []), limits, now, errors)
    if errors:
        raise ScheduleInvalid(errors)
    return {"timezone": timezone, **default, "periods": periods, "exceptions": exceptions}


def _check_keys(obj: dict, allowed: set[str], where: str, errors: list[str]) -> None:
    for key in sorted(set(obj) - allowed, key=str):
        errors.append(f"{where}: unknown field {key!r} (allowed: {', '.join(sorted(allowed))})")


def _check_default(body: dict, limits: SiteLimits, errors: list[str]) -> dict:
    mode = body.get("default_mode")
    if mode is None:
        errors.append("default_mode is missing (the mode outside every period, e.g. idle)")
        return {}
    params = body.get("default_params", {})
    if not isinstance(params, dict):
        errors.append("default_params must be an object of the default mode's parameters")
        return {}
    if not _check_mode(mode, limits, "default mode", errors):
        return {}
    checked = _check_params(mode, params, limits, "default mode (default_params)", errors)
    return {"default_mode": mode, "default_params": checked} if checked else {
        "default_mode": mode}


def _check_mode(mode: Any, limits: SiteLimits, where: str, errors: list[str]) -> bool:
    if mode not in MODE_PARAMS:
        errors.append(f"{where}: unknown mode {mode!r} (one of {', '.join(MODES)})")
        return False
    if mode == "optimized" and not limits.has_optimizer:
        errors.append(f"{where}: mode optimized needs the dispatch optimiser, "
                      "which this site does not have")
        return False
    return True


def _check_params(mode: str, params: dict, limits: SiteLimits, where: str,
                  errors: list[str]) -> dict[str, float]:
    wanted = MODE_PARAMS[mode]
    takes = f"it takes {', '.join(wanted)}" if wanted else "it takes no parameters"
    checked: dict[str, float] = {}
    for key in sorted(set(params) - set(wanted), key=str):
        errors.append(f"{where}: {key} does not apply to {mode} ({takes})")
    for key in wanted:
        if key not in params:
            errors.append(f"{where}: {mode} needs {key}")
            continue
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            errors.append(f"{where}: {key} must be a number, not {value!r}")
            continue
        problem = _param_problem(key, value, limits)
        if problem:
            errors.append(f"{where}: {problem}")
        checked[key] = value
    low, high = checked.get("soc_min"), checked.get("soc_max")
    if low is not None and high is not None and not low < high:
        errors.append(f"{where}: SoC min {_number(low)} % must be below SoC max "
                      f"{_number(high)} %")
    return checked


def _param_problem(key: str, value: float, limits: SiteLimits) -> str | None:
    if key.startswith("soc_") and not 0 <= value <= 100:
        return f"{PARAM_LABELS[key]} {_number(value)} % is outside 0–100 %"
    if key == "power_kw":
        if value <= 0:
            return f"power {_number(value)} kW must be above 0"
        if limits.rated_power_kw is not None and value > limits.rated_power_kw:
            return (f"power {_number(value)} kW is above the site's rated storage power of "
                    f"{_number(limits.rated_power_kw)} kW")
    if key == "grid_limit_kw" and value < 0:
        return f"grid limit {_number(value)} kW must not be negative"
    return None


def _too_many(items: Any, what: str, errors: list[str]) -> bool:
    if not isinstance(items, list):
        errors.append(f"{what} must be a list")
        return True
    if len(items) > MAX_PERIODS:
        errors.append(f"{what}: at most {MAX_PERIODS}, not {len(items)}")
        return True
    return False


def _check_weekly(periods: Any, limits: SiteLimits, errors: list[str]) -> list[dict]:
    if _too_many(periods, "periods", errors):
        return []
    checked = []
    for index, period in enumerate(periods, 1):
        result = _check_period(period, limits, f"period {index}", None, errors)
        if result is not None:
            checked.append(result)
    for day in DAYS:
        _check_overlaps([p for p in checked if day in p["days"]], DAY_NAMES[day], errors)
    return checked


def _check_period(period: Any, limits: SiteLimits, where: str, date: str | None,
                  errors: list[str]) -> dict | None:
    """Check one period; return it normalised when its days and hours are usable."""
    if not isinstance(period, dict):
        errors.append(f"{where}: a period is an object with start, end and mode")
        return None
    weekly = date is None
    days = _check_days(period, where, errors) if weekly else None
    start = _check_time(period, "start", where, errors)
    end = _check_time(period, "end", where, errors)
    usable = bool(start and end and (days or not weekly))
    if start and end:
        where = f"{where} ({format_days(days) + ' ' if days else ''}{start}–{end})"
        if minutes(start) >= minutes(end):
            usable = False
            errors.append(f"{where}: start must be before end (a period may end at 24:00; "
                          "split a period that runs past midnight in two)")
    base = {"days", "start", "end", "mode"} if weekly else {"start", "end", "mode"}
    mode = period.get("mode")
    if mode is None:
        errors.append(f"{where}: mode is missing (one of {', '.join(MODES)})")
        _check_keys(period, base, where, errors)
        return None
    params = {k: v for k, v in period.items() if k not in base}
    if not weekly and params.pop("days", None) is not None:
        errors.append(f"{where}: days does not apply inside an exception (it covers its date)")
    checked = (_check_params(mode, params, limits, where, errors)
               if _check_mode(mode, limits, where, errors) else {})
    if not usable:
        return None
    head = {"days": days} if weekly else {}
    return {**head, "start": start, "end": end, "mode": mode, **checked}


def _check_days(period: dict, where: str, errors: list[str]) -> list[str] | None:
    days = period.get("days")
    if not isinstance(days, list) or not days:
        errors.append(f"{where}: days must be a non-empty list such as [\"mon\", \"tue\"]")
        return None
    bad = [d for d in days if d not in DAYS]
    if bad:
        errors.append(f"{where}: unknown day {bad[0]!r} (use {', '.join(DAYS)})")
        return None
    if len(set(days)) != len(days):
        errors.append(f"{where}: a day is listed twice")
        return None
    return [d for d in DAYS if d in days]


def _check_time(period: dict, key: str, where: str, errors: list[str]) -> str | None:
    value = period.get(key)
    if value is None:
        errors.append(f"{where}: {key} is missing (HH:MM)")
        return None
    if isinstance(value, str) and (_TIME.match(value) or (key == "end" and value == "24:00")):
        return value
    last = "24:00" if key == "end" else "23:59"
    errors.append(f"{where}: {key} {value!r} is not a time HH:MM from 00:00 to {last}")
    return None


def _check_overlaps(periods: list[dict], day: str, errors: list[str]) -> None:
    ordered = sorted(periods, key=lambda p: (minutes(p["start"]), minutes(p["end"])))
    reach: dict | None = None  # the earlier period that ends last
    for period in ordered:
        if reach is not None and minutes(period["start"]) < minutes(reach["end"]):
            errors.append(f"{day} {reach['start']}–{reach['end']} overlaps "
                          f"{day} {period['start']}–{period['end']}")
        if reach is None or minutes(period["end"]) > minutes(reach["end"]):
            reach = period


def _check_exceptions(exceptions: Any, limits: SiteLimits, now: dt.datetime | None,
                      errors: list[str]) -> list[dict]:
    if _too_many(exceptions, "exceptions", errors):
        return []
    today = local_today(limits.timezone, now)
    seen: set[str] = set()
    checked = []
    for index, exception in enumerate(exceptions, 1):
        result = _check_exception(exception, index, limits, today, errors)
        if result is None:
            continue
        if result["date"] in seen:
            errors.append(f"exception {result['date']} is listed twice")
        seen.add(result["date"])
        checked.append(result)
    return sorted(checked, key=lambda e: e["date"])


def _check_exception(exception: Any, index: int, limits: SiteLimits, today: dt.date,
                     errors: list[str]) -> dict | None:
    where = f"exception {index}"
    if not isinstance(exception, dict):
        errors.append(f"{where}: an exception is an object with date and periods")
        return None
    _check_keys(exception, _EXCEPTION_KEYS, where, errors)
    date = _check_date(exception.get("date"), where, errors)
    if date is None:
        return None
    where = f"exception {date}"
    if dt.date.fromisoformat(date) < today:
        errors.append(f"{where} is in the past (today is {today} in {limits.timezone})")
    name = exception.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 100):
        errors.append(f"{where}: name must be text of at most 100 characters")
    periods = exception.get("periods", [])
    if _too_many(periods, f"{where}: periods", errors):
        return None
    checked = [p for i, period in enumerate(periods, 1)
               if (p := _check_period(period, limits, f"{where}, period {i}", date, errors))]
    _check_overlaps(checked, date, errors)
    named = {"name": name} if isinstance(name, str) and name else {}
    return {"date": date, **named, "periods": checked}


def _check_date(value: Any, where: str, errors: list[str]) -> str | None:
    if value is None:
        errors.append(f"{where}: date is missing (YYYY-MM-DD)")
        return None
    if isinstance(value, str) and _DATE.match(value):
        try:
            dt.date.fromisoformat(value)
            return value
        except ValueError:
            pass
    errors.append(f"{where}: date {value!r} is not a calendar date YYYY-MM-DD")
    return None


def zone(timezone: str) -> zoneinfo.ZoneInfo:
    """Return the tz database zone of an IANA name."""
    return zoneinfo.ZoneInfo(timezone)


def local_today(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Return today's date in a time zone."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(zone(timezone)).date()


def canonical(schedule: dict) -> dict:
    """Return a stored schedule with its keys in reading order (jsonb does not keep it)."""
    def period(p: dict) -> dict:
        keys = ("days", "start", "end", "mode", *MODE_PARAMS.get(p.get("mode"), ()))
        return {k: p[k] for k in keys if k in p}

    head = {k: schedule[k] for k in ("timezone", "default_mode", "default_params")
            if k in schedule}
    exceptions = [{k: e[k] for k in ("date", "name") if k in e}
                  | {"periods": [period(p) for p in e.get("periods", [])]}
                  for e in schedule.get("exceptions", [])]
    return {**head, "periods": [period(p) for p in schedule.get("periods", [])],
            "exceptions": exceptions}


# ---- differences between revisions -----------------------------------------------------

def diff(old: dict, new: dict) -> list[str]:
    """Describe, one line each, what changed from one schedule revision to another."""
    lines: list[str] = []
    old_default = format_params(old["default_mode"], old.get("default_params", {}))
    new_default = format_params(new["default_mode"], new.get("default_params", {}))
    if old_default != new_default:
        lines.append(f"default mode: {old_default} → {new_default}")
    lines += _diff_periods(old.get("periods", []), new.get("periods", []), None)
    old_exc = {e["date"]: e for e in old.get("exceptions", [])}
    new_exc = {e["date"]: e for e in new.get("exceptions", [])}
    for date in sorted(old_exc.keys() | new_exc.keys()):
        if date not in new_exc:
            lines.append(f"removed exception {_exception_label(old_exc[date])}")
        elif date not in old_exc:
            lines.append(f"added exception {_exception_label(new_exc[date])}")
            lines += [f"  {format_period(p, date)}" for p in new_exc[date]["periods"]]
        elif old_exc[date] != new_exc[date]:
            lines.append(f"changed exception {_exception_label(new_exc[date])}")
            lines += ["  " + line for line in _diff_periods(
                old_exc[date]["periods"], new_exc[date]["periods"], date)]
    return lines


def _exception_label(exception: dict) -> str:
    name = exception.get("name")
    return f"{exception['date']} ({name})" if name else exception["date"]


def _diff_periods(old: list[dict], new: list[dict], date: str | None) -> list[str]:
    def slot(p: dict) -> tuple:
        return (tuple(p.get("days", ())), p["start"], p["end"])

    old_by_slot = {slot(p): p for p in old}
    new_by_slot = {slot(p): p for p in new}
    lines = []
    for key, period in old_by_slot.items():
        if key not in new_by_slot:
            lines.append(f"removed {format_period(period, date)}")
        elif new_by_slot[key] != period:
            lines.append(f"changed {format_period(period, date)} → "
                         f"{format_params(new_by_slot[key]['mode'], new_by_slot[key])}")
    lines += [f"added {format_period(p, date)}" for k, p in new_by_slot.items()
              if k not in old_by_slot]
    return lines
