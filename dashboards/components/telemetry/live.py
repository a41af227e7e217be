"""Figure builders for the live tiles: the energy-flow picture and the SoC gauge.

Input is the dict of :func:`kilowatch.telemetry.overview.site_live` (``grid_kw``,
``pv_kw``, ``load_kw``, ``battery_kw``, ``soc``; None when not measured).
Signs follow the point names: grid > 0 imports, battery > 0 discharges.
Figures are plain dicts in Plotly's schema (see ``charts``).
"""

from __future__ import annotations

import math

from dashboards.components.telemetry.charts import COLORS, FONT

IDLE_KW = 0.05  # below this a flow is drawn idle (no arrow)

# node: (x, y, label, colour key, where its kW goes: x offset, y offset)
NODES = {"pv": (0.5, 0.84, "PV", "pv", (0.2, 0.0)),
         "grid": (0.13, 0.5, "Grid", "grid", (0.0, -0.15)),
         "load": (0.87, 0.5, "Load", "load", (0.0, -0.15)),
         "battery": (0.5, 0.16, "Battery", "battery", (0.2, 0.0))}
HUB = (0.5, 0.5)
RADIUS = 0.095


def format_kw(value: float | None) -> str:
    """Say a power for a tile: ``12.3 kW``, ``1.25 MW`` or ``—`` when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} MW"
    return f"{value:.1f} kW"


def flows(live: dict) -> dict[str, tuple[float | None, bool]]:
    """Return node → (kW magnitude, True when energy flows towards the hub)."""
    pv, grid, load, battery = (live.get(k) for k in ("pv_kw", "grid_kw", "load_kw",
                                                     "battery_kw"))
    return {
        "pv": (None if pv is None else abs(pv), True),
        "grid": (None if grid is None else abs(grid), (grid or 0) >= 0),
        "battery": (None if battery is None else abs(battery), (battery or 0) >= 0),
        "load": (None if load is None else abs(load), False),
    }


def _node(shapes: list, notes: list, name: str, kw: float | None, soc: float | None) -> None:
    x, y, label, color, (dx, dy) = NODES[name]
    shapes.append({"type": "circle", "xref": "x", "yref": "y", "x0": x - RADIUS,
                   "y0": y - RADIUS, "x1": x + RADIUS, "y1": y + RADIUS, "layer": "above",
                   "line": {"color": COLORS[color], "width": 3}, "fillcolor": "#ffffff"})
    notes.append({"x": x, "y": y, "text": f"<b>{label}</b>", "showarrow": False,
                  "font": {"size": 12, "color": COLORS[color]}})
    text = f"<b>{format_kw(kw)}</b>"
    if name == "battery" and soc is not None and math.isfinite(soc):
        text += f"<br>{soc:.0f} %"
    notes.append({"x": x + dx, "y": y + dy, "text": text, "showarrow": False,
                  "font": {"size": 13, "color": "#111827"}})


def _edge(shapes: list, notes: list, name: str, kw: float | None, inward: bool) -> None:
    x, y, _, color, _ = NODES[name]
    # The line runs from the node's circle to just before the hub.
    length = math.hypot(HUB[0] - x, HUB[1] - y)
    ux, uy = (HUB[0] - x) / length, (HUB[1] - y) / length
    sx, sy = x + ux * (RADIUS + 0.02), y + uy * (RADIUS + 0.02)
    ex, ey = HUB[0] - ux * 0.05, HUB[1] - uy * 0.05
    if kw is None or kw < IDLE_KW:
        shapes.append({"type": "line", "x0": sx, "y0": sy, "x1": ex, "y1": ey,
                       "line": {"color": "#d1d5db", "width": 2, "dash": "dot"}})
        return
    start, end = ((sx, sy), (ex, ey)) if inward else ((ex, ey), (sx, sy))
    notes.append({"x": end[0], "y": end[1], "ax": start[0], "ay": start[1], "xref": "x",
                  "yref": "y", "axref": "x", "ayref": "y", "showarrow": True, "arrowhead": 3,
                  "arrowsize": 1.1, "arrowwidth": 2 + min(kw, 500) / 100,
                  "arrowcolor": COLORS[color], "text": ""})


def energy_flow_figure(live: dict) -> dict:
    """Draw grid, PV, battery and load around the site with arrows sized by their kW."""
    shapes: list[dict] = []
    notes: list[dict] = []
    for name, (kw, inward) in flows(live).items():
        _edge(shapes, notes, name, kw, inward)
    for name, (kw, _) in flows(live).items():
        _node(shapes, notes, name, kw, live.get("soc"))
    shapes.append({"type": "circle", "x0": HUB[0] - 0.035, "y0": HUB[1] - 0.035,
                   "x1": HUB[0] + 0.035, "y1": HUB[1] + 0.035, "fillcolor": "#374151",
                   "line": {"width": 0}})
    return {"data": [], "layout": {
        "height": 320, "margin": {"l": 4, "r": 4, "t": 4, "b": 4}, "showlegend": False,
        "font": {"family": FONT}, "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)", "dragmode": False, "shapes": shapes,
        "annotations": notes,
        "xaxis": {"visible": False, "range": [0, 1], "fixedrange": True},
        "yaxis": {"visible": False, "range": [0, 1], "fixedrange": True, "scaleanchor": "x"}}}


def soc_gauge_figure(soc: float | None) -> dict:
    """Draw the state of charge as a gauge (grey and empty when unknown)."""
    known = soc is not None and math.isfinite(soc)
    gauge = {"type": "indicator", "mode": "gauge+number", "value": soc if known else 0,
             "number": {"suffix": " %", "valueformat": ".0f",
                        "font": {"size": 34, "color": "#111827" if known else "#9ca3af"}},
             "gauge": {"axis": {"range": [0, 100], "tickwidth": 1, "tickcolor": "#9ca3af"},
                       "bar": {"color": COLORS["soc"] if known else "#e5e7eb",
                               "thickness": 0.3},
                       "bgcolor": "#f3f4f6", "borderwidth": 0,
                       "steps": [{"range": [0, 10], "color": "#fee2e2"},
                                 {"range": [10, 95], "color": "#f3f4f6"},
                                 {"range": [95, 100], "color": "#ecfdf5"}]},
             "title": {"text": "State of charge", "font": {"size": 13, "color": "#6b7280"}}}
    return {"data": [gauge], "layout": {
        "height": 220, "margin": {"l": 36, "r": 36, "t": 40, "b": 8}, "font": {"family": FONT},
        "paper_bgcolor": "rgba(0,0,0,0)"}}
