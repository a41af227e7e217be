"""PV forecasts: pvlib's clear sky at the site, fitted to the site's own PV history (pure).

:func:`fit_pv` learns from the history which panel orientation (tilt, azimuth)
and which scale (kW per W/m² on the panel) best explain the clearest days, and
the usual clearness (measured over clear-sky output) of the recent days.
:func:`forecast_pv` is the clear-sky output of that array, times a clearness that
starts at what the last hours measured and fades towards the usual one.

Clear-sky irradiance (Ineichen with Linke turbidity, from
``pvlib.location.Location.get_clearsky``) is cached per place and UTC day, so a
site re-planned every 15 minutes computes each day once.
"""

from __future__ import annotations

import dataclasses
import warnings
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pvlib

from kilowatch.dispatch.forecast import STEP, STEPS_PER_DAY, Series

TILTS = (0.0, 15.0, 30.0, 45.0)
AZIMUTHS = (90.0, 135.0, 180.0, 225.0, 270.0)  # east, south-east, south, south-west, west
_ALBEDO = 0.2
_CLEAR_DAYS_SHARE = 0.25  # the clearest quarter of the days fixes orientation and scale
_DAYLIGHT_W_M2 = 50.0
_RECENT_STEPS = 8  # clearness measured over the last two hours
_NEAR_STEPS = 4.0  # a quantile forecast widens from the measured clearness over an hour
_FADE_STEPS = 48.0  # fading to the usual clearness with a time constant of twelve hours


_DAYS: dict[tuple[float, float, date], np.ndarray] = {}
_MAX_CACHED_DAYS = 65_536  # about 250 MB at most; whole days of many sites


def _clear_days(latitude: float, longitude: float, days: list[date]) -> None:
    """Compute the clear sky of whole UTC days in one pvlib call and cache each day."""
    location = pvlib.location.Location(latitude, longitude, tz="UTC")
    times = pd.DatetimeIndex([datetime.combine(day, time(0, 7, 30), UTC) + k * STEP
                              for day in days for k in range(STEPS_PER_DAY)])
    with warnings.catch_warnings():
        # pvlib still reads DatetimeIndex.dayofyear, which pandas announces it will drop.
        warnings.filterwarnings("ignore", message=r"DatetimeIndex\.dayofyear is deprecated")
        position = location.get_solarposition(times)
        sky = location.get_clearsky(times, model="ineichen", solar_position=position)
    table = np.vstack([sky["ghi"], sky["dni"], sky["dhi"], position["apparent_zenith"],
                       position["azimuth"]])
    if len(_DAYS) + len(days) > _MAX_CACHED_DAYS:
        _DAYS.clear()
    for index, day in enumerate(days):
        part = table[:, index * STEPS_PER_DAY:(index + 1) * STEPS_PER_DAY]
        part.setflags(write=False)
        _DAYS[(latitude, longitude, day)] = part


