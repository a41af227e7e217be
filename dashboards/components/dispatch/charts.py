"""Figures of dispatch: the plan against the telemetry, and day-ahead forecasts against meters.

Pure functions from :mod:`kilowatch.dispatch.views` data to Plotly figures in the
schema :mod:`dashboards.components.telemetry.charts` uses (plain dicts, local
wall-clock times, base64 typed arrays). Planned values are dashed, actual ones solid.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np

from dashboards.components.telemetry import charts
from kilowatch.dispatch.forecast import STEP, Series
from kilowatch.dispatch.views import ForecastAccuracy, PlanView

PLAN_ROWS = (("soc", "bms.soc", "State of charge", "%", charts.COLORS["soc"]),
             ("battery_kw", "pcs.p", "Battery (+ discharge)", "kW", charts.COLORS["battery"]),
             ("grid_kw", "meter.grid.p", "Grid (+ import)", "kW", charts.COLORS["grid"]))
ACCURACY_ROWS = (("load", "Consumption", charts.COLORS["load"]),
                 ("pv", "PV", charts.COLORS["pv"]))
PLAN_HEIGHT = 520
ACCURACY_HEIGHT = 420


def _trace(times: Sequence[datetime], values: Sequence[float | None], timezone: str, *,
           name: str, color: str, unit: str, row: int, planned: bool) -> dict:
    x = charts.local_ms(times, timezone)
    y = np.array([np.nan if v is None else v for v in values], dtype="f4")
    suffix = "" if row == 1 else str(row)
    return {"type": "scatter", "mode": "lines", "x": charts.typed_array(x),
            "y": charts.typed_array(y), "name": name, "legendgroup": name,
            "line": {"color": color, "width": 1.6 if planned else 2.0,
                     "dash": "dash" if planned else "solid", "shape": "hv"},
            "hovertemplate": f"%{{y:.1f}} {unit}<extra>{name}</extra>",
            "xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


def _now_line(layout: dict, now: datetime, timezone: str) -> None:
    x = float(charts.local_ms([now], timezone)[0])
    layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x,
                         "y0": 0, "y1": 1, "line": {"color": "#9ca3af", "width": 1,
                                                    "dash": "dot"}}]
    layout["annotations"].append({"text": "now", "showarrow": False, "xref": "x",
                                  "yref": "paper", "x": x, "y": 1, "yanchor": "bottom",
                                  "font": {"size": 11, "color": "#6b7280"}})


def plan_figure(view: PlanView) -> dict:
    """Draw planned against actual SoC, battery and grid power, from a day ago to the plan's end."""
    steps = view.steps
    if not steps.starts:
        return charts.empty_figure("No plan covers the past day or the coming hours",
                                   height=PLAN_HEIGHT)
    ends = [start + STEP for start in steps.starts]  # the planned SoC is the step's end
    traces = []
    for row, (field, point, label, unit, color) in enumerate(PLAN_ROWS, start=1):
        times = ends if field == "soc" else steps.starts
        traces.append(_trace(times, getattr(steps, field), view.timezone, name=f"{label} planned",
                             color=color, unit=unit, row=row, planned=True))
        series = view.actual.series.get(point) if view.actual else None
        if series and series.times:
            times = series.times
            if field == "soc":  # an average over the bucket: drawn at its middle
                times = [t + STEP / 2 for t in times]
            traces.append(_trace(times, series.avg, view.timezone, name=f"{label} actual",
                                 color=color, unit=unit, row=row, planned=False))
    layout = charts.base_layout(height=PLAN_HEIGHT, rows=3, spacing=0.1, titles=(
        "State of charge", "Battery power", "Grid power"))
    layout["yaxis"].update(title={"text": "%"}, range=[0, 100])
    layout["yaxis2"]["title"] = {"text": "kW"}
    layout["yaxis3"]["title"] = {"text": "kW"}
    layout["margin"]["t"] = 64
    layout["legend"]["y"] = 1.06
    _now_line(layout, view.now, view.timezone)
    first = min(steps.starts[0], view.now - timedelta(days=1))
    charts.show_range({"layout": layout}, first, ends[-1], view.timezone)
    return charts.figure(traces, layout)


def _series_trace(series: Series, timezone: str, **kwargs) -> dict:
    return _trace(series.starts(), series.values.tolist(), timezone, **kwargs)


def accuracy_figure(accuracy: ForecastAccuracy) -> dict:
    """Draw the day-ahead load and PV forecasts against the metered power, per 15 minutes."""
    if not accuracy.has_forecasts:
        return charts.empty_figure("No day-ahead forecast stored for these days",
                                   height=ACCURACY_HEIGHT)
    traces = []
    for row, (kind, label, color) in enumerate(ACCURACY_ROWS, start=1):
        traces.append(_series_trace(accuracy.forecast[kind], accuracy.timezone,
                                    name=f"{label} forecast", color=color, unit="kW", row=row,
                                    planned=True))
        traces.append(_series_trace(accuracy.actual[kind], accuracy.timezone,
                                    name=f"{label} actual", color=color, unit="kW", row=row,
                                    planned=False))
    layout = charts.base_layout(height=ACCURACY_HEIGHT, rows=2, spacing=0.12,
                                titles=("Consumption", "PV"))
    layout["yaxis"]["title"] = {"text": "kW"}
    layout["yaxis2"]["title"] = {"text": "kW"}
    layout["margin"]["t"] = 64
    layout["legend"]["y"] = 1.08
    return charts.figure(traces, layout)
