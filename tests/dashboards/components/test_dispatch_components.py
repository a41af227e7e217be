"""Dispatch figures and cards: a plan against the telemetry, forecast accuracy (no database)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import plotly.io as pio

from dashboards.components.dispatch import cards, charts
from kilowatch.dispatch.forecast import STEP, DayAccuracy, Series
from kilowatch.dispatch.views import ForecastAccuracy, PlannedSteps, PlanView
from kilowatch.telemetry.history import History, Resolution
from kilowatch.telemetry.history import Series as Points
from tests.dashboards.components.test_charts import _decoded

NOW = datetime(2026, 6, 3, 10, 0, tzinfo=UTC)
TZ = "Europe/Paris"


def _steps(count: int = 8) -> PlannedSteps:
    starts = [NOW - 4 * STEP + k * STEP for k in range(count)]
    return PlannedSteps(starts, [50.0 + k for k in range(count)], [-20.0] * count, [30.0] * count)


def _actual() -> History:
    times = [NOW - 4 * STEP + k * STEP for k in range(4)]
    points = {name: Points(name, unit, times, [value] * 4, [value] * 4, [value] * 4)
              for name, unit, value in (("bms.soc", "%", 52.0), ("pcs.p", "kW", -18.0),
                                        ("meter.grid.p", "kW", 28.0))}
    return History(1, TZ, times[0], NOW, Resolution("1m", STEP), points)


def _view(plan: dict | None = None, failure: dict | None = None, steps=None) -> PlanView:
    return PlanView(1, TZ, "EUR", plan, failure, steps or _steps(),
                    _actual() if plan else None, NOW)


PLAN = {"made_at": NOW, "revision": 7, "plan": {
    "expected_cost": 88.0, "cost_without_battery": 130.5, "savings": 42.5,
    "why": ["Demand: holds the peak to 12.5 kW (the month so far 12.0 kW, 15.0 kW without "
            "the battery)", "charge Wed 03:00–05:00: 40.0 kWh at 0.1/kWh",
            "expected cost 88.00, 42.50 less than without the battery"]}}


def test_the_plan_figure_draws_planned_dashed_and_actual_solid_in_three_panels():
    figure = charts.plan_figure(_view(PLAN))
    pio.from_json(json.dumps(figure))  # a valid Plotly figure
    traces = figure["data"]
    assert [t["line"]["dash"] for t in traces] == ["dash", "solid"] * 3
    assert [t["yaxis"] for t in traces] == ["y", "y", "y2", "y2", "y3", "y3"]
    assert list(_decoded(traces[0]["y"])) == [50.0 + k for k in range(8)]
    assert list(_decoded(traces[3]["y"])) == [-18.0] * 4
    # the planned SoC is drawn at its step's end, the measured average at its bucket's middle
    assert _decoded(traces[0]["x"])[0] - _decoded(traces[1]["x"])[0] == STEP.total_seconds() * 500
    assert figure["layout"]["shapes"][0]["x0"] == _decoded(traces[0]["x"])[4] - 15 * 60_000


def test_the_plan_figure_says_when_no_plan_covers_the_day():
    figure = charts.plan_figure(_view(None, steps=PlannedSteps([], [], [], [])))
    assert figure["data"] == []
    assert "No plan covers" in figure["layout"]["annotations"][0]["text"]


def test_the_summary_gives_the_bills_the_savings_and_why():
    text = json.dumps(cards.plan_summary(_view(PLAN)), default=str)
    assert "88.00 EUR" in text and "130.50 EUR" in text and "42.50 EUR" in text
    assert "holds the peak to 12.5 kW" in text and "charge Wed 03:00" in text
    assert "expected cost 88.00" not in text  # said by the tiles already
    assert "Wed 03 Jun 12:00" in text  # made at, in the site's time


def test_the_summary_without_a_plan_is_the_empty_state_and_a_failure_is_said():
    text = json.dumps(cards.plan_summary(_view(None)), default=str)
    assert cards.NO_PLAN in text
    failed = {"made_at": NOW, "error": "site 'Depot' has no tariff in June 2026"}
    text = json.dumps(cards.plan_summary(_view(PLAN, failure=failed)), default=str)
    assert "has no tariff in June 2026" in text and "42.50 EUR" in text


def _accuracy(days: dict) -> ForecastAccuracy:
    start = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
    values = np.array([30.0, np.nan, 31.0, 32.0])
    series = {kind: Series(start, values) for kind in ("load", "pv")}
    return ForecastAccuracy(1, TZ, start, series, series, days)


def test_the_accuracy_table_lists_each_day_newest_first():
    load = [DayAccuracy(date(2026, 6, 1), 96, 3.0, 0.1), DayAccuracy(date(2026, 6, 2), 96, 2.5,
                                                                      0.083)]
    pv = [DayAccuracy(date(2026, 6, 2), 60, 1.234, None)]
    table = json.dumps(cards.accuracy_table(_accuracy({"load": load, "pv": pv})), default=str)
    assert table.index("Tue 02 Jun") < table.index("Mon 01 Jun")
    assert "2.50 kW" in table and "8 %" in table and "1.23 kW" in table and "3.00 kW" in table
    empty = json.dumps(cards.accuracy_table(_accuracy({"load": [], "pv": []})), default=str)
    assert "No day has both" in empty


def test_the_accuracy_figure_draws_forecast_and_actual_of_load_and_pv():
    figure = charts.accuracy_figure(_accuracy({}))
    assert [t["name"] for t in figure["data"]] == [
        "Consumption forecast", "Consumption actual", "PV forecast", "PV actual"]
    assert np.isnan(_decoded(figure["data"][0]["y"])[1])  # a missing step stays a gap
    start = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)
    empty = ForecastAccuracy(1, TZ, start, {"load": Series(start, np.full(4, np.nan))}, {}, {})
    assert "No day-ahead forecast" in json.dumps(charts.accuracy_figure(empty))


def test_the_plan_figure_spans_the_past_day_and_the_plan():
    figure = charts.plan_figure(_view(PLAN))
    low, high = figure["layout"]["xaxis"]["range"]
    assert high - low == (timedelta(days=1) + 4 * STEP).total_seconds() * 1000