def clear_sky(latitude: float, longitude: float, start: datetime, count: int) -> np.ndarray:
    """Return the clear sky (5 × count: ghi, dni, dhi, zenith, azimuth) of steps from ``start``.

    Computed mid-step (Ineichen with Linke turbidity) and cached by place and UTC day.
    """
    start = start.astimezone(UTC)
    first = start.date()
    offset = round((start - datetime.combine(first, time(), UTC)) / STEP)
    days = [first + timedelta(days=k)
            for k in range((offset + count + STEPS_PER_DAY - 1) // STEPS_PER_DAY)]
    place = (round(latitude, 4), round(longitude, 4))
    missing = [day for day in days if (*place, day) not in _DAYS]
    if missing:
        _clear_days(*place, missing)
    table = np.hstack([_DAYS[(*place, day)] for day in days])
    return table[:, offset:offset + count]


def plane_irradiance(sky: np.ndarray, tilt: float, azimuth: float) -> np.ndarray:
    """Return the clear-sky irradiance (W/m²) on a plane of ``tilt`` and ``azimuth``."""
    ghi, dni, dhi, zenith, sun_azimuth = sky
    total = pvlib.irradiance.get_total_irradiance(tilt, azimuth, zenith, sun_azimuth, dni, ghi,
                                                  dhi, albedo=_ALBEDO, model="isotropic")
    return np.nan_to_num(np.asarray(total["poa_global"], dtype=float), nan=0.0).clip(0.0)


@dataclasses.dataclass(frozen=True)
class PvModel:
    """What the history says of a site's PV: orientation, scale and usual clearness."""

    latitude: float
    longitude: float
    tilt: float
    azimuth: float
    kw_per_w_m2: float
    clearness: float
    days: int
    # Deciles (10 % … 90 %) of a daylight step's output over the usual clear-sky output.
    spread: tuple[float, ...] = (1.0,) * 9

    @property
    def peak_kw(self) -> float:
        """The output at 1,000 W/m² on the panels (about the array's rating)."""
        return self.kw_per_w_m2 * 1000


def fit_pv(history: Series, latitude: float, longitude: float) -> PvModel | None:
    """Fit orientation and scale to the PV history; None when it shows no production."""
    sky = clear_sky(latitude, longitude, history.start, len(history.values))
    values = history.values
    known = ~np.isnan(values)
    if not known.any() or np.nanmax(values) <= 0:
        return None
    day_of = np.arange(len(values)) // STEPS_PER_DAY  # UTC days of the history
    horizontal = plane_irradiance(sky, 0.0, 180.0)
    clear_days = _clearest_days(values, horizontal, day_of, known)
    chosen = np.isin(day_of, clear_days) & known & (horizontal > _DAYLIGHT_W_M2)
    best: tuple[float, float, float, float] | None = None
    for tilt in TILTS:
        for azimuth in (AZIMUTHS if tilt else (180.0,)):
            plane = plane_irradiance(sky, tilt, azimuth)[chosen]
            scale = float(plane @ values[chosen] / max(plane @ plane, 1e-9))
            error = float(np.sum((values[chosen] - scale * plane) ** 2))
            if best is None or error < best[0]:
                best = (error, tilt, azimuth, scale)
    _, tilt, azimuth, scale = best
    expected = scale * plane_irradiance(sky, tilt, azimuth)
    daylight = known & (expected > 0)
    clearness = float(np.clip(values[daylight].sum() / max(expected[daylight].sum(), 1e-9),
                              0.0, 1.2))
    bright = daylight & (expected > scale * _DAYLIGHT_W_M2 * 4)
    ratios = values[bright] / (clearness * expected[bright]) if clearness > 0 else np.ones(1)
    spread = tuple(float(q) for q in np.quantile(ratios, np.arange(1, 10) / 10))
    return PvModel(latitude, longitude, tilt, azimuth, scale, clearness,
                   len(set(day_of[known])), spread)


def _clearest_days(values: np.ndarray, horizontal: np.ndarray, day_of: np.ndarray,
                   known: np.ndarray) -> np.ndarray:
    """The days whose production stood highest against the clear sky."""
    days = np.unique(day_of[known])
    ratios = []
    for day in days:
        mask = (day_of == day) & known
        sky = horizontal[mask].sum()
        ratios.append(values[mask].sum() / sky if sky > 0 else 0.0)
    keep = max(1, round(len(days) * _CLEAR_DAYS_SHARE))
    return days[np.argsort(ratios)[::-1][:keep]]


def forecast_pv(model: PvModel | None, history: Series, start: datetime, count: int, *,
                quantile: float | None = None) -> np.ndarray:
    """Forecast the PV output (kW) of ``count`` steps from ``start`` (zeros without PV).

    With ``quantile`` (0.1-0.9), the output the site stays above that often: the
    forecast times that decile of the history's spread, reached after the first
    hour (what the last hours measured holds best just ahead).
    """
    if model is None:
        return np.zeros(count)
    sky = clear_sky(model.latitude, model.longitude, start, count)
    clear = model.kw_per_w_m2 * plane_irradiance(sky, model.tilt, model.azimuth)
    recent = _recent_clearness(model, history, start)
    steps = np.arange(1, count + 1)
    clearness = np.full(count, model.clearness)
    if recent is not None:
        clearness += (recent - model.clearness) * np.exp(-steps / _FADE_STEPS)
    if quantile is not None:
        low = float(np.interp(quantile, np.arange(1, 10) / 10, model.spread))
        clearness *= 1 - (1 - low) * (1 - np.exp(-steps / _NEAR_STEPS))
    return clear * clearness


def _recent_clearness(model: PvModel, history: Series, start: datetime) -> float | None:
    """Measured over clear-sky output in the last daylight hours before ``start``, if any."""
    since = start - _RECENT_STEPS * STEP
    values = history.window(since, _RECENT_STEPS)
    sky = clear_sky(model.latitude, model.longitude, since, _RECENT_STEPS)
    clear = model.kw_per_w_m2 * plane_irradiance(sky, model.tilt, model.azimuth)
    usable = ~np.isnan(values) & (clear > model.kw_per_w_m2 * _DAYLIGHT_W_M2)
    if not usable.any():
        return None
    return float(np.clip(values[usable].sum() / clear[usable].sum(), 0.0, 1.2))
