"""The schedule editor's form: one row per day and period, exceptions by date, and errors by row.

The editor shows a weekly period as one row per day it runs on, so that
"Monday 17:00–21:00" can be changed without touching Tuesday, and a day can be
copied onto others. :func:`draft` turns the rows back into the schedule JSON
(rows alike on several days become one period with those days), and
:func:`row_errors` puts each message of :func:`kilowatch.schedules.model.validate` next
to the row it is about. Everything here is pure: values in, components out.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterable

import dash_bootstrap_components as dbc
from dash import html

from dashboards.components.schedules.timeline import MODE_LABELS
from kilowatch.schedules import model as schedules

PARAMS = ("power_kw", "grid_limit_kw", "soc_min", "soc_max")
PARAM_HEADERS = {"power_kw": "Power kW", "grid_limit_kw": "Grid limit kW",
                 "soc_min": "SoC min %", "soc_max": "SoC max %"}
PERIOD_FIELDS = ("day", "start", "end", "mode", *PARAMS)
EXCEPTION_FIELDS = ("date", "name", "start", "end", "mode", *PARAMS)
ALL_DAY = "all_day"  # an exception row's "mode" for a date with no period (default mode)
MAX_ROWS = 1500  # 200 periods on every day; more is not a schedule but a forged request

_PERIOD = re.compile(r"^period (\d+)(?: \([^)]*\))?: (.+)$", re.S)
_EXCEPTION_INDEX = re.compile(r"^exception (\d+): (.+)$", re.S)
_EXCEPTION_PERIOD = re.compile(r"^exception (\d{4}-\d\d-\d\d), period (\d+)(?: \([^)]*\))?: (.+)$",
                               re.S)
_EXCEPTION_DATE = re.compile(r"^exception (\d{4}-\d\d-\d\d)(?::| is) (.+)$", re.S)
_OVERLAP = re.compile(r"^(\S+) (\d\d:\d\d)–(\d\d:\d\d) overlaps \1 (\d\d:\d\d)–(\d\d:\d\d)$")
_WORDS = {"power_kw": "power", "grid_limit_kw": "grid limit", "soc_min": "SoC min",
          "soc_max": "SoC max", "peak_shaving": "peak shaving",
          "self_consumption": "self-consumption"}


def period_rows(schedule: dict | None) -> list[dict]:
    """Return one editor row per (day, weekly period), in week order."""
    rows = []
    for period in (schedule or {}).get("periods", []):
        for day in period.get("days", []):
            rows.append({"day": day, **{k: period.get(k) for k in PERIOD_FIELDS if k != "day"}})
    order = {day: n for n, day in enumerate(schedules.DAYS)}
    return sorted(rows, key=lambda r: (order.get(r["day"], 7), str(r.get("start"))))


def exception_rows(schedule: dict | None) -> list[dict]:
    """Return one editor row per exception period (one empty row for an all-day exception)."""
    rows = []
    for exception in (schedule or {}).get("exceptions", []):
        head = {"date": exception.get("date"), "name": exception.get("name") or ""}
        periods = exception.get("periods") or []
        if not periods:
            rows.append({**head, "start": "", "end": "", "mode": ALL_DAY})
        rows += [{**head, **{k: p.get(k) for k in EXCEPTION_FIELDS[2:]}} for p in periods]
    return rows


def rows_from_values(values: dict[str, list], fields: Iterable[str]) -> list[dict]:
    """Zip the per-field value lists posted by the form into rows."""
    fields = tuple(fields)
    columns = [values.get(field) or [] for field in fields]
    if any(not isinstance(column, list) for column in columns):
        return []
    return [dict(zip(fields, map(_scalar, row), strict=True))
            for row in itertools.zip_longest(*columns)][:MAX_ROWS + 1]


def _scalar(value):
    """Keep text, numbers and None; a list or object (a forged request) becomes its text."""
    return value if value is None or isinstance(value, str | int | float) else repr(value)


def copy_day(rows: list[dict], source: str, targets: Iterable[str]) -> list[dict]:
    """Replace the rows of the target days with copies of the source day's rows."""
    targets = {t for t in (targets if isinstance(targets, list) else [])
               if isinstance(t, str) and t in schedules.DAYS and t != source}
    copies = [{**row, "day": day} for day in sorted(targets, key=schedules.DAYS.index)
              for row in rows if row.get("day") == source]
    kept = [row for row in rows if row.get("day") not in targets]
    return period_rows({"periods": [{**r, "days": [r.get("day")]} for r in kept + copies]})


