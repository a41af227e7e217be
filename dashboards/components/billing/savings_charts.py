"""Figure builders for the savings pages: monthly bills, a month's breakdown, the peak day.

Pure functions: rows from :mod:`kilowatch.billing.savings` and :mod:`kilowatch.billing.views`
in, a ``go.Figure`` out. Amounts are drawn exactly as stored (rounded to the
cent); a month with incomplete data is marked, never drawn as if it were whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import plotly.graph_objects as go

SCENARIOS = ("without_system", "pv_only", "actual")
SCENARIO_LABELS = {"without_system": "Without system", "pv_only": "PV only", "actual": "Actual"}
SCENARIO_COLORS = {"without_system": "#94a3b8", "pv_only": "#f59e0b", "actual": "#0f766e"}
PART_LABELS = {"energy": "Energy", "demand": "Demand", "fixed": "Fixed charge",
               "export_credit": "Export credit"}
PART_COLORS = {"energy": "#0f766e", "demand": "#6366f1", "fixed": "#94a3b8",
               "export_credit": "#f59e0b"}
SAVINGS_COLORS = {"system": "#15803d", "storage": "#7c3aed"}
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"


def month_label(value: date | str) -> str:
    """Return ``YYYY-MM`` for a period start given as a date or an ISO string."""
    return value.strftime("%Y-%m") if isinstance(value, date) else str(value)[:7]


def _style(figure: go.Figure, *, height: int, y_title: str | None = None) -> go.Figure:
    figure.update_layout(
        template="plotly_white", height=height,
        font={"family": FONT, "size": 12, "color": "#374151"},
        margin={"l": 56, "r": 16, "t": 36, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "xanchor": "left"},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff")
    figure.update_xaxes(showgrid=False, linecolor="#d1d5db")
    figure.update_yaxes(showgrid=True, gridcolor="#eef2f7", zerolinecolor="#cbd5e1",
                        title_text=y_title)
    return figure


def empty_figure(message: str, *, height: int = 300) -> go.Figure:
    """Return a blank chart that says why there is nothing to draw."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#6b7280"},
                          xref="paper", yref="paper", x=0.5, y=0.5)
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return _style(figure, height=height)


def _previous_month(label: str) -> str:
    year, month = int(label[:4]), int(label[5:7])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def axis_months(months: Sequence[str], minimum: int = 6) -> list[str]:
    """Return the months to show: the given ones, led by earlier empty ones up to ``minimum``."""
    shown = list(months)
    while shown and len(shown) < minimum:
        shown.insert(0, _previous_month(shown[0]))
    return shown


def monthly_bills_figure(rows: Sequence[dict], currency: str) -> go.Figure:
    """Draw each month's three bills as grouped bars and the savings as lines.

    ``rows`` are :func:`kilowatch.billing.savings.list_bills` rows of one site, oldest first.
    """
    if not rows:
        return empty_figure("No bills yet: assign a tariff to this site.")
    months = [month_label(row["period_start"]) for row in rows]
    figure = go.Figure()
    for scenario in SCENARIOS:
        figure.add_bar(x=months, y=[row[scenario] for row in rows],
                       name=SCENARIO_LABELS[scenario], marker_color=SCENARIO_COLORS[scenario],
                       hovertemplate=f"{SCENARIO_LABELS[scenario]}: %{{y:,.2f}} {currency}"
                                     "<extra>%{x}</extra>")
    for key, title in (("system_savings", "System saves"), ("storage_savings", "Storage saves")):
        color = SAVINGS_COLORS[key.split("_")[0]]
        figure.add_scatter(x=months, y=[row[key] for row in rows], name=title,
                           mode="lines+markers", line={"color": color, "width": 2.5},
                           marker={"size": 8},
                           hovertemplate=f"{title}: %{{y:,.2f}} {currency}<extra>%{{x}}</extra>")
    flagged = [(m, row) for m, row in zip(months, rows, strict=True) if not row["complete"]]
    if flagged:
        figure.add_scatter(
            x=[m for m, _ in flagged],
            y=[max(row["without_system"], row["pv_only"], row["actual"]) for _, row in flagged],
            name="Incomplete data", mode="markers+text", text=["⚠"] * len(flagged),
            textposition="top center", marker={"size": 1, "color": "#b45309"},
            textfont={"size": 16, "color": "#b45309"},
            hovertemplate="Data gaps this month<extra>%{x}</extra>")
    figure.update_layout(barmode="group", bargap=0.25, hovermode="x unified")
    figure.update_xaxes(type="category", categoryorder="array",
                        categoryarray=axis_months(months))
    figure.update_xaxes(range=[-0.5, len(axis_months(months)) - 0.5])
    return _style(figure, height=340, y_title=currency)


