"""Figure builders for history: power flows, SoC, temperatures, energy bars, battery health.

Pure functions: data in (``kilowatch.telemetry.history.History``,
``kilowatch.telemetry.energy.SiteEnergy``), a Plotly figure out — as a plain dict in
Plotly's figure schema, which ``dcc.Graph`` takes as it is. (Building a ``go.Figure``
validates every property and costs about 100 ms per chart; the unit tests check these
dicts instead.)

Times are drawn as the site's wall-clock time: each UTC time becomes the epoch
milliseconds of its local reading, so Plotly (which has no time zones) shows
the site's hours. Arrays travel as base64 typed arrays (float64 times,
float32 values); a missing bucket is NaN, which Plotly draws as a gap, never
as zero.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from kilowatch.telemetry.history import History, Series

COLORS = {"grid": "#64748b", "pv": "#f59e0b", "load": "#6366f1", "battery": "#0f766e",
          "export": "#94a3b8", "charge": "#14b8a6", "soc": "#0f766e", "t_max": "#ef4444",
          "t_min": "#3b82f6", "soh": "#0f766e", "spread": "#a855f7"}
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"
PALETTE = ("#0f766e", "#f59e0b", "#6366f1", "#ef4444", "#3b82f6", "#a855f7", "#64748b",
           "#84cc16", "#ec4899", "#14b8a6")
GRID = "#eef2f7"

POWER_TRACES = (("meter.pv.p", "PV", "pv"), ("meter.load.p", "Consumption", "load"),
                ("meter.grid.p", "Grid (+ import)", "grid"),
                ("pcs.p", "Battery (+ discharge)", "battery"))
POWER_POINTS = tuple(point for point, _, _ in POWER_TRACES)
SOC_POINTS = ("bms.soc", "bms.t_min", "bms.t_max")
HEALTH_POINTS = ("bms.soh", "bms.cell_v_min", "bms.cell_v_max", "bms.t_min", "bms.t_max")
ENERGY_BARS = (("pv", "PV production", "pv", 1), ("grid_import", "Grid import", "grid", 1),
               ("battery_discharge", "Battery discharge", "battery", 1),
               ("load", "Consumption", "load", -1), ("grid_export", "Grid export", "export", -1),
               ("battery_charge", "Battery charge", "charge", -1))


# ---- plumbing ---------------------------------------------------------------------------------

def typed_array(values: np.ndarray) -> dict:
    """Return a NumPy array as Plotly's base64 typed-array spec (``{dtype, bdata}``)."""
    dtype = {"float64": "f8", "float32": "f4"}[str(values.dtype)]
    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(values)).decode()}


def local_ms(times: Sequence[datetime], timezone: str) -> np.ndarray:
    """Return the epoch milliseconds of each time's wall-clock reading in ``timezone``."""
    tz = ZoneInfo(timezone)
    epoch = np.fromiter((t.timestamp() for t in times), dtype="f8", count=len(times))
    # The zone's offset changes only at transitions, on the hour: look it up once per hour.
    hours, index = np.unique(np.floor(epoch / 3600), return_inverse=True)
    offsets = np.array([datetime.fromtimestamp(h * 3600, tz).utcoffset().total_seconds()
                        for h in hours], dtype="f8")
    return (epoch + (offsets[index] if len(hours) else 0)) * 1000


