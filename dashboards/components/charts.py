"""Figure builders for history: power flows, SoC, temperatures, energy bars, battery health.

Pure functions: data in (``kilowatch.history.History``, ``kilowatch.energy``
results), a ``go.Figure`` out. Times are drawn as the site's wall-clock time:
each UTC time becomes the epoch milliseconds of its local reading, so Plotly
(which has no time zones) shows the site's hours. Arrays are NumPy (float64 for
times, float32 for values) so that the figure travels as compact base64; a
missing bucket becomes NaN, which Plotly draws as a gap, never as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kilowatch.history import History, Series

COLORS = {"grid": "#64748b", "pv": "#f59e0b", "load": "#6366f1", "battery": "#0f766e",
          "export": "#94a3b8", "charge": "#14b8a6", "soc": "#0f766e", "t_max": "#ef4444",
          "t_min": "#3b82f6", "soh": "#0f766e", "spread": "#a855f7"}
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"
PALETTE = ("#0f766e", "#f59e0b", "#6366f1", "#ef4444", "#3b82f6", "#a855f7", "#64748b",
           "#84cc16", "#ec4899", "#14b8a6")

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


def local_ms(times: Sequence[datetime], timezone: str) -> np.ndarray:
    """Return the epoch milliseconds of each time's wall-clock reading in ``timezone``."""
    tz = ZoneInfo(timezone)
    return np.array([t.astimezone(tz).replace(tzinfo=UTC).timestamp() * 1000 for t in times],
                    dtype="f8")


def _with_gaps(x: np.ndarray, y: np.ndarray, width: timedelta | None) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Insert a NaN after every hole longer than 1.5 buckets so the line breaks there."""
    if width is None or len(x) < 2:
        return x, y
    limit = width.total_seconds() * 1000 * 1.5
    holes = np.nonzero(np.diff(x) > limit)[0] + 1
    if not len(holes):
        return x, y
    return (np.insert(x, holes, x[holes - 1] + 1.0),
            np.insert(y.astype("f4"), holes, np.float32("nan")))


def _xy(series: Series, timezone: str, width: timedelta | None,
        values: Sequence[float | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    x = local_ms(series.times, timezone)
    raw = series.avg if values is None else values
    y = np.array([np.nan if v is None else v for v in raw], dtype="f4")
    return _with_gaps(x, y, width)


def base_layout(figure: go.Figure, *, height: int = 320, y_title: str | None = None) -> go.Figure:
    """Apply the app's light chart style."""
    figure.update_layout(
        template="plotly_white", height=height, font={"family": FONT, "size": 12,
                                                      "color": "#374151"},
        margin={"l": 56, "r": 16, "t": 32, "b": 40}, hovermode="x unified",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left"},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff", uirevision="keep")
    figure.update_xaxes(type="date", showgrid=True, gridcolor="#eef2f7", linecolor="#d1d5db")
    figure.update_yaxes(showgrid=True, gridcolor="#eef2f7", zerolinecolor="#cbd5e1")
    if y_title:
        figure.update_yaxes(title_text=y_title)
    return figure


def show_range(figure: go.Figure, start: datetime, end: datetime, timezone: str) -> go.Figure:
    """Make the time axis span the whole picked range (e.g. all of today, not just until now)."""
    low, high = local_ms([start, end], timezone)
    figure.update_xaxes(range=[float(low), float(high)])
    return figure


