"""Chart and key figures of a schedule preview (see :mod:`kilowatch.schedules.preview`)."""

from __future__ import annotations

import itertools

import dash_bootstrap_components as dbc
import plotly.graph_objects as go
from dash import html
from plotly.subplots import make_subplots

from dashboards.components.schedules.timeline import MODE_COLORS, mode_label
from kilowatch.schedules import model as schedules
from kilowatch.schedules.preview import STEP, Preview


def _mode_bands(preview: Preview, times: list) -> list[tuple]:
    """Group consecutive steps of one mode into (mode, start, end) bands."""
    bands = []
    index = 0
    for mode, group in itertools.groupby(preview.steps, key=lambda s: s.mode):
        count = len(list(group))
        end = times[index + count] if index + count < len(times) else times[-1] + STEP
        bands.append((mode, times[index], end))
        index += count
    return bands


def preview_figure(preview: Preview) -> go.Figure:
    """Draw expected SoC (over mode bands) and grid, load, PV and battery power for the week."""
    tz = schedules.zone(preview.timezone)
    times = [s.start.astimezone(tz).replace(tzinfo=None) for s in preview.steps]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                           row_heights=[0.4, 0.6])
    shown: set[str] = set()
    bands = []
    for mode, start, end in _mode_bands(preview, times):
        # Plain dicts set at once: add_vrect re-validates every shape (quadratic).
        bands.append({"type": "rect", "xref": "x", "yref": "y domain", "x0": start, "x1": end,
                      "y0": 0, "y1": 1, "fillcolor": MODE_COLORS.get(mode, "#e5e7eb"),
                      "opacity": 0.18, "line": {"width": 0}, "layer": "below"})
        if mode not in shown:  # legend entries for the bands
            shown.add(mode)
            figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=mode_label(mode),
                                        marker={"color": MODE_COLORS.get(mode), "size": 10,
                                                "symbol": "square"},
                                        legendgroup="modes", legendgrouptitle_text="Mode"),
                             row=1, col=1)
    # The SoC is known at the start and at the end of every step.
    soc_times = [*times[:1], *(t + STEP for t in times)]
    figure.add_trace(go.Scatter(x=soc_times, y=[preview.initial_soc] * bool(times)
                                + [s.soc for s in preview.steps],
                                name="State of charge", line={"color": "#0f766e", "width": 2},
                                hovertemplate="%{y:.0f} %<extra>SoC</extra>",
                                legendgroup="soc"), row=1, col=1)
    series = (("Grid", [s.grid_kw for s in preview.steps], "#111827", 2, "solid"),
              ("Load", [s.load_kw for s in preview.steps], "#64748b", 1, "dot"),
              ("PV", [s.pv_kw for s in preview.steps], "#eab308", 1, "dot"),
              ("Battery", [s.battery_kw for s in preview.steps], "#0d9488", 1.5, "solid"))
    for name, values, color, width, dash in series:
        figure.add_trace(go.Scatter(x=times, y=values, name=name, line_shape="hv",
                                    line={"color": color, "width": width, "dash": dash},
                                    hovertemplate="%{y:.1f} kW<extra>" + name + "</extra>",
                                    legendgroup="power", legendgrouptitle_text="Power"),
                         row=2, col=1)
    figure.update_layout(
        shapes=bands, height=460, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
        paper_bgcolor="white", hovermode="x unified",
        legend={"orientation": "v", "x": 1.01, "y": 1, "groupclick": "toggleitem"})
    figure.update_yaxes(title_text="SoC %", range=[0, 100], gridcolor="#eef2f7", row=1, col=1)
    figure.update_yaxes(title_text="kW (grid > 0 import, battery > 0 discharge)",
                        title_font={"size": 11}, gridcolor="#eef2f7", zerolinecolor="#94a3b8",
                        row=2, col=1)
    # type: the legend-only traces have no x, which would make the SoC axis linear.
    figure.update_xaxes(type="date", gridcolor="#cbd5e1", tickformat="%a %d %b", dtick=86_400_000,
                        tick0=times[0].replace(hour=0, minute=0) if times else None,
                        minor={"dtick": 6 * 3_600_000, "showgrid": True, "gridcolor": "#f1f5f9"})
    return figure


def _figure_card(title: str, value: str, note: str, element_id: str) -> dbc.Col:
    return dbc.Col(dbc.Card(dbc.CardBody([
        html.Div(title, className="small text-muted"),
        html.Div(value, className="fs-5 fw-semibold", id=element_id),
        html.Div(note, className="small text-muted"),
    ], className="py-2")), xs=6, lg=3)


def preview_summary(preview: Preview) -> html.Div:
    """Return the week's key figures and the notes on the data the preview used."""
    tz = schedules.zone(preview.timezone)
    peak_kw, peak_at = preview.peak_import
    when = f"{peak_at.astimezone(tz):%a %H:%M}" if peak_at else ""
    socs = [s.soc for s in preview.steps] or [preview.initial_soc]
    cards = dbc.Row(className="g-2 mb-2", children=[
        _figure_card("Peak grid import", f"{peak_kw:,.0f} kW", when, "schedule-preview-peak"),
        _figure_card("Grid import", f"{preview.import_kwh:,.0f} kWh", "next 7 days",
                     "schedule-preview-import"),
        _figure_card("Grid export", f"{preview.export_kwh:,.0f} kWh", "next 7 days",
                     "schedule-preview-export"),
        _figure_card("State of charge", f"{min(socs):.0f}–{max(socs):.0f} %",
                     f"starts at {preview.initial_soc:.0f} %", "schedule-preview-soc"),
    ])
    battery = preview.battery
    notes = [f"Storage: {battery.rated_power_kw:g} kW / {battery.capacity_kwh:g} kWh. "
             "Load and PV repeat the last 7 days at the same weekday and time."]
    notes += list(preview.notes)
    return html.Div([cards, html.Ul([html.Li(n) for n in notes], className="small text-muted mb-0",
                                    id="schedule-preview-notes")])