# ---- rows back to the schedule JSON ---------------------------------------------------------

def _text(value):
    """Return a form value as the schedule takes it: text stripped, numbers kept.

    Anything else (a list or an object in a forged request) becomes its text, so
    that validation names it instead of failing on it.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        value = repr(value)
    return value.strip() or None


def _period(row: dict) -> dict:
    mode = _text(row.get("mode"))
    body = {"start": _text(row.get("start")), "end": _text(row.get("end")), "mode": mode}
    wanted = schedules.MODE_PARAMS.get(mode, PARAMS) if isinstance(mode, str) else PARAMS
    body.update({k: _text(row[k]) for k in wanted if _text(row.get(k)) is not None})
    return {k: v for k, v in body.items() if v is not None}


def default_params(mode, values: dict) -> dict:
    """Return the default mode's parameters from the default-mode inputs."""
    wanted = schedules.MODE_PARAMS.get(mode, ()) if isinstance(mode, str) else ()
    return {k: _text(values[k]) for k in wanted if _text(values.get(k)) is not None}


@dataclasses.dataclass(frozen=True)
class Draft:
    """The editor's rows as a schedule: one period per row (to check) and merged (to save)."""

    per_row: dict
    merged: dict
    exception_groups: list[list[int]]  # exception n (0-based) → its row indexes


def draft(timezone: str, default_mode, params: dict, periods: list[dict],
          exceptions: list[dict]) -> Draft:
    """Turn editor rows into the schedule JSON, keeping which row became which period."""
    head = {"timezone": timezone, "default_mode": _text(default_mode)}
    if params:
        head["default_params"] = params
    per_row_periods = [{"days": [row.get("day")], **_period(row)} for row in periods]
    groups, per_row_exceptions = _exceptions(exceptions)
    per_row = {**head, "periods": per_row_periods, "exceptions": per_row_exceptions}
    return Draft(per_row, {**per_row, "periods": _merge(per_row_periods)}, groups)


def _exceptions(rows: list[dict]) -> tuple[list[list[int]], list[dict]]:
    groups: dict[str, list[int]] = {}
    loose: list[list[int]] = []
    for index, row in enumerate(rows):
        date = _text(row.get("date"))
        if isinstance(date, str):
            groups.setdefault(date, []).append(index)
        else:
            loose.append([index])
    ordered = list(groups.values()) + loose
    bodies = []
    for indexes in ordered:
        first = rows[indexes[0]]
        names = [_text(rows[i].get("name")) for i in indexes if _text(rows[i].get("name"))]
        body = {"date": _text(first.get("date"))} if _text(first.get("date")) else {}
        if names:
            body["name"] = names[0]
        body["periods"] = [_period(rows[i]) for i in indexes
                           if _text(rows[i].get("mode")) not in (None, ALL_DAY)]
        bodies.append(body)
    return ordered, bodies


def _merge(periods: list[dict]) -> list[dict]:
    """Join periods that differ only by day into one period with several days."""
    merged: dict[tuple, dict] = {}
    for period in periods:
        rest = {k: v for k, v in period.items() if k != "days"}
        key = tuple(sorted((k, repr(v)) for k, v in rest.items()))
        if key in merged and not set(period["days"]) & set(merged[key]["days"]):
            merged[key]["days"] += period["days"]
        else:
            merged.setdefault(key, {"days": list(period["days"]), **rest})
    result = list(merged.values())
    for period in result:
        period["days"] = sorted(period["days"], key=lambda d: _day_order(d))
    return sorted(result, key=lambda p: (_day_order(p["days"][0]), str(p.get("start"))))


def _day_order(day) -> int:
    return schedules.DAYS.index(day) if day in schedules.DAYS else 7


# ---- errors next to their rows ---------------------------------------------------------------

@dataclasses.dataclass
class RowErrors:
    """Validation messages sorted by where they belong."""

    periods: list[list[str]]
    exceptions: list[list[str]]
    general: list[str]

    @property
    def count(self) -> int:
        """How many messages there are in all."""
        return (sum(map(len, self.periods)) + sum(map(len, self.exceptions))
                + len(self.general))


def sentence(message: str) -> str:
    """Make a validation message read well on its own: plain words, capital letter."""
    for key, word in _WORDS.items():
        message = re.sub(rf"\b{key}\b", word, message)
    return message[:1].upper() + message[1:]


