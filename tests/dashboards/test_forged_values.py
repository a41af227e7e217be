"""Forged callback values on the admin, tariff, savings and schedule pages never give a 500.

Unicode digits (``"²".isdigit()`` is True but ``int("²")`` fails), ids past
PostgreSQL's ``int`` range, lists, objects and numbers where the page sends a
string: each gets a message or no update, never a server error.
"""

from __future__ import annotations

import json

import pytest

from tests.dashboards.conftest import call_callback, login


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _text(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return json.dumps(response.get_json(), ensure_ascii=False)


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
