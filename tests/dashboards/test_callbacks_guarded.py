"""Every Dash callback of the real app goes through auth.callbacks.guarded_callback."""

from __future__ import annotations

import dash
from dash import Input, Output

from auth.callbacks import MARK, guarded_callback, unguarded_callbacks
from tests.dashboards.conftest import login


def _serve_once(app, tenants) -> None:
    # Dash copies the page callbacks into app.callback_map at the first request.
    client = app.server.test_client()
    login(client, tenants.a.admin.email, tenants.a.admin.password)
    assert client.get("/_dash-dependencies").status_code == 200


def test_every_callback_of_the_app_is_guarded(app, tenants):
    _serve_once(app, tenants)
    guarded = [key for key, entry in app.callback_map.items()
               if getattr(entry.get("callback"), MARK, None)]
    assert len(guarded) >= 5, "too few guarded callbacks found: the walk would prove nothing"
    assert unguarded_callbacks(app) == []


def test_every_page_declares_its_roles(app):
    undeclared = [page["module"] for page in dash.page_registry.values() if not page.get("roles")]
    assert undeclared == []


def test_a_plain_dash_callback_is_reported(app, tenants):
    _serve_once(app, tenants)

    @dash.callback(Output("test-plain-out", "children"), Input("test-plain-in", "value"))
    def plain(value):
        return value

    @guarded_callback(Output("test-guarded-out", "children"), Input("test-guarded-in", "value"))
    def guarded(value):
        return value

    try:
        missing = unguarded_callbacks(app)
        assert "test-plain-out.children" in missing
        assert "test-guarded-out.children" not in missing
    finally:
        dash._callback.GLOBAL_CALLBACK_MAP.pop("test-plain-out.children", None)
        dash._callback.GLOBAL_CALLBACK_MAP.pop("test-guarded-out.children", None)
