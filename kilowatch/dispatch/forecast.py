"""Load forecasts from a site's recent weeks, and forecast accuracy per day (pure, no I/O).

A forecast is a :class:`Series`: 15-minute average powers (kW) from a UTC start,
NaN where there is no value. The load forecast takes, for each future step, the
mean of the same local weekday and 15-minute slot over the recent weeks, where
holidays and schedule exceptions count as Sundays (on both sides: a special
day of the history is a Sunday sample, a special day ahead is forecast as a
Sunday). That profile is scaled to the level of the last week (how far its actual
load stood from the profile), and the error of the last hour fades out over the
first hours ahead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

STEP = timedelta(minutes=15)
STEPS_PER_DAY = 96
HORIZON_STEPS = 192  # 48 hours
SUNDAY = 6
_LEVEL_DAYS = 7
_LEVEL_BOUNDS = (0.5, 2.0)
_RECENT_STEPS = 4  # the last hour
_RECENT_FADE_STEPS = 4.0  # its error fades with a time constant of an hour


@dataclasses.dataclass(frozen=True)
class Series:
    """Average power (kW) per 15-minute step from ``start`` (UTC); NaN = no value."""

    start: datetime
    values: np.ndarray

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("a series starts at an aware time")
        if self.start.timestamp() % STEP.total_seconds():
            raise ValueError("a series starts on a 15-minute boundary")

    @property
    def end(self) -> datetime:
        """The end of the last step."""
        return self.start + STEP * len(self.values)

    def starts(self) -> list[datetime]:
        """The UTC start of every step."""
        return [self.start + k * STEP for k in range(len(self.values))]

    def window(self, start: datetime, count: int) -> np.ndarray:
        """Return ``count`` values from ``start``, NaN outside the series."""
        offset = round((start - self.start) / STEP)
        result = np.full(count, np.nan)
        lo, hi = max(offset, 0), min(offset + count, len(self.values))
        if hi > lo:
            result[lo - offset:hi - offset] = self.values[lo:hi]
        return result


def step_starts(start: datetime, count: int) -> list[datetime]:
    """Return the UTC starts of ``count`` steps from ``start``."""
    return [(start + k * STEP).astimezone(UTC) for k in range(count)]


def _local_keys(start: datetime, count: int, timezone: str,
                special: Collection[date]) -> tuple[np.ndarray, np.ndarray]:
    """Day type (0-6, special days as Sunday) and local 15-minute slot of each step."""
    index = pd.date_range(start, periods=count, freq="15min").tz_convert(timezone)
    weekday = np.asarray(index.day_of_week)
    if special:
        days = np.asarray(index.date)
        weekday = np.where(np.isin(days, list(special)), SUNDAY, weekday)
    slot = np.asarray(index.hour * 4 + index.minute // 15)
    return weekday, slot


def _profile(values: np.ndarray, weekday: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Mean load per day type and local slot (7×96, NaN = none)."""
    sums = np.zeros((7, STEPS_PER_DAY))
    counts = np.zeros((7, STEPS_PER_DAY))
    known = ~np.isnan(values)
    np.add.at(sums, (weekday[known], slot[known]), values[known])
    np.add.at(counts, (weekday[known], slot[known]), 1)
    with np.errstate(invalid="ignore"):
        profile = sums / counts
    return _fill_profile(profile)


def _fill_profile(profile: np.ndarray) -> np.ndarray:
    """Fill a day type without data from its kind (workdays, Saturday, Sunday), then any day."""
    groups = ((0, 1, 2, 3, 4), (5,), (6,))
    for day in range(7):
        for slot in np.flatnonzero(np.isnan(profile[day])):
            kin = next(g for g in groups if day in g)
            for candidates in (kin, (0, 1, 2, 3, 4, 5, 6)):
                values = profile[list(candidates), slot]
                values = values[~np.isnan(values)]
                if values.size:
                    profile[day, slot] = values.mean()
                    break
    return profile


def forecast_load(history: Series, timezone: str, start: datetime, count: int = HORIZON_STEPS,
                  *, special_days: Collection[date] = (), weeks: int = 4) -> np.ndarray:
    """Forecast the load (kW) of ``count`` steps from ``start`` from the history before it."""
    profile_steps = weeks * 7 * STEPS_PER_DAY
    used = min(len(history.values), max(profile_steps, _LEVEL_DAYS * STEPS_PER_DAY))
    values = history.values[len(history.values) - used:]
    day, part = _local_keys(history.end - used * STEP, used, timezone, special_days)
    tail = slice(max(used - profile_steps, 0), None)
    profile = _profile(values[tail], day[tail], part[tail])
    if np.isnan(profile).all():
        raise ValueError("no load history to forecast from")
    weekday, slot = _local_keys(start, count, timezone, special_days)
    forecast = profile[weekday, slot]
    level = slice(max(used - _LEVEL_DAYS * STEPS_PER_DAY, 0), None)
    actual, expected = values[level], profile[day[level], part[level]]
    known = ~np.isnan(actual)
    level = 1.0
    if known.any() and expected[known].sum() > 0:
        level = float(np.clip(actual[known].sum() / expected[known].sum(), *_LEVEL_BOUNDS))
    forecast = forecast * level
    recent = actual[-_RECENT_STEPS:] - level * expected[-_RECENT_STEPS:]
    if history.end == start and not np.isnan(recent).all():
        fade = np.exp(-np.arange(1, count + 1) / _RECENT_FADE_STEPS)
        forecast = forecast + float(np.nanmean(recent)) * fade
    return np.maximum(forecast, 0.0)


@dataclasses.dataclass(frozen=True)
class DayAccuracy:
    """How far a forecast stood from what happened on one local day."""

    day: date
    steps: int
    mae_kw: float
    nmae: float | None  # MAE over the mean actual; None when that mean is 0


def daily_accuracy(forecast: Series, actual: Series, timezone: str) -> list[DayAccuracy]:
    """Return MAE and normalised MAE per local day over the steps both series have."""
    observed = actual.window(forecast.start, len(forecast.values))
    index = pd.date_range(forecast.start, periods=len(forecast.values),
                          freq="15min").tz_convert(timezone)
    days = np.asarray(index.date)
    both = ~np.isnan(observed) & ~np.isnan(forecast.values)
    result = []
    for day in sorted(set(days[both])):
        chosen = both & (days == day)
        error = float(np.mean(np.abs(forecast.values[chosen] - observed[chosen])))
        mean = float(np.mean(np.abs(observed[chosen])))
        result.append(DayAccuracy(day, int(chosen.sum()), error, error / mean if mean else None))
    return result
