"""Forge every input of a page's server callbacks, the way a hostile browser could.

Used by the site page, explorer and fleet page tests: each value of
:data:`FORGED` (and :data:`EXTREME_DATES` for date pickers) is sent in place of
every input and state of every server callback whose outputs start with the
page's prefix, alone and beside real values; the answer must be a page update,
no update or a refusal (:data:`ACCEPTED`), never a server error.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.dashboards.conftest import dash_post

FORGED = ["²", "99999999999", ["1"], {"a": 1}, 5, None, True, -1]
EXTREME_DATES = ["9999-12-31", "0001-01-01", "1969-12-31", "2101-01-01", "9999-12-31T23:59:59",
                 "+275760-09-13", "-000001-01-01", "2026-02-30"]
ACCEPTED = {200, 204, 400, 403}


def server_callbacks(app, prefix: str) -> list[tuple[str, dict]]:
    """Return (key, entry) of the app's server callbacks writing ids that start with ``prefix``."""
    found = [(key, entry) for key, entry in app.callback_map.items()
             if key.strip(".").split("...")[0].startswith(prefix) and entry.get("callback")]
    assert found, f"no server callback of {prefix!r}: the walk would prove nothing"
    return found


def _items(dependencies, value_of) -> list[dict]:
    return [{"id": d["id"], "property": d["property"], "value": value_of(d)}
            for d in dependencies]


def _name(dependency: dict) -> str:
    return f"{dependency['id']}.{dependency['property']}"


def values_for(dependency: dict) -> list:
    """The forged values to try in one input: extreme dates too for a date picker."""
    return FORGED + (EXTREME_DATES if dependency["property"].endswith("_date") else [])


def forge_each_input(client, app, prefix: str, real: Callable[[str, dict], object]) -> list[str]:
    """Send forged values to every input of the page's callbacks; return the failures.

    ``real(key, dependency)`` gives the genuine value of the other inputs, so a
    forged value also reaches code that only runs when the rest is valid.
    """
    failures = []
    for key, entry in server_callbacks(app, prefix):
        for target in entry["inputs"] + entry["state"]:
            for forged in values_for(target):
                def value_of(d, target=target, forged=forged, key=key):
                    return forged if d is target else real(key, d)
                response = dash_post(client, key, _items(entry["inputs"], value_of),
                                     _items(entry["state"], value_of), [_name(target)])
                if response.status_code not in ACCEPTED:
                    failures.append(f"{key} with {_name(target)}={forged!r}: "
                                    f"{response.status_code}")
    return failures


def forge_all_inputs(client, app, prefix: str) -> list[str]:
    """Send each forged value in every input at once; return the failures."""
    failures = []
    for key, entry in server_callbacks(app, prefix):
        for forged in FORGED + EXTREME_DATES:
            def value_of(_dependency, forged=forged):
                return forged
            response = dash_post(client, key, _items(entry["inputs"], value_of),
                                 _items(entry["state"], value_of))
            if response.status_code not in ACCEPTED:
                failures.append(f"{key} with {forged!r}: {response.status_code}")
    return failures