def _with_gaps(x: np.ndarray, y: np.ndarray, width: timedelta | None) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Insert a NaN after every hole longer than 1.5 buckets so the line breaks there."""
    if width is None or len(x) < 2:
        return x, y
    limit = width.total_seconds() * 1000 * 1.5
    holes = np.nonzero(np.diff(x) > limit)[0] + 1
    if not len(holes):
        return x, y
    return np.insert(x, holes, x[holes - 1] + 1.0), np.insert(y, holes, np.float32("nan"))


def _xy(series: Series, timezone: str, width: timedelta | None,
        values: Sequence[float | None] | None = None) -> tuple[dict, dict]:
    x = local_ms(series.times, timezone)
    raw = series.avg if values is None else values
    y = np.array([np.nan if v is None else v for v in raw], dtype="f4")
    x, y = _with_gaps(x, y, width)
    return typed_array(x), typed_array(y)


def _line(series: Series, history: History, name: str, color: str, unit: str, *,
          values=None, row: int = 1, fill: str | None = None, width: float = 1.6) -> dict:
    x, y = _xy(series, history.timezone, history.resolution.width, values)
    trace = {"type": "scatter", "mode": "lines", "x": x, "y": y, "name": name,
             "line": {"color": color, "width": width},
             "hovertemplate": f"%{{y:.2f}} {unit}<extra>{name}</extra>",
             "xaxis": "x" if row == 1 else f"x{row}", "yaxis": "y" if row == 1 else f"y{row}"}
    if fill:
        trace.update(fill="tozeroy", fillcolor=fill)
    return trace


def _axis(**extra) -> dict:
    return {"showgrid": True, "gridcolor": GRID, "linecolor": "#d1d5db", "zeroline": True,
            "zerolinecolor": "#cbd5e1", "automargin": True, "tickfont": {"size": 11}, **extra}


def base_layout(*, height: int = 320, y_title: str | None = None, rows: int = 1,
                row_heights: Sequence[float] | None = None, titles: Sequence[str] = (),
                spacing: float = 0.08) -> dict:
    """Return the app's light chart layout, with ``rows`` panels sharing one time axis."""
    layout = {
        "height": height, "font": {"family": FONT, "size": 12, "color": "#374151"},
        "margin": {"l": 56, "r": 16, "t": 40 if titles else 32, "b": 40},
        "hovermode": "x unified", "hoverlabel": {"font": {"family": FONT}},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0,
                   "xanchor": "left"},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "#ffffff", "uirevision": "keep",
        "colorway": list(PALETTE), "annotations": [], "showlegend": True,
    }
    heights = list(row_heights or [1.0 / rows] * rows)
    usable = 1.0 - spacing * (rows - 1)
    top = 1.0
    for row in range(1, rows + 1):
        size = usable * heights[row - 1] / sum(heights)
        suffix = "" if row == 1 else str(row)
        layout[f"xaxis{suffix}"] = _axis(type="date", anchor=f"y{suffix}", zeroline=False,
                                         showticklabels=row == rows,
                                         **({"matches": "x"} if row > 1 else {}))
        layout[f"yaxis{suffix}"] = _axis(domain=[max(top - size, 0.0), top],
                                         anchor=f"x{suffix}")
        if row <= len(titles):
            layout["annotations"].append({"text": titles[row - 1], "showarrow": False,
                                          "xref": "paper", "yref": "paper", "x": 0.5, "y": top,
                                          "yanchor": "bottom", "font": {"size": 13}})
        top -= size + spacing
    if y_title:
        layout["yaxis"]["title"] = {"text": y_title}
    return layout


def figure(traces: list[dict], layout: dict) -> dict:
    """Return a figure in Plotly's schema."""
    return {"data": traces, "layout": layout}


def show_range(fig: dict, start: datetime, end: datetime, timezone: str) -> dict:
    """Make the time axis span the whole picked range (e.g. all of today, not just until now)."""
    low, high = local_ms([start, end], timezone)
    fig["layout"]["xaxis"]["range"] = [float(low), float(high)]
    return fig


def empty_figure(message: str, *, height: int = 320) -> dict:
    """Return a blank chart that says why there is nothing to draw."""
    return figure([], {
        "height": height, "font": {"family": FONT}, "xaxis": {"visible": False},
        "yaxis": {"visible": False}, "margin": {"l": 16, "r": 16, "t": 16, "b": 16},
        "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "#ffffff",
        "annotations": [{"text": message, "showarrow": False, "xref": "paper", "yref": "paper",
                         "x": 0.5, "y": 0.5, "font": {"size": 14, "color": "#6b7280"}}]})


def _has_data(history: History, points: Sequence[str]) -> bool:
    return any(history.series.get(p) and history.series[p].times for p in points)


def _present(history: History, point: str) -> Series | None:
    series = history.series.get(point)
    return series if series and series.times else None


# ---- charts -----------------------------------------------------------------------------------

def power_figure(history: History) -> dict:
    """Draw PV, consumption, grid exchange and battery power (kW) over the range."""
    if not _has_data(history, POWER_POINTS):
        return empty_figure("No power data in this range")
    traces = [_line(series, history, name, COLORS[color], "kW",
                    fill="rgba(245, 158, 11, 0.12)" if point == "meter.pv.p" else None)
              for point, name, color in POWER_TRACES
              if (series := _present(history, point))]
    return figure(traces, base_layout(y_title="kW"))


def soc_temperature_figure(history: History) -> dict:
    """Draw the state of charge (%) above the lowest and highest cell temperatures (°C)."""
    if not _has_data(history, SOC_POINTS):
        return empty_figure("No battery data in this range", height=380)
    traces = []
    if soc := _present(history, "bms.soc"):
        traces.append(_line(soc, history, "State of charge", COLORS["soc"], "%",
                            fill="rgba(15, 118, 110, 0.10)", width=1.8))
    for point, name, color, pick in (("bms.t_max", "Highest cell", "t_max", "max"),
                                     ("bms.t_min", "Lowest cell", "t_min", "min")):
        if series := _present(history, point):
            traces.append(_line(series, history, name, COLORS[color], "°C",
                                values=getattr(series, pick), row=2, width=1.4))
    layout = base_layout(height=380, rows=2, row_heights=(0.55, 0.45))
    layout["yaxis"].update(title={"text": "SoC %"}, range=[0, 100])
    layout["yaxis2"]["title"] = {"text": "°C"}
    return figure(traces, layout)


