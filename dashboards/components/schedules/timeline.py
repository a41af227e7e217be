"""The week timeline of a schedule: days × hours, coloured by mode, with a legend.

Pure builders: they take a schedule dict (the JSON shape of docs/schedules.md, possibly
still being edited, so periods with unreadable times are left out) and return a
Plotly figure. Upcoming exceptions get their own rows under the week.
"""

from __future__ import annotations

import datetime as dt
import re

import plotly.graph_objects as go

from kilowatch.schedules import model as schedules

MODE_COLORS = {
    "idle": "#cbd5e1",
    "charge": "#2563eb",
    "discharge": "#f59e0b",
    "peak_shaving": "#dc2626",
    "self_consumption": "#16a34a",
    "optimized": "#7c3aed",
}
MODE_LABELS = {
    "idle": "Idle",
    "charge": "Charge",
    "discharge": "Discharge",
    "peak_shaving": "Peak shaving",
    "self_consumption": "Self-consumption",
    "optimized": "Optimised",
}
MAX_EXCEPTION_ROWS = 6
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_SHORT = {"power_kw": "{:g} kW", "grid_limit_kw": "≤ {:g} kW"}


def mode_label(mode: str) -> str:
    """Return a mode's name for people (``Peak shaving``)."""
    return MODE_LABELS.get(mode, str(mode))


def short_label(mode: str, params: dict) -> str:
    """Return the text written inside a bar: ``Discharge 60 kW``."""
    extra = [fmt.format(params[key]) for key, fmt in _SHORT.items()
             if isinstance(params.get(key), int | float)]
    return " ".join([mode_label(mode), *extra])


def _readable(period: dict) -> bool:
    start, end = period.get("start"), period.get("end")
    return (isinstance(start, str) and isinstance(end, str) and bool(_TIME.match(start))
            and bool(_TIME.match(end)) and schedules.minutes(start) < schedules.minutes(end)
            <= 24 * 60 and period.get("mode") in MODE_COLORS)


def day_slices(periods: list[dict], default_mode: str, default_params: dict) -> list[tuple]:
    """Cover a day with (start_h, end_h, mode, params) slices; gaps get the default mode."""
    usable = sorted((p for p in periods if _readable(p)),
                    key=lambda p: schedules.minutes(p["start"]))
    slices, cursor = [], 0
    for period in usable:
        start, end = schedules.minutes(period["start"]), schedules.minutes(period["end"])
        if start > cursor:
            slices.append((cursor / 60, start / 60, default_mode, default_params))
        params = {k: period[k] for k in schedules.MODE_PARAMS[period["mode"]] if k in period}
        slices.append((start / 60, end / 60, period["mode"], params))
        cursor = max(cursor, end)
    if cursor < 24 * 60:
        slices.append((cursor / 60, 24.0, default_mode, default_params))
    return slices


def _rows(schedule: dict, today: dt.date | None) -> list[tuple[str, list[dict]]]:
    periods = [p for p in schedule.get("periods", []) if isinstance(p, dict)]
    rows = [(schedules.DAY_NAMES[day], [p for p in periods if day in (p.get("days") or ())])
            for day in schedules.DAYS]
    upcoming = sorted((e for e in schedule.get("exceptions", []) if isinstance(e, dict)
                       and isinstance(e.get("date"), str) and _is_date(e["date"])
                       and (today is None or e["date"] >= today.isoformat())),
                      key=lambda e: e["date"])
    for exception in upcoming[:MAX_EXCEPTION_ROWS]:
        rows.append((_exception_label(exception), exception.get("periods") or []))
    return rows


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _exception_label(exception: dict) -> str:
    day = dt.date.fromisoformat(exception["date"])
    name = exception.get("name")
    label = f"{day:%a %d %b}"
    return f"{label} · {name[:18]}" if isinstance(name, str) and name else label


def _hhmm(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def week_figure(schedule: dict, *, today: dt.date | None = None,
                now_local: dt.datetime | None = None) -> go.Figure:
    """Draw the weekly program (and upcoming exceptions) as coloured bars per day."""
    default_mode = schedule.get("default_mode")
    if default_mode not in MODE_COLORS:
        default_mode = "idle"
    default_params = schedule.get("default_params") or {}
    rows = _rows(schedule, today)
    bars: dict[str, dict[str, list]] = {}
    for label, periods in rows:
        for start, end, mode, params in day_slices(periods, default_mode, default_params):
            bar = bars.setdefault(mode, {"y": [], "base": [], "x": [], "text": [], "hover": []})
            bar["y"].append(label)
            bar["base"].append(start)
            bar["x"].append(end - start)
            bar["text"].append(short_label(mode, params) if end - start >= 2 else "")
            bar["hover"].append(f"{label} {_hhmm(start)}–{_hhmm(end)}<br>"
                                f"{schedules.format_params(mode, params)}")
    figure = go.Figure()
    for mode in MODE_COLORS:
        if mode not in bars:
            continue
        bar = bars[mode]
        figure.add_trace(go.Bar(
            y=bar["y"], base=bar["base"], x=bar["x"], orientation="h", name=mode_label(mode),
            marker={"color": MODE_COLORS[mode], "line": {"color": "white", "width": 1}},
            text=bar["text"], textposition="inside", insidetextanchor="middle",
            textfont={"color": "#1f2937" if mode == "idle" else "white", "size": 11},
            hovertext=bar["hover"], hoverinfo="text", cliponaxis=False))
    _decorate(figure, [label for label, _ in rows], now_local)
    return figure


def _decorate(figure: go.Figure, labels: list[str], now_local: dt.datetime | None) -> None:
    figure.update_layout(
        barmode="overlay", bargap=0.25, height=70 + 34 * len(labels),
        margin={"l": 10, "r": 10, "t": 40, "b": 30}, plot_bgcolor="white",
        paper_bgcolor="white", uniformtext={"minsize": 9, "mode": "hide"},
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom",
                "title": {"text": ""}},
        xaxis={"range": [0, 24], "tickvals": list(range(0, 25, 2)),
               "ticktext": [f"{h:02d}:00" for h in range(0, 25, 2)], "showgrid": True,
               "gridcolor": "#eef2f7", "fixedrange": True, "side": "bottom"},
        yaxis={"categoryorder": "array", "categoryarray": labels, "autorange": "reversed",
               "fixedrange": True, "ticksuffix": "  "},
    )
    if len(labels) > len(schedules.DAYS):
        figure.add_hline(y=len(schedules.DAYS) - 0.5, line={"color": "#94a3b8", "dash": "dot"})
    if now_local is not None:
        day = schedules.DAY_NAMES[schedules.DAYS[now_local.weekday()]]
        hours = now_local.hour + now_local.minute / 60
        index = labels.index(day)
        figure.add_shape(type="line", x0=hours, x1=hours, y0=index - 0.45, y1=index + 0.45,
                         line={"color": "#111827", "width": 2})
