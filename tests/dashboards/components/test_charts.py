"""Figure builders: pure functions from data to Plotly figures (no browser, no database)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import plotly.io as pio
import pytest

from dashboards.components.telemetry import charts, live
from kilowatch.telemetry.energy import EnergyInterval, SiteEnergy
from kilowatch.telemetry.history import History, Resolution, Series

START = datetime(2026, 7, 1, 22, 0, tzinfo=UTC)  # midnight in Paris (summer time)
MINUTE = timedelta(minutes=1)


def _series(point, values, *, start=START, step=MINUTE, unit="kW"):
    times = [start + i * step for i in range(len(values))]
    return Series(point, unit, times, list(values), list(values), list(values))


def _history(series, *, width=MINUTE, timezone="Europe/Paris"):
    return History(1, timezone, START, START + timedelta(days=1), Resolution("1m", width),
                   {s.point: s for s in series})


def _decoded(array) -> np.ndarray:
    """Decode a trace array as Plotly ships it (base64 typed array) or as a plain list."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.array(array, dtype="f8")


def _json(figure) -> dict:
    return json.loads(pio.to_json(figure))


def test_times_are_drawn_as_the_site_wall_clock():
    x = charts.local_ms([START, START + timedelta(hours=1)], "Europe/Paris")
    shown = [datetime.fromtimestamp(v / 1000, UTC).replace(tzinfo=None) for v in x]
    assert shown == [datetime(2026, 7, 2, 0, 0), datetime(2026, 7, 2, 1, 0)]


def test_power_figure_has_one_trace_per_flow_in_site_time():
    values = [10.0] * 60
    figure = _json(charts.power_figure(_history(
        [_series(p, values) for p in charts.POWER_POINTS])))
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["PV", "Consumption", "Grid (+ import)", "Battery (+ discharge)"]
    first_x = _decoded(figure["data"][0]["x"])[0]
    assert datetime.fromtimestamp(first_x / 1000, UTC).hour == 0  # local midnight
    assert figure["layout"]["xaxis"]["type"] == "date"


def test_a_hole_in_the_data_is_a_gap_never_a_zero():
    series = _series("meter.pv.p", [5.0] * 10)
    holed = Series("meter.pv.p", "kW", series.times[:4] + series.times[7:], [5.0] * 7,
                   [5.0] * 7, [5.0] * 7)
    figure = _json(charts.power_figure(_history([holed])))
    y = _decoded(figure["data"][0]["y"])
    assert len(y) == 8 and np.isnan(y[4])
    assert 0.0 not in y


def test_missing_bucket_values_become_nan():
    series = Series("bms.soc", "%", [START, START + MINUTE], [50.0, None], [50.0, None],
                    [50.0, None])
    figure = _json(charts.soc_temperature_figure(_history([series])))
    y = _decoded(figure["data"][0]["y"])
    assert y[0] == 50.0 and np.isnan(y[1])


def test_no_data_gives_a_message_instead_of_an_empty_axis():
    figure = _json(charts.power_figure(_history([])))
    assert figure["data"] == []
    assert "No power data" in figure["layout"]["annotations"][0]["text"]


def test_two_thousand_points_per_trace_stay_well_under_200_kb():
    values = list(np.sin(np.arange(2000) / 50) * 40)
    history = _history([_series(p, values) for p in charts.POWER_POINTS])
    assert len(pio.to_json(charts.power_figure(history))) < 200_000


def test_soc_and_temperature_panels_use_min_and_max():
    t_max = Series("bms.t_max", "°C", [START], [30.0], [29.0], [35.0])
    t_min = Series("bms.t_min", "°C", [START], [20.0], [18.0], [21.0])
    figure = _json(charts.soc_temperature_figure(_history([t_max, t_min])))
    by_name = {trace["name"]: _decoded(trace["y"])[0] for trace in figure["data"]}
    assert by_name == {"Highest cell": 35.0, "Lowest cell": 18.0}


