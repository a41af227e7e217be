"""Forged callback values on the admin, tariff, savings and schedule pages never give a 500.

Unicode digits (``"²".isdigit()`` is True but ``int("²")`` fails), ids past
PostgreSQL's ``int`` range, lists, objects and numbers where the page sends a
string: each gets a message or no update, never a server error.
"""

from __future__ import annotations

import json

import pytest

from tests.dashboards.conftest import call_callback, dash_post, login

FORGED = ["²", "99999999999", ["1"], {"a": 1}, 5, None, True, -1, 1.5, "1 OR 1=1"]
ACCEPTED = {200, 204, 400, 403}
PAGES = ("admin-users-", "admin-groups-", "tariffs-", "savings-", "schedule-")


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return json.dumps(response.get_json(), ensure_ascii=False)


def _plain_callbacks(app) -> list[tuple[str, dict]]:
    """The server callbacks of these pages without pattern-matching dependencies."""
    found = []
    for key, entry in app.callback_map.items():
        outputs = key.strip(".").split("...")
        if not outputs[0].startswith(PAGES) or "{" in key or not entry.get("callback"):
            continue  # clientside callbacks run in the browser only
        dependencies = entry["inputs"] + entry["state"]
        if any(isinstance(d["id"], dict) or d["id"].startswith("{") for d in dependencies):
            continue
        found.append((key, entry))
    return found


def _items(dependencies, value_of) -> list[dict]:
    return [{"id": d["id"], "property": d["property"], "value": value_of(d)}
            for d in dependencies]


def test_every_plain_callback_survives_forged_values(app, tenants):
    client = _as(app, tenants.superadmin)
    callbacks = _plain_callbacks(app)
    assert len(callbacks) >= 15, "too few callbacks found: the walk would prove nothing"
    failures = []
    for key, entry in callbacks:
        for forged in FORGED:
            def value_of(_dependency, forged=forged):
                return forged
            inputs = _items(entry["inputs"], value_of)
            response = dash_post(client, key, inputs, _items(entry["state"], value_of))
            if response.status_code not in ACCEPTED:
                failures.append(f"{key} with {forged!r}: {response.status_code}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("forged", FORGED)
def test_every_plain_callback_survives_one_forged_value_beside_real_ones(app, tenants, forged):
    client = _as(app, tenants.a.admin)
    real = {"admin-users-company.value": str(tenants.a.id),
            "admin-groups-company.value": str(tenants.a.id),
            "tariffs-company.value": str(tenants.a.id),
            "tariffs-site.value": str(tenants.a.sites[0]),
            "savings-site.data": tenants.a.sites[0],
            "schedule-site-id.data": tenants.a.sites[0]}
    failures = []
    for key, entry in _plain_callbacks(app):
        dependencies = entry["inputs"] + entry["state"]
        for target in dependencies:
            def value_of(d, target=target):
                if d is target:
                    return forged
                return real.get(f"{d['id']}.{d['property']}", 1 if "n_clicks" in d["property"]
                                else None)
            response = dash_post(client, key, _items(entry["inputs"], value_of),
                                 _items(entry["state"], value_of),
                                 [f"{target['id']}.{target['property']}"])
            if response.status_code not in ACCEPTED:
                failures.append(f"{key} with {target['id']}.{target['property']}={forged!r}: "
                                f"{response.status_code}")
    assert not failures, "\n".join(failures)


# --- ids: Unicode digits and ids past the int range ----------------------------------------------


@pytest.mark.parametrize("company", ["²", "99999999999", "١"])
@pytest.mark.parametrize("output", ["admin-users-table.children", "admin-groups-table.children",
                                    "tariffs-list-slot.children"])
def test_forged_company_ids_get_a_message(app, tenants, company, output):
    prefix = output.split("-table")[0].split("-list")[0]
    response = call_callback(_as(app, tenants.a.admin), app, output,
                             {f"{prefix}-company.value": company})
    assert "not a valid company" in _text(response)


@pytest.mark.parametrize("site", ["²", "99999999999"])
def test_forged_site_ids_on_the_savings_page_get_nothing(app, tenants, site):
    response = call_callback(_as(app, tenants.a.viewer), app, "savings-monthly.figure",
                             {"savings-site.data": site, "savings-computed.data": "x"})
    assert response.status_code == 204


@pytest.mark.parametrize("path", ["/site/%C2%B2/savings", "/site/99999999999/savings",
                                  "/site/²/schedule"])
def test_a_link_with_a_unicode_or_huge_site_id_shows_not_allowed(app, tenants, path):
    response = call_callback(_as(app, tenants.a.viewer), app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": ""})
    assert response.status_code == 200


@pytest.mark.parametrize("search", ["?site=%C2%B2", "?site=99999999999", "?site=1&site=2"])
def test_the_tariff_page_ignores_a_bad_site_in_its_link(app, tenants, search):
    response = call_callback(_as(app, tenants.a.admin), app, "_pages_content.children",
                             {"_pages_location.pathname": "/admin/tariffs",
                              "_pages_location.search": search})
    assert "tariffs-assign-card" in _text(response)


@pytest.mark.parametrize("site", ["²", "99999999999"])
def test_forged_site_on_the_tariff_history_is_ignored(app, tenants, site):
    response = call_callback(_as(app, tenants.a.admin), app, "tariffs-history-slot.children",
                             {"tariffs-site.value": site})
    assert response.status_code == 204


# --- free text that is not text -------------------------------------------------------------------


@pytest.mark.parametrize("forged", [5, ["a@example.com"], {"email": "a@example.com"}, True])
def test_a_forged_email_or_name_gets_a_message(app, tenants, forged):
    client = _as(app, tenants.a.admin)
    user = call_callback(client, app, "admin-users-message.children", {
        "admin-users-create.n_clicks": 1, "admin-users-company.value": str(tenants.a.id),
        "admin-users-email.value": forged, "admin-users-name.value": forged,
        "admin-users-new-role.value": "viewer"}, triggered="admin-users-create.n_clicks")
    assert "is not a valid e-mail address" in _text(user)
    group = call_callback(client, app, "admin-groups-message.children", {
        "admin-groups-create.n_clicks": 1, "admin-groups-company.value": str(tenants.a.id),
        "admin-groups-name.value": forged}, triggered="admin-groups-create.n_clicks")
    assert "A group name has 1 to 120 characters" in _text(group)
    tariff = call_callback(client, app, "tariffs-message.children", {
        "tariffs-create.n_clicks": 1, "tariffs-company.value": str(tenants.a.id),
        "tariffs-new-name.value": forged}, triggered="tariffs-create.n_clicks")
    assert "a tariff needs a name" in _text(tariff)


@pytest.mark.parametrize("which", [["actual"], {"actual": 1}, 3])
def test_a_forged_peak_choice_draws_an_empty_chart(app, tenants, which):
    peaks = {"peaks": {"actual": [1.0, "2026-09-01T10:00:00+00:00"]}}
    response = call_callback(_as(app, tenants.a.viewer), app, "savings-peak-graph.figure",
                             {"savings-peak-which.value": which, "savings-peaks.data": peaks,
                              "savings-site.data": tenants.a.sites[0]})
    assert "No peak to show." in _text(response)
