"""Every Dash callback of the real app goes through auth.callbacks.guarded_callback."""

from __future__ import annotations

import dash
import pytest
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
        ours = ("test-plain-out.children", "test-guarded-out.children")
        for callback_id in ours:
            dash._callback.GLOBAL_CALLBACK_MAP.pop(callback_id, None)
        dash._callback.GLOBAL_CALLBACK_LIST[:] = [
            spec for spec in dash._callback.GLOBAL_CALLBACK_LIST if spec["output"] not in ours]


def test_decorator_refuses_bad_roles_and_background_callbacks():
    with pytest.raises(ValueError, match="roles"):
        guarded_callback(Output("x", "children"), Input("y", "value"), roles=("boss",))
    with pytest.raises(ValueError, match="roles"):
        guarded_callback(Output("x", "children"), Input("y", "value"), roles=())
    with pytest.raises(TypeError, match="background"):
        guarded_callback(Output("x", "children"), Input("y", "value"), background=True)


@pytest.mark.parametrize("body", [
    {},
    {"output": "no-such-thing.children", "outputs": {}, "inputs": [], "state": []},
    {"output": "..admin-users-table.children...admin-users-selected.options..", "outputs": [],
     "inputs": [], "state": []},
    [1, 2, 3],
])
def test_malformed_callback_requests_get_400_not_a_crash(app, tenants, body):
    client = app.server.test_client()
    login(client, tenants.a.admin.email, tenants.a.admin.password)
    response = client.post("/_dash-update-component", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"] in (
        "a callback request is a JSON object with an output", "unknown callback",
        "the callback expects 2 inputs")


def test_non_json_callback_request_gets_400(app, tenants):
    client = app.server.test_client()
    login(client, tenants.a.admin.email, tenants.a.admin.password)
    response = client.post("/_dash-update-component", data="output=x",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