def row_errors(errors: list[str], periods: list[dict], exceptions: list[dict],
               exception_groups: list[list[int]]) -> RowErrors:
    """Place each message of the per-row draft's validation on its period or exception row."""
    found = RowErrors([[] for _ in periods], [[] for _ in exceptions], [])
    by_date = {_text(exceptions[g[0]].get("date")): g for g in exception_groups if g}
    for message in errors:
        if not (_place_period(message, periods, found)
                or _place_exception(message, exceptions, exception_groups, by_date, found)):
            found.general.append(sentence(message))
    return found


def _place_period(message: str, periods: list[dict], found: RowErrors) -> bool:
    match = _PERIOD.match(message)
    if match and 0 < int(match.group(1)) <= len(periods):
        found.periods[int(match.group(1)) - 1].append(sentence(match.group(2)))
        return True
    match = _OVERLAP.match(message)
    names = {name: day for day, name in schedules.DAY_NAMES.items()}
    if not match or match.group(1) not in names:
        return False
    day, first, second = names[match.group(1)], match.group(2, 3), match.group(4, 5)
    return _mark_overlap([(i, r) for i, r in enumerate(periods) if r.get("day") == day],
                         match.group(1), first, second, found.periods)


def _mark_overlap(rows: list[tuple[int, dict]], label: str, first: tuple, second: tuple,
                  target: list[list[str]]) -> bool:
    def index_of(times: tuple) -> int | None:
        return next((i for i, r in rows
                     if (_text(r.get("start")), _text(r.get("end"))) == times), None)

    a, b = index_of(first), index_of(second)
    if a is None or b is None:
        return False
    target[a].append(f"Overlaps {label} {second[0]}–{second[1]}")
    target[b].append(f"Overlaps {label} {first[0]}–{first[1]}")
    return True


def _place_exception(message: str, rows: list[dict], groups: list[list[int]],
                     by_date: dict, found: RowErrors) -> bool:
    match = _EXCEPTION_PERIOD.match(message)
    if match and match.group(1) in by_date:
        with_periods = [i for i in by_date[match.group(1)]
                        if _text(rows[i].get("mode")) not in (None, ALL_DAY)]
        position = int(match.group(2)) - 1
        if 0 <= position < len(with_periods):
            found.exceptions[with_periods[position]].append(sentence(match.group(3)))
            return True
    match = _EXCEPTION_INDEX.match(message)
    if match and 0 < int(match.group(1)) <= len(groups):
        for index in groups[int(match.group(1)) - 1]:
            found.exceptions[index].append(sentence(match.group(2)))
        return True
    match = _OVERLAP.match(message)
    if match and match.group(1) in by_date:
        rows_of_day = [(i, rows[i]) for i in by_date[match.group(1)]]
        return _mark_overlap(rows_of_day, match.group(1), match.group(2, 3), match.group(4, 5),
                             found.exceptions)
    match = _EXCEPTION_DATE.match(message)
    if match and match.group(1) in by_date:
        text = match.group(2)
        text = f"This date is {text}" if message.startswith(
            f"exception {match.group(1)} is") else text
        for index in by_date[match.group(1)]:
            found.exceptions[index].append(sentence(text))
        return True
    return False


# ---- the form ------------------------------------------------------------------------------------

def mode_options(has_optimizer: bool, *, all_day: bool = False) -> list[dict]:
    """Return the mode choices (``optimized`` only on sites with the optimiser)."""
    options = [{"label": "Default mode all day", "value": ALL_DAY}] if all_day else []
    options += [{"label": MODE_LABELS[mode], "value": mode} for mode in schedules.MODES
                if mode != "optimized" or has_optimizer]
    return options


DAY_OPTIONS = [{"label": schedules.DAY_NAMES[d], "value": d} for d in schedules.DAYS]


def disabled_params(mode, editable: bool) -> list[bool]:
    """Say, for each parameter input, whether it is disabled for this mode."""
    wanted = schedules.MODE_PARAMS.get(mode, ()) if isinstance(mode, str) else ()
    return [not editable or key not in wanted for key in PARAMS]


def _cell(component, width: str | None = None) -> html.Td:
    return html.Td(component, className="py-1 px-1 align-middle",
                   style={"minWidth": width} if width else None)


