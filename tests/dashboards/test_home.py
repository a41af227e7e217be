"""The home page (the fleet grid) lists exactly the sites of the user's scope."""

from __future__ import annotations

import json

import pytest

from tests.dashboards.conftest import call_callback, login


def _home(app, account) -> str:
    """The home page and the first window of its fleet grid, as the browser loads them."""
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    page = call_callback(client, app, "_pages_content.children",
                         {"_pages_location.pathname": "/", "_pages_location.search": ""})
    assert page.status_code == 200 and "fleet-grid" in page.get_data(as_text=True)
    rows = call_callback(client, app, "fleet-grid.getRowsResponse",
                         {"fleet-grid.getRowsRequest": {"startRow": 0, "endRow": 100},
                          "fleet-filter.value": "all", "fleet-search.value": None})
    assert rows.status_code == 200
    return rows.get_data(as_text=True)


def _names(tenants):
    return {(letter, n): f"Company {letter.upper()} site {n}" for letter in "ab" for n in (1, 2)}


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_granted_user_sees_only_their_sites(app, tenants, role):
    text = _home(app, getattr(tenants.a, role))
    names = _names(tenants)
    assert names["a", 1] in text
    assert names["a", 2] not in text
    assert names["b", 1] not in text and names["b", 2] not in text


def test_admin_sees_every_site_of_their_company_only(app, tenants):
    text = _home(app, tenants.b.admin)
    names = _names(tenants)
    assert names["b", 1] in text and names["b", 2] in text
    assert names["a", 1] not in text


@pytest.mark.parametrize("who", ["support", "superadmin"])
def test_platform_staff_see_every_company(app, tenants, who):
    text = _home(app, getattr(tenants, who))
    assert all(name in text for name in _names(tenants).values())


def test_unknown_page_is_a_friendly_404(app, tenants):
    client = app.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": "/nowhere",
                              "_pages_location.search": ""})
    assert "kw-not-found" in response.get_data(as_text=True)


def test_navbar_shows_name_company_and_role_menu(app, tenants):
    client = app.server.test_client()
    login(client, tenants.a.admin.email, tenants.a.admin.password)
    admin_layout = json.dumps(client.get("/_dash-layout").get_json(), ensure_ascii=False)
    assert "Admin a" in admin_layout and "Company A" in admin_layout
    assert "Administration" in admin_layout and "/admin/users" in admin_layout
    client = app.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    viewer_layout = json.dumps(client.get("/_dash-layout").get_json(), ensure_ascii=False)
    assert "Viewer a" in viewer_layout
    assert "Administration" not in viewer_layout and "/admin/users" not in viewer_layout