def cell_spread(history: History) -> Series | None:
    """Return the widest cell voltage spread per bucket (highest max − lowest min, mV)."""
    high, low = history.series.get("bms.cell_v_max"), history.series.get("bms.cell_v_min")
    if not high or not low or not high.times:
        return None
    lows = dict(zip(low.times, low.min, strict=True))
    times, values = [], []
    for t, top in zip(high.times, high.max, strict=True):
        bottom = lows.get(t)
        if top is not None and bottom is not None:
            times.append(t)
            values.append((top - bottom) * 1000.0)
    return Series("cell_spread", "mV", times, values, values, values)


def health_figure(history: History) -> dict:
    """Draw state of health, cell voltage spread (mV) and the temperature extremes."""
    if not _has_data(history, HEALTH_POINTS):
        return empty_figure("No battery health data in this range", height=480)
    traces = []
    if soh := _present(history, "bms.soh"):
        traces.append(_line(soh, history, "SoH", COLORS["soh"], "%", width=2))
    if (spread := cell_spread(history)) is not None:
        traces.append(_line(spread, history, "Cell spread", COLORS["spread"], "mV", row=2,
                            width=1.5))
    for point, name, color, pick in (("bms.t_max", "Max temperature", "t_max", "max"),
                                     ("bms.t_min", "Min temperature", "t_min", "min")):
        if series := _present(history, point):
            traces.append(_line(series, history, name, COLORS[color], "°C",
                                values=getattr(series, pick), row=3, width=1.4))
    layout = base_layout(height=520, rows=3, spacing=0.09, titles=(
        "State of health", "Cell voltage spread", "Cell temperature extremes"))
    layout["showlegend"] = False
    layout["yaxis"]["title"] = {"text": "%"}
    layout["yaxis2"].update(title={"text": "mV"}, rangemode="tozero")
    layout["yaxis3"]["title"] = {"text": "°C"}
    return figure(traces, layout)


def energy_figure(energy, *, title: str | None = None, height: int = 340) -> dict:
    """Draw energy bars per interval: sources above zero, uses below (kWh).

    ``energy`` is a ``kilowatch.telemetry.energy.SiteEnergy``; an interval without data has no bar.
    """
    intervals = energy.intervals
    if not intervals or not energy.quantities:
        return empty_figure("No energy data in this range", height=height)
    x = local_ms([i.start for i in intervals], energy.timezone)
    span_ms = float(np.median(np.diff(x))) if len(x) > 1 else 3_600_000.0
    traces = []
    for quantity, name, color, sign in ENERGY_BARS:
        if quantity not in energy.quantities:
            continue
        y = np.array([np.nan if i.kwh.get(quantity) is None else sign * i.kwh[quantity]
                      for i in intervals], dtype="f4")
        traces.append({"type": "bar", "x": typed_array(x + span_ms / 2), "y": typed_array(y),
                       "name": name, "width": span_ms * 0.8, "marker": {"color": COLORS[color]},
                       "customdata": typed_array(np.abs(y)),
                       "hovertemplate": f"%{{customdata:.1f}} kWh<extra>{name}</extra>"})
    layout = base_layout(height=height, y_title="kWh")
    layout.update(barmode="relative", bargap=0.15)
    if title:
        layout.update(title={"text": title, "x": 0, "font": {"size": 14}},
                      margin={**layout["margin"], "t": 64})
    return figure(traces, layout)


def explorer_figure(histories: Sequence[History], labels: Sequence[str]) -> dict:
    """Draw chosen points (one history per device) with one y-axis per unit (up to four)."""
    found = [(h, s, label) for h, label in zip(histories, labels, strict=True)
             for s in h.series.values() if s.times]
    if not found:
        return empty_figure("No data for these points in this range", height=440)
    units = list(dict.fromkeys(s.unit or "" for _, s, _ in found))[:4]
    traces = []
    for index, (history, series, label) in enumerate(found):
        unit = series.unit or ""
        axis = units.index(unit) if unit in units else 0
        trace = _line(series, history, f"{label} {series.point}",
                      PALETTE[index % len(PALETTE)], unit, width=1.5)
        trace["yaxis"] = "y" if axis == 0 else f"y{axis + 1}"
        traces.append(trace)
    layout = base_layout(height=440, y_title=units[0] or None)
    right = [1.0, 0.94, 0.88]
    if len(units) > 2:
        layout["xaxis"]["domain"] = [0.0, 0.88]
    for axis, unit in enumerate(units[1:], start=2):
        layout[f"yaxis{axis}"] = _axis(title={"text": unit}, overlaying="y", side="right",
                                       showgrid=False, anchor="free",
                                       position=right[axis - 2] if len(units) > 2 else 1.0)
    return figure(traces, layout)
