"""The shell's page protection: roles per page, and AccessDenied inside a layout."""

from __future__ import annotations

from auth.callbacks import ADMIN_ROLES, ALL_ROLES
from dashboards.components.shell import _guard_layout
from kilowatch.access import AccessDenied
from tests.dashboards.conftest import login


def _refusing_layout(**_query):
    raise AccessDenied("no such site")


def _as_viewer(app, tenants):
    client = app.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    return client


def test_layout_raising_access_denied_shows_not_allowed(app, tenants):
    with _as_viewer(app, tenants) as client:
        client.get("/_dash-layout")
        assert _guard_layout(_refusing_layout, ALL_ROLES)().id == "kw-not-allowed"


def test_layout_for_other_roles_shows_not_allowed(app, tenants):
    with _as_viewer(app, tenants) as client:
        client.get("/_dash-layout")
        assert _guard_layout(lambda **_: "secret", ADMIN_ROLES)().id == "kw-not-allowed"
        assert _guard_layout(lambda **_: "welcome", ALL_ROLES)() == "welcome"


def test_page_without_roles_is_shown_to_nobody(app, tenants):
    with _as_viewer(app, tenants) as client:
        client.get("/_dash-layout")
        assert _guard_layout(lambda **_: "secret", ())().id == "kw-not-allowed"
