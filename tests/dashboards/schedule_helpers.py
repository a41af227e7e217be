"""Helpers for the schedule page tests: post its callbacks (pattern-matching ones too) as a browser.

``post(client, app, output, values)`` finds the app's callback writing ``output``
("id.property"; for a pattern-matching output the type, e.g.
``"schedule-period-error.children"``) and posts its inputs and states as Dash's
renderer does: ``values`` maps "id.property" (or "type.property" of a
pattern-matching dependency, whose value is then the list of the rows' values)
to values; ``rows`` tells how many components each pattern-matching output has (one
number for all, or a dict by type).
"""

from __future__ import annotations

import json

from kilowatch.schedules import model as schedules
from tests.dashboards.conftest import login

PERIOD_FIELDS = ("day", "start", "end", "mode", "power_kw", "grid_limit_kw", "soc_min",
                 "soc_max")
EXCEPTION_FIELDS = ("date", "name", "start", "end", "mode", "power_kw", "grid_limit_kw",
                    "soc_min", "soc_max")


def signed_in(app, account):
    """Return a test client signed in as ``account``."""
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _parse(dependency_id: str):
    try:
        parsed = json.loads(dependency_id)
    except ValueError:
        return dependency_id
    return parsed if isinstance(parsed, dict) else dependency_id


def _name(dependency_id) -> str:
    return dependency_id["type"] if isinstance(dependency_id, dict) else dependency_id


def _dependency(item: dict, values: dict) -> dict | list:
    dependency_id = _parse(item["id"])
    key = f"{_name(dependency_id)}.{item['property']}"
    if not isinstance(dependency_id, dict):
        return {"id": dependency_id, "property": item["property"], "value": values.get(key)}
    return [{"id": {**dependency_id, "index": index}, "property": item["property"],
             "value": value} for index, value in enumerate(values.get(key) or [])]


def _output(part: str, rows: int | dict) -> dict | list:
    component, prop = part.rsplit(".", 1)
    parsed = _parse(component)
    if isinstance(parsed, dict):
        count = rows.get(parsed["type"], 0) if isinstance(rows, dict) else rows
        return [{"id": {**parsed, "index": index}, "property": prop} for index in range(count)]
    return {"id": component, "property": prop}


def find_callback(app, output: str) -> str:
    """Return the callback map key of the callback writing ``output``."""
    for key in app.callback_map:
        for part in key.strip(".").split("..."):
            component, prop = part.rsplit(".", 1)
            if f"{_name(_parse(component))}.{prop}" == output:
                return key
    raise AssertionError(f"no callback writes {output}")


def callback_body(key: str, entry: dict, values: dict | None = None, *,
                  triggered: str | None = None, rows: int | dict = 0) -> dict:
    """Return the JSON a browser posts for the callback ``key`` (inputs/state as in ``entry``)."""
    values = values or {}
    outputs = [_output(part, rows) for part in key.strip(".").split("...")]
    return {"output": key, "outputs": outputs if key.startswith("..") else outputs[0],
            "inputs": [_dependency(item, values) for item in entry["inputs"]],
            "state": [_dependency(item, values) for item in entry["state"]],
            "changedPropIds": [triggered] if triggered else []}


def post(client, app, output: str, values: dict | None = None, *, triggered: str | None = None,
         rows: int | dict = 0):
    """Post the callback writing ``output`` with these values; return the response."""
    key = find_callback(app, output)
    body = callback_body(key, app.callback_map[key], values, triggered=triggered, rows=rows)
    return client.post("/_dash-update-component", json=body)


def draft_values(site_id: int, schedule: dict) -> dict:
    """Return the page's input values for a schedule, as the editor shows it (a row per day)."""
    rows = [{"day": day, **period} for period in schedule.get("periods", [])
            for day in period["days"]]
    rows.sort(key=lambda r: (schedules.DAYS.index(r["day"]), r["start"]))
    values = {"schedule-site-id.data": site_id,
              "schedule-default-mode.value": schedule.get("default_mode", "idle")}
    for key, value in (schedule.get("default_params") or {}).items():
        values[f"schedule-default-{key}.value"] = value
    for field in PERIOD_FIELDS:
        values[f"schedule-period-{field}.value"] = [row.get(field) for row in rows]
    exception_rows = []
    for exception in schedule.get("exceptions", []):
        head = {"date": exception["date"], "name": exception.get("name", "")}
        exception_rows += [{**head, **p} for p in exception["periods"]] or [
            {**head, "start": "", "end": "", "mode": ""}]
    for field in EXCEPTION_FIELDS:
        values[f"schedule-exception-{field}.value"] = [row.get(field) for row in exception_rows]
    return values


def response_json(response) -> dict:
    """Return the ``response`` part of a callback answer."""
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["response"]


def pattern_values(answer: dict, kind: str, prop: str = "children") -> list:
    """Return the values a callback answer gives the components of one pattern type, in order."""
    found = {}
    for key, props in answer.items():
        parsed = _parse(key)
        if isinstance(parsed, dict) and parsed.get("type") == kind:
            found[parsed["index"]] = props[prop]
    return [found[index] for index in sorted(found)]
