"""The tariff editor's month × hour grids: draw a 12×24 period table and paint cells.

A schedule (URDB's ``energyweekdayschedule`` and friends) is 12 rows (January …
December) of 24 local hours, each holding a period number. The grid is a
heatmap with the period number in every cell; a click paints one cell, a box
or lasso selection paints every cell whose centre it covers, and a form paints
a block of months × hours. Pure functions: no I/O, unit-tested.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import plotly.graph_objects as go

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SCHEDULES = ("energy_weekday", "energy_weekend", "demand_weekday", "demand_weekend")
SCHEDULE_TITLES = {"energy_weekday": "Energy · weekdays", "energy_weekend": "Energy · weekends",
                   "demand_weekday": "Demand · weekdays", "demand_weekend": "Demand · weekends"}
PALETTE = ("#ccfbf1", "#fde68a", "#fca5a5", "#c7d2fe", "#bbf7d0", "#fbcfe8", "#e5e7eb",
           "#fed7aa", "#a5f3fc", "#ddd6fe", "#d9f99d", "#fecdd3")
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"

Table = list[list[int]]
Cell = tuple[int, int]  # (month index 0-11, hour 0-23)


def blank(period: int = 0) -> Table:
    """Return a 12×24 table with every hour in one period."""
    return [[period] * 24 for _ in range(12)]


def _colorscale(count: int) -> list[list]:
    """A stepped colour scale: period n gets PALETTE[n] over its own band."""
    count = max(count, 1)
    scale = []
    for n in range(count):
        color = PALETTE[n % len(PALETTE)]
        scale += [[n / count, color], [(n + 1) / count, color]]
    return scale


def schedule_figure(table: Sequence[Sequence[int]], labels: Mapping[int, str], title: str, *,
                    height: int = 300) -> go.Figure:
    """Draw a 12×24 period table as a heatmap with the period number in each cell."""
    count = max([*labels.keys(), *(v for row in table for v in row)], default=0) + 1
    names = [[f"{MONTHS[m]} {h:02d}:00–{h + 1:02d}:00 · period {v}"
              + (f" ({labels[v]})" if labels.get(v) else "")
              for h, v in enumerate(row)] for m, row in enumerate(table)]
    figure = go.Figure(go.Heatmap(
        z=[list(row) for row in table], x=list(range(24)), y=list(range(12)),
        zmin=-0.5, zmax=count - 0.5, colorscale=_colorscale(count), showscale=False,
        text=[[str(v) for v in row] for row in table], texttemplate="%{text}",
        textfont={"size": 10, "color": "#1f2937"}, hoverinfo="skip", xgap=1, ygap=1))
    # Invisible markers on the cell centres carry hover, clicks and box or lasso
    # selections (a heatmap reports no selected cells).
    figure.add_scatter(x=[h for _ in range(12) for h in range(24)],
                       y=[m for m in range(12) for _ in range(24)], mode="markers",
                       marker={"size": 14, "opacity": 0}, showlegend=False,
                       customdata=[name for row in names for name in row],
                       hovertemplate="%{customdata}<extra></extra>",
                       selected={"marker": {"opacity": 0}},
                       unselected={"marker": {"opacity": 0}})
    figure.update_layout(
        title={"text": title, "x": 0, "font": {"size": 13}}, height=height,
        margin={"l": 40, "r": 8, "t": 30, "b": 30}, dragmode="select", clickmode="event",
        font={"family": FONT, "size": 11, "color": "#374151"},
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="#ffffff", uirevision=title)
    figure.update_xaxes(tickmode="array", tickvals=list(range(0, 24, 3)),
                        ticktext=[f"{h:02d}h" for h in range(0, 24, 3)], range=[-0.5, 23.5],
                        showgrid=False, fixedrange=True)
    figure.update_yaxes(tickmode="array", tickvals=list(range(12)), ticktext=list(MONTHS),
                        autorange="reversed", showgrid=False, fixedrange=True)
    return figure


def _cell(x, y) -> Cell | None:
    try:
        hour, month = round(float(x)), round(float(y))
    except (TypeError, ValueError):
        return None
    if 0 <= month < 12 and 0 <= hour < 24:
        return month, hour
    return None


def cells_from_click(click_data) -> list[Cell]:
    """Return the cell a click landed on (empty for anything else)."""
    points = click_data.get("points") if isinstance(click_data, dict) else None
    if not isinstance(points, list) or not points or not isinstance(points[0], dict):
        return []
    cell = _cell(points[0].get("x"), points[0].get("y"))
    return [cell] if cell else []


def _in_range(selection: dict) -> list[Cell]:
    bounds = selection.get("range") if isinstance(selection, dict) else None
    if not isinstance(bounds, dict):
        return []
    try:
        (x0, x1), (y0, y1) = sorted(map(float, bounds["x"])), sorted(map(float, bounds["y"]))
    except (KeyError, TypeError, ValueError):
        return []
    return [(m, h) for m in range(12) for h in range(24) if x0 <= h <= x1 and y0 <= m <= y1]


def cells_from_selection(selected_data) -> list[Cell]:
    """Return the cells a box or lasso selection covers (their centres)."""
    if not isinstance(selected_data, dict):
        return []
    points = selected_data.get("points")
    cells = []
    if isinstance(points, list):
        for point in points:
            if isinstance(point, dict) and point.get("curveNumber") == 1:
                cell = _cell(point.get("x"), point.get("y"))
                if cell:
                    cells.append(cell)
    return sorted(set(cells)) or _in_range(selected_data)


def block(first_month: int, last_month: int, start_hour: int, end_hour: int) -> list[Cell]:
    """Return the cells of months first–last (1-12, inclusive) × hours [start, end) (0-24).

    Both ranges may wrap: November–February, 22:00–06:00.
    """
    months = [(first_month - 1 + i) % 12 for i in range((last_month - first_month) % 12 + 1)]
    length = (end_hour - start_hour) % 24 or 24
    hours = [(start_hour + i) % 24 for i in range(length)]
    return [(m, h) for m in months for h in hours]


def paint(table: Sequence[Sequence[int]], cells: Iterable[Cell], period: int) -> Table:
    """Return a copy of ``table`` with ``cells`` set to ``period``."""
    result = [list(row) for row in table]
    for month, hour in cells:
        result[month][hour] = period
    return result