def breakdown_figure(summary: dict) -> go.Figure:
    """Draw a month's three bills as stacked parts (export credit below zero), totals marked."""
    scenarios = [SCENARIO_LABELS[s] for s in SCENARIOS]
    currency = summary["currency"]
    figure = go.Figure()
    for part, label in PART_LABELS.items():
        sign = -1 if part == "export_credit" else 1
        values = [sign * summary["bills"][s][part] for s in SCENARIOS]
        figure.add_bar(x=scenarios, y=values, name=label, marker_color=PART_COLORS[part],
                       hovertemplate=f"{label}: %{{y:,.2f}} {currency}<extra>%{{x}}</extra>")
    totals = [summary["bills"][s]["total"] for s in SCENARIOS]
    figure.add_scatter(x=scenarios, y=totals, name="Total", mode="markers+text",
                       text=[f"{t:,.2f}" for t in totals], textposition="top center",
                       cliponaxis=False,
                       marker={"symbol": "line-ew-open", "size": 36, "color": "#111827",
                               "line": {"width": 3}},
                       hovertemplate=f"Total: %{{y:,.2f}} {currency}<extra>%{{x}}</extra>")
    figure.update_layout(barmode="relative", bargap=0.45)
    _style(figure, height=340, y_title=currency)
    figure.update_layout(legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0},
                         margin={"t": 24, "b": 70})
    top = max(sum(summary["bills"][s][p] for p in ("energy", "demand", "fixed"))
              for s in SCENARIOS)
    bottom = max(summary["bills"][s]["export_credit"] for s in SCENARIOS)
    figure.update_yaxes(range=[-bottom * 1.15, max(top * 1.25, 1.0)])
    return figure


def _local(iso: str, timezone: str) -> str:
    moment = datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def peak_day_figure(day: dict, peaks: dict[str, tuple[float, str | None]]) -> go.Figure:
    """Draw a day's 15-minute load and grid import (kW) with the month's peaks marked.

    ``day`` is :func:`kilowatch.billing.views.peak_day`; ``peaks`` maps a scenario to
    its (peak kW, UTC time) for the month.
    """
    timezone = day["timezone"]
    rows = day["intervals"]
    x = [_local(row["start"], timezone) for row in rows]
    figure = go.Figure()
    figure.add_scatter(x=x, y=[row["load"] for row in rows], name="Load (without system)",
                       line={"color": SCENARIO_COLORS["without_system"], "width": 2,
                             "shape": "hv"},
                       hovertemplate="Load: %{y:.1f} kW<extra></extra>")
    if any(row["pv"] for row in rows):
        figure.add_scatter(x=x, y=[row["pv"] for row in rows], name="PV",
                           line={"color": SCENARIO_COLORS["pv_only"], "width": 1.5,
                                 "dash": "dot", "shape": "hv"},
                           hovertemplate="PV: %{y:.1f} kW<extra></extra>")
    figure.add_scatter(x=x, y=[row["grid_import"] for row in rows], name="Grid import (actual)",
                       line={"color": SCENARIO_COLORS["actual"], "width": 2.5, "shape": "hv"},
                       fill="tozeroy", fillcolor="rgba(15,118,110,0.12)",
                       hovertemplate="Grid import: %{y:.1f} kW<extra></extra>")
    day_prefix = day["day"]
    for scenario in ("without_system", "actual"):
        kw, at = peaks.get(scenario, (None, None))
        if at is None or not _local(at, timezone).startswith(day_prefix):
            continue
        figure.add_scatter(x=[_local(at, timezone)], y=[kw], mode="markers+text",
                           name=f"Peak, {SCENARIO_LABELS[scenario].lower()}",
                           text=[f"{kw:.1f} kW"], textposition="top center",
                           marker={"size": 11, "color": SCENARIO_COLORS[scenario],
                                   "symbol": "diamond", "line": {"color": "#111827",
                                                                 "width": 1}},
                           hovertemplate="Peak: %{y:.1f} kW at %{x}<extra></extra>")
    figure.update_layout(hovermode="x unified")
    figure.update_xaxes(type="date", tickformat="%H:%M")
    return _style(figure, height=320, y_title="kW (15-min average)")


def cumulative_figure(rows: Sequence[dict], currency: str) -> go.Figure:
    """Draw the running total of system and storage savings over the billed months."""
    if not rows:
        return empty_figure("No bills yet.", height=260)
    months = [month_label(row["period_start"]) for row in rows]
    figure = go.Figure()
    for key, title in (("system_savings", "System"), ("storage_savings", "Storage alone")):
        running, values = 0.0, []
        for row in rows:
            running = round(running + row[key], 2)
            values.append(running)
        color = SAVINGS_COLORS[key.split("_")[0]]
        figure.add_scatter(x=months, y=values, name=title, mode="lines+markers",
                           line={"color": color, "width": 2.5},
                           fill="tozeroy" if key == "system_savings" else None,
                           fillcolor="rgba(21,128,61,0.08)",
                           hovertemplate=f"{title}: %{{y:,.2f}} {currency}<extra>%{{x}}</extra>")
    figure.update_layout(hovermode="x unified")
    figure.update_xaxes(type="category", categoryorder="array",
                        categoryarray=axis_months(months),
                        range=[-0.5, len(axis_months(months)) - 0.5])
    return _style(figure, height=260, y_title=currency)


def fleet_savings_figure(rows: Sequence[dict]) -> go.Figure:
    """Draw each site's system and storage savings of a month as horizontal bars."""
    billed = [row for row in rows if row.get("system_savings") is not None]
    if not billed:
        return empty_figure("No site has bills for this month yet.", height=240)
    names = [f"{row['site_name']} ({row['currency']})" for row in billed]
    figure = go.Figure()
    for key, title in (("system_savings", "System saves"), ("storage_savings", "Storage saves")):
        figure.add_bar(y=names, x=[row[key] for row in billed], name=title, orientation="h",
                       marker_color=SAVINGS_COLORS[key.split("_")[0]],
                       hovertemplate=f"{title}: %{{x:,.2f}}<extra>%{{y}}</extra>")
    figure.update_layout(barmode="group", bargap=0.3)
    figure.update_yaxes(autorange="reversed", showgrid=False)
    figure.update_xaxes(showgrid=True, gridcolor="#eef2f7")
    return _style(figure, height=max(240, 60 + 44 * len(billed)))
