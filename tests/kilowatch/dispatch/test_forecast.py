"""Load and PV forecasts from a site's history, and their accuracy per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kilowatch.dispatch import forecast, plan, solar
from kilowatch.dispatch.forecast import Series
from tests.kilowatch.dispatch import helpers

PARIS = "Europe/Paris"
START = datetime(2026, 5, 3, 22, 0, tzinfo=UTC)  # Monday 4 May 2026, 00:00 in Paris


def base_load(start, count, holidays=()):
    """Workdays 9-17 h busy, Saturdays half, Sundays (and holidays) quiet, in Paris time."""
    index = pd.date_range(start, periods=count, freq="15min").tz_convert(PARIS)
    busy = (index.hour >= 9) & (index.hour < 17)
    weekday = np.where(np.isin(index.date, list(holidays)), 6, index.day_of_week)
    return 10 + np.where(weekday < 5, 30, np.where(weekday == 5, 15, 0)) * busy


def test_load_forecast_repeats_the_weekday_profile_at_the_recent_level():
    history = base_load(START, 28 * 96).astype(float)
    history[-7 * 96:] *= 1.2  # the last week runs 20 % higher
    ahead = START + 28 * 96 * forecast.STEP
    predicted = forecast.forecast_load(Series(START, history), PARIS, ahead)
    assert len(predicted) == forecast.HORIZON_STEPS
    assert predicted == pytest.approx(1.2 * base_load(ahead, 192), rel=1e-9)


def test_holidays_are_sundays_in_the_history_and_ahead():
    holiday_then, holiday_ahead = date(2026, 5, 25), date(2026, 6, 1)  # two Mondays
    history = base_load(START, 28 * 96, holidays=[holiday_then]).astype(float)
    ahead = START + 28 * 96 * forecast.STEP  # Monday 1 June
    special = [holiday_then, holiday_ahead]
    predicted = forecast.forecast_load(Series(START, history), PARIS, ahead,
                                       special_days=special)
    assert predicted == pytest.approx(base_load(ahead, 192, holidays=[holiday_ahead]))
    plain = forecast.forecast_load(Series(START, history), PARIS, ahead)
    # Without knowing, the holiday in the history drags the Monday profile down.
    assert plain[40] < base_load(ahead, 192)[40] - 5


def test_load_forecast_needs_history():
    with pytest.raises(ValueError, match="no load history"):
        forecast.forecast_load(Series(START, np.full(96, np.nan)), PARIS, START)


def test_daily_accuracy_is_mae_and_normalised_mae_per_local_day():
    actual = Series(START, np.r_[np.full(96, 10.0), np.full(96, 20.0)])
    predicted = Series(START, np.r_[np.full(96, 12.0), np.full(48, 20.0), np.full(48, np.nan)])
    first, second = forecast.daily_accuracy(predicted, actual, PARIS)
    assert (first.day, first.steps, first.mae_kw, first.nmae) == (date(2026, 5, 4), 96, 2.0, 0.2)
    assert (second.day, second.steps, second.mae_kw, second.nmae) == (date(2026, 5, 5), 48,
                                                                       0.0, 0.0)


LAT, LON = 43.6, 1.44


def synthetic_pv(start, days, tilt, azimuth, scale, clearness):
    """PV made with pvlib's clear sky on a known plane, each day at its clearness."""
    sky = solar.clear_sky(LAT, LON, start, days * 96)
    clear = scale * solar.plane_irradiance(sky, tilt, azimuth)
    return clear * np.repeat(clearness, 96), clear


def test_pv_fit_recovers_orientation_scale_and_usual_clearness():
    rng = np.random.default_rng(5)
    clearness = np.where(rng.random(28) < 0.3, 1.0, rng.uniform(0.3, 0.8, 28))
    start = datetime(2026, 5, 1, tzinfo=UTC)
    values, _ = synthetic_pv(start, 28, 30.0, 225.0, 0.05, clearness)
    model = solar.fit_pv(Series(start, values), LAT, LON)
    assert (model.tilt, model.azimuth) == (30.0, 225.0)
    assert model.kw_per_w_m2 == pytest.approx(0.05, rel=0.01)
    assert model.peak_kw == pytest.approx(50, rel=0.01)
    assert model.clearness == pytest.approx(np.average(clearness), abs=0.1)


def test_pv_forecast_starts_at_the_measured_clearness_and_fades_to_the_usual():
    start = datetime(2026, 5, 1, tzinfo=UTC)
    days = np.full(28, 0.9)
    values, _ = synthetic_pv(start, 28, 0.0, 180.0, 0.08, days)
    model = solar.fit_pv(Series(start, values), LAT, LON)
    now = start + timedelta(days=27, hours=12)  # midday of the last day: 2 h measured before
    dim = values.copy()
    dim[27 * 96:] *= 0.5 / 0.9  # today runs at half the clear sky
    predicted = solar.forecast_pv(model, Series(start, dim[:27 * 96 + 48]), now, 192)
    clear = model.kw_per_w_m2 * solar.plane_irradiance(solar.clear_sky(LAT, LON, now, 192),
                                                       0.0, 180.0)
    # The fitted scale is that of the clearest days (0.9 of the sky): today is 0.5 / 0.9 of it.
    assert model.clearness == pytest.approx(1.0, abs=0.03)
    assert predicted[0] == pytest.approx(0.5 / 0.9 * clear[0], rel=0.03)
    tomorrow_noon = 96
    ratio = predicted[tomorrow_noon] / clear[tomorrow_noon]
    assert 0.5 / 0.9 + 0.05 < ratio < model.clearness - 0.05


def test_pv_quantile_forecast_counts_on_less_pv_beyond_the_first_hour():
    rng = np.random.default_rng(8)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    values, _ = synthetic_pv(start, 28, 0.0, 180.0, 0.08, rng.uniform(0.4, 1.0, 28))
    model = solar.fit_pv(Series(start, values), LAT, LON)
    assert list(model.spread) == sorted(model.spread) and model.spread[0] < 0.9
    now = start + timedelta(days=28, hours=10)
    history = Series(start, values)
    plain = solar.forecast_pv(model, history, now, 192)
    low = solar.forecast_pv(model, history, now, 192, quantile=0.25)
    assert np.all(low <= plain + 1e-9)
    decile = np.interp(0.25, np.arange(1, 10) / 10, model.spread)
    assert low[0] / plain[0] > 1 - (1 - decile) * 0.25  # just ahead, the measured clearness
    assert low[96] / plain[96] == pytest.approx(decile, rel=1e-6)  # a day ahead, the quantile


def test_plans_count_on_cautious_pv_except_under_demand_charges():
    assert plan.pv_quantile(helpers.tariff()) == 0.25
    assert plan.pv_quantile(helpers.tariff(flat_kw=5.0)) is None
    assert plan.pv_quantile(helpers.tariff(tou_kw=5.0)) is None


def test_no_pv_history_means_no_pv():
    flat = Series(START, np.zeros(96 * 3))
    assert solar.fit_pv(flat, LAT, LON) is None
    assert solar.forecast_pv(None, flat, START, 8).tolist() == [0.0] * 8