def test_cell_spread_is_highest_max_minus_lowest_min_in_millivolts():
    high = Series("bms.cell_v_max", "V", [START], [3.30], [3.29], [3.31])
    low = Series("bms.cell_v_min", "V", [START], [3.28], [3.27], [3.285])
    spread = charts.cell_spread(_history([high, low]))
    assert spread.avg == [pytest.approx(40.0)]
    figure = _json(charts.health_figure(_history([high, low])))
    assert [t["name"] for t in figure["data"]] == ["Cell spread"]


def _energy(intervals, quantities):
    return SiteEnergy(1, "Europe/Paris", intervals, {q: "counter" for q in quantities})


def test_energy_bars_put_sources_above_zero_and_uses_below():
    day = timedelta(days=1)
    intervals = [EnergyInterval(START + i * day, START + (i + 1) * day,
                                {"pv": 30.0, "load": 50.0, "grid_import": 20.0,
                                 "grid_export": None}, frozenset()) for i in range(3)]
    figure = _json(charts.energy_figure(_energy(intervals, ["pv", "load", "grid_import",
                                                            "grid_export"])))
    bars = {trace["name"]: _decoded(trace["y"]) for trace in figure["data"]}
    assert list(bars["PV production"]) == [30.0] * 3
    assert list(bars["Consumption"]) == [-50.0] * 3
    assert np.isnan(bars["Grid export"]).all()  # unknown, not zero
    assert figure["layout"]["barmode"] == "relative"


def test_explorer_gives_each_unit_its_own_axis():
    history = _history([_series("pcs.p", [1.0, 2.0]), _series("bms.soc", [50.0, 51.0],
                                                               unit="%")])
    figure = _json(charts.explorer_figure([history], ["SIM-1"]))
    assert [t["name"] for t in figure["data"]] == ["SIM-1 pcs.p", "SIM-1 bms.soc"]
    assert [t.get("yaxis", "y") for t in figure["data"]] == ["y", "y2"]
    assert figure["layout"]["yaxis2"]["title"]["text"] == "%"


@pytest.mark.parametrize(("values", "arrows"), [
    ({"pv_kw": 10.0, "grid_kw": -4.0, "load_kw": 5.0, "battery_kw": -1.0}, 4),
    ({"pv_kw": 0.0, "grid_kw": 3.0, "load_kw": 3.0, "battery_kw": 0.0}, 2),
    ({}, 0),
])
def test_energy_flow_draws_an_arrow_per_active_flow(values, arrows):
    figure = _json(live.energy_flow_figure(values))
    drawn = [a for a in figure["layout"]["annotations"] if a.get("showarrow")]
    assert len(drawn) == arrows


def test_energy_flow_arrows_point_the_way_energy_goes():
    figure = _json(live.energy_flow_figure({"grid_kw": -4.0, "battery_kw": 2.0}))
    arrows = {round(a["ax"], 2): a for a in figure["layout"]["annotations"]
              if a.get("showarrow")}
    hub_x = live.HUB[0]
    grid = next(a for a in arrows.values() if a["y"] == pytest.approx(0.5))
    assert grid["x"] < grid["ax"] < hub_x  # exporting: from the hub towards the grid
    battery = next(a for a in arrows.values() if a["x"] == pytest.approx(hub_x))
    assert battery["ay"] < battery["y"] < 0.5  # discharging: from the battery up to the hub
    texts = " ".join(a["text"] for a in figure["layout"]["annotations"])
    assert "4.0 kW" in texts and "2.0 kW" in texts


def test_soc_gauge_shows_the_value_or_stays_grey():
    assert _json(live.soc_gauge_figure(64.4))["data"][0]["value"] == 64.4
    unknown = _json(live.soc_gauge_figure(None))["data"][0]
    assert unknown["gauge"]["bar"]["color"] == "#e5e7eb"


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (12.345, "12.3 kW"),
                                             (-2500.0, "-2.50 MW"), (float("nan"), "—")])
def test_format_kw(value, text):
    assert live.format_kw(value) == text