def _param_cells(kind: str, index: int, row: dict, editable: bool) -> list[html.Td]:
    applies = [not off for off in disabled_params(row.get("mode"), True)]
    return [_cell(dbc.Input(id={"type": f"schedule-{kind}-{key}", "index": index},
                            type="number", value=row.get(key) if used else None,
                            disabled=not (used and editable), size="sm", min=0, step="any",
                            placeholder="" if used else "—", className="kw-param"), "5.5rem")
            for key, used in zip(PARAMS, applies, strict=True)]


def _time_cell(kind: str, field: str, index: int, value, editable: bool) -> html.Td:
    return _cell(dbc.Input(id={"type": f"schedule-{kind}-{field}", "index": index},
                           value=value or "", placeholder="HH:MM", maxLength=5, size="sm",
                           disabled=not editable, debounce=True, className="kw-time"), "5rem")


def _mode_cell(kind: str, index: int, mode, has_optimizer: bool, editable: bool,
               all_day: bool = False) -> html.Td:
    value = ALL_DAY if all_day and mode in (None, "") else mode
    return _cell(dbc.Select(id={"type": f"schedule-{kind}-mode", "index": index},
                            options=mode_options(has_optimizer, all_day=all_day), value=value,
                            size="sm", disabled=not editable), "10rem")


def _delete_cell(kind: str, index: int, editable: bool) -> html.Td:
    button = dbc.Button("✕", id={"type": f"schedule-{kind}-delete", "index": index},
                        color="link", size="sm", className="text-danger p-0 text-decoration-none",
                        title="Delete this row") if editable else None
    return _cell(button)


def _error_row(kind: str, index: int, columns: int) -> html.Tr:
    return html.Tr(html.Td(html.Div(id={"type": f"schedule-{kind}-error", "index": index},
                                    className="kw-row-error small text-danger"),
                           colSpan=columns, className="p-0 border-0"))


def period_row(index: int, row: dict, *, editable: bool, has_optimizer: bool) -> list[html.Tr]:
    """Return one editable row of the weekly program and the line for its errors."""
    cells = [
        _cell(dbc.Select(id={"type": "schedule-period-day", "index": index}, options=DAY_OPTIONS,
                         value=row.get("day"), size="sm", disabled=not editable), "9.5rem"),
        _time_cell("period", "start", index, row.get("start"), editable),
        _time_cell("period", "end", index, row.get("end"), editable),
        _mode_cell("period", index, row.get("mode"), has_optimizer, editable),
        *_param_cells("period", index, row, editable),
        _delete_cell("period", index, editable),
    ]
    return [html.Tr(cells, className="kw-schedule-row"), _error_row("period", index, len(cells))]


def exception_row(index: int, row: dict, *, editable: bool,
                  has_optimizer: bool) -> list[html.Tr]:
    """Return one exception row (date, name, one period or all day) and its error line."""
    cells = [
        _cell(dbc.Input(id={"type": "schedule-exception-date", "index": index}, type="date",
                        value=row.get("date") or "", size="sm", disabled=not editable),
              "9.5rem"),
        _cell(dbc.Input(id={"type": "schedule-exception-name", "index": index},
                        value=row.get("name") or "", placeholder="Name (optional)",
                        maxLength=100, size="sm", disabled=not editable, debounce=True), "9rem"),
        _time_cell("exception", "start", index, row.get("start"), editable),
        _time_cell("exception", "end", index, row.get("end"), editable),
        _mode_cell("exception", index, row.get("mode"), has_optimizer, editable, all_day=True),
        *_param_cells("exception", index, row, editable),
        _delete_cell("exception", index, editable),
    ]
    return [html.Tr(cells, className="kw-schedule-row"),
            _error_row("exception", index, len(cells))]


def table(first: list[str], body_id: str, rows: list) -> dbc.Table:
    """Return a table of editor rows under column titles."""
    titles = [*first, "Mode", *(PARAM_HEADERS[k] for k in PARAMS), ""]
    head = html.Thead(html.Tr([html.Th(t, className="small text-muted fw-semibold px-1")
                               for t in titles]))
    return dbc.Table([head, html.Tbody(rows, id=body_id)], borderless=False, size="sm",
                     className="kw-schedule-table mb-2 align-middle")


def rows_or_empty(rows: list, text: str, columns: int) -> list:
    """Return the rows, or a short note across the table when there are none."""
    return rows or [html.Tr(html.Td(text, colSpan=columns,
                                    className="text-muted small py-2 kw-empty"))]