def empty_figure(message: str, *, height: int = 320) -> go.Figure:
    """Return a blank chart that says why there is nothing to draw."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#6b7280"},
                          xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_layout(template="plotly_white", height=height, font={"family": FONT},
                         xaxis={"visible": False}, yaxis={"visible": False},
                         margin={"l": 16, "r": 16, "t": 16, "b": 16},
                         paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff")
    return figure


def _has_data(history: History, points: Sequence[str]) -> bool:
    return any(history.series.get(p) and history.series[p].times for p in points)


def power_figure(history: History) -> go.Figure:
    """Draw PV, consumption, grid exchange and battery power (kW) over the range."""
    if not _has_data(history, POWER_POINTS):
        return empty_figure("No power data in this range")
    figure = go.Figure()
    for point, name, color in POWER_TRACES:
        series = history.series.get(point)
        if not series or not series.times:
            continue
        x, y = _xy(series, history.timezone, history.resolution.width)
        figure.add_trace(go.Scatter(
            x=x, y=y, name=name, mode="lines", line={"color": COLORS[color], "width": 1.6},
            fill="tozeroy" if point == "meter.pv.p" else None,
            fillcolor="rgba(245, 158, 11, 0.12)", hovertemplate="%{y:.1f} kW"))
    return base_layout(figure, y_title="kW")


def soc_temperature_figure(history: History) -> go.Figure:
    """Draw the state of charge (%) above the lowest and highest cell temperatures (°C)."""
    if not _has_data(history, SOC_POINTS):
        return empty_figure("No battery data in this range", height=380)
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           row_heights=[0.55, 0.45])
    soc = history.series.get("bms.soc")
    if soc and soc.times:
        x, y = _xy(soc, history.timezone, history.resolution.width)
        figure.add_trace(go.Scatter(x=x, y=y, name="State of charge", mode="lines",
                                    line={"color": COLORS["soc"], "width": 1.8}, fill="tozeroy",
                                    fillcolor="rgba(15, 118, 110, 0.10)",
                                    hovertemplate="%{y:.1f} %"), row=1, col=1)
    for point, name, color, pick in (("bms.t_max", "Highest cell", "t_max", "max"),
                                     ("bms.t_min", "Lowest cell", "t_min", "min")):
        series = history.series.get(point)
        if series and series.times:
            x, y = _xy(series, history.timezone, history.resolution.width,
                       getattr(series, pick))
            figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                                        line={"color": COLORS[color], "width": 1.4},
                                        hovertemplate="%{y:.1f} °C"), row=2, col=1)
    base_layout(figure, height=380)
    figure.update_yaxes(title_text="SoC %", range=[0, 100], row=1, col=1)
    figure.update_yaxes(title_text="°C", row=2, col=1)
    return figure


def health_figure(history: History) -> go.Figure:
    """Draw state of health, cell voltage spread (mV) and the temperature extremes."""
    if not _has_data(history, HEALTH_POINTS):
        return empty_figure("No battery health data in this range", height=480)
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                           subplot_titles=("State of health", "Cell voltage spread",
                                           "Cell temperature extremes"))
    tz, width = history.timezone, history.resolution.width
    soh = history.series.get("bms.soh")
    if soh and soh.times:
        x, y = _xy(soh, tz, width)
        figure.add_trace(go.Scatter(x=x, y=y, name="SoH", mode="lines",
                                    line={"color": COLORS["soh"], "width": 2},
                                    hovertemplate="%{y:.2f} %"), row=1, col=1)
    spread = cell_spread(history)
    if spread is not None:
        x, y = _xy(spread, tz, width)
        figure.add_trace(go.Scatter(x=x, y=y, name="Cell spread", mode="lines",
                                    line={"color": COLORS["spread"], "width": 1.5},
                                    hovertemplate="%{y:.0f} mV"), row=2, col=1)
    for point, name, color, pick in (("bms.t_max", "Max temperature", "t_max", "max"),
                                     ("bms.t_min", "Min temperature", "t_min", "min")):
        series = history.series.get(point)
        if series and series.times:
            x, y = _xy(series, tz, width, getattr(series, pick))
            figure.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines",
                                        line={"color": COLORS[color], "width": 1.4},
                                        hovertemplate="%{y:.1f} °C"), row=3, col=1)
    base_layout(figure, height=520)
    figure.update_layout(showlegend=False, margin={"t": 36})
    figure.update_yaxes(title_text="%", row=1, col=1)
    figure.update_yaxes(title_text="mV", rangemode="tozero", row=2, col=1)
    figure.update_yaxes(title_text="°C", row=3, col=1)
    return figure


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


def energy_figure(energy, *, title: str | None = None, height: int = 340) -> go.Figure:
    """Draw energy bars per interval: sources above zero, uses below (kWh).

    ``energy`` is a ``kilowatch.energy.SiteEnergy``; an interval without data has no bar.
    """
    intervals = energy.intervals
    if not intervals or not energy.quantities:
        return empty_figure("No energy data in this range", height=height)
    x = local_ms([i.start for i in intervals], energy.timezone)
    span_ms = float(np.median(np.diff(x))) if len(x) > 1 else 3600_000.0
    figure = go.Figure()
    for quantity, name, color, sign in ENERGY_BARS:
        if quantity not in energy.quantities:
            continue
        y = np.array([np.nan if i.kwh.get(quantity) is None else sign * i.kwh[quantity]
                      for i in intervals], dtype="f4")
        figure.add_trace(go.Bar(x=x + span_ms / 2, y=y, name=name, width=span_ms * 0.8,
                                marker={"color": COLORS[color]},
                                customdata=np.abs(y), hovertemplate="%{customdata:.1f} kWh"))
    base_layout(figure, height=height, y_title="kWh")
    figure.update_layout(barmode="relative", bargap=0.15)
    if title:
        figure.update_layout(title={"text": title, "x": 0, "font": {"size": 14}},
                             margin={"t": 64})
    return figure


def explorer_figure(histories: Sequence[History], labels: Sequence[str]) -> go.Figure:
    """Draw chosen points (one history per device) with one y-axis per unit."""
    traces = [(h, s, label) for h, label in zip(histories, labels, strict=True)
              for s in h.series.values() if s.times]
    if not traces:
        return empty_figure("No data for these points in this range", height=440)
    units = list(dict.fromkeys(s.unit or "" for _, s, _ in traces))[:4]
    figure = go.Figure()
    for index, (history, series, label) in enumerate(traces):
        axis = units.index(series.unit or "") if (series.unit or "") in units else 0
        x, y = _xy(series, history.timezone, history.resolution.width)
        figure.add_trace(go.Scatter(
            x=x, y=y, name=f"{label} {series.point}", mode="lines",
            yaxis="y" if axis == 0 else f"y{axis + 1}",
            line={"color": PALETTE[index % len(PALETTE)], "width": 1.5},
            hovertemplate=f"%{{y:.3g}} {series.unit or ''}"))
    base_layout(figure, height=440)
    for axis, unit in enumerate(units[1:], start=2):
        figure.update_layout({f"yaxis{axis}": {
            "title": unit, "overlaying": "y", "side": "right" if axis % 2 == 0 else "left",
            "showgrid": False, "anchor": "free" if axis > 2 else "x",
            "autoshift": True}})
    figure.update_layout(yaxis_title=units[0] or None)
    return figure
