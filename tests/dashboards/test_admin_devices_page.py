"""Administration → Devices driven through callback requests, as a browser would post them."""

from __future__ import annotations

import json

import pytest

from kilowatch.access import system_scope
from kilowatch.devices import credentials, lifecycle
from tests.dashboards import forging
from tests.dashboards.conftest import call_callback
from tests.dashboards.schedule_helpers import signed_in

ROOT = system_scope("test")
CODE_BUTTON = "admin-devices-new-code"
REVOKE_BUTTON = "admin-devices-revoke"


def _register(client, app, site_id, serial, **values):
    data = {"admin-devices-register.n_clicks": 1, "admin-devices-site-id.value": str(site_id),
            "admin-devices-serial.value": serial, "admin-devices-model.value": "HES-XL",
            "admin-devices-rated-power-kw.value": 100, "admin-devices-capacity-kwh.value": 215,
            "admin-devices-changed.data": 0}
    data.update({f"admin-devices-{name}.value": value for name, value in values.items()})
    return call_callback(client, app, "admin-devices-message.children", data,
                         triggered="admin-devices-register.n_clicks")


def _confirm(client, app, device_id, action):
    return call_callback(client, app, "admin-devices-message.children", {
        "admin-devices-confirm.n_clicks": 1, "admin-devices-device.data": device_id,
        "admin-devices-action.data": action, "admin-devices-changed.data": 2},
        triggered="admin-devices-confirm.n_clicks")


def _ask(client, app, button, device_id):
    """Click one row's button: the pattern-matching request the browser sends."""
    key = next(k for k in app.callback_map if "admin-devices-confirm-modal.is_open" in k
               and "admin-devices-action.data" in k)
    outputs = [{"id": part.rsplit(".", 1)[0], "property": part.rsplit(".", 1)[1]}
               for part in key.strip(".").split("...")]
    clicked = {"id": {"index": device_id, "type": button}, "property": "n_clicks", "value": 1}
    other = CODE_BUTTON if button == REVOKE_BUTTON else REVOKE_BUTTON
    inputs = [[clicked] if name == button else [{"id": {"index": device_id, "type": other},
                                                 "property": "n_clicks", "value": None}]
              for name in (CODE_BUTTON, REVOKE_BUTTON)]
    inputs.append({"id": "admin-devices-cancel", "property": "n_clicks", "value": None})
    changed = [json.dumps({"index": device_id, "type": button}, separators=(",", ":"),
                          sort_keys=True) + ".n_clicks"]
    return client.post("/_dash-update-component", json={
        "output": key, "outputs": outputs, "inputs": inputs, "state": [],
        "changedPropIds": changed})


def _answer(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def _code_of(answer: dict) -> str:
    alert = answer["admin-devices-message"]["children"]
    return next(child["props"]["children"] for child in alert["props"]["children"]
                if child["props"].get("id") == "admin-devices-code")


def _device(conn, serial):
    return conn.execute("SELECT * FROM devices WHERE serial = %s", (serial,)).fetchone()


def _list(client, app, company_id):
    return call_callback(client, app, "admin-devices-table.children",
                         {"admin-devices-company.value": str(company_id)})


def test_superadmin_registers_a_device_and_sees_its_code_once(app, conn, tenants, settings):
    client = signed_in(app, tenants.superadmin)
    answer = _answer(_register(client, app, tenants.b.sites[0], "PAGE-B1"))
    code = _code_of(answer)
    row = _device(conn, "PAGE-B1")
    assert (row["site_id"], row["model"], row["rated_power_kw"], row["capacity_kwh"]) == (
        tenants.b.sites[0], "HES-XL", 100, 215)
    assert bytes(row["activation_code_hash"]) == credentials.hash_code(code)
    assert code not in json.dumps(row, default=str)
    assert all(answer[f"admin-devices-{f}-error"]["children"] is None
               for f in ("serial", "site-id", "model", "rated-power-kw", "capacity-kwh"))
    assert answer["admin-devices-serial"]["value"] == ""  # ready for the next device
    listing = _list(client, app, tenants.b.id).get_data(as_text=True)
    assert "PAGE-B1" in listing and "registered" in listing and "code issued" in listing
    assert code not in listing
    audit = conn.execute("SELECT * FROM audit_log WHERE action = 'device.register' AND "
                         "target = %s", (f"device:{row['id']}",)).fetchone()
    assert audit["actor"] == tenants.superadmin.email and audit["company_id"] == tenants.b.id
    lifecycle.activate(conn, settings, serial="PAGE-B1", code=code)  # the code shown works


def test_company_admin_registers_on_own_site_only(app, conn, tenants):
    client = signed_in(app, tenants.a.admin)
    assert _code_of(_answer(_register(client, app, tenants.a.sites[1], "PAGE-A1")))
    assert _device(conn, "PAGE-A1")["site_id"] == tenants.a.sites[1]
    for serial, power in (("PAGE-INTRUDER", 50), ("bad serial", "not a number")):
        response = _register(client, app, tenants.b.sites[0], serial, **{"rated-power-kw": power})
        assert response.status_code == 204  # refused before any value is checked
        assert _device(conn, serial) is None


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"serial": "has space"}, "serial", "A serial is 1-64 letters"),
    ({"serial": "kilowatch-collector"}, "serial", "are reserved"),
    ({"serial": "PAGE-B1"}, "serial", "This serial cannot be used; contact support"),
    ({"site-id": ""}, "site-id", "Choose a site."),
    ({"model": "HES-M"}, "model", "Model must be one of HES-L"),
    ({"rated-power-kw": -3}, "rated-power-kw", "Rated power must be a positive finite"),
    ({"capacity-kwh": "lots"}, "capacity-kwh", "Capacity must be a number."),
])
def test_bad_input_gets_a_message_next_to_its_field(app, conn, tenants, values, field,
                                                    message):
    client = signed_in(app, tenants.a.admin)
    values = {"serial": "PAGE-BAD", **values}
    answer = _answer(_register(client, app, tenants.a.sites[0], **values))
    assert message in answer[f"admin-devices-{field}-error"]["children"]
    others = [k for k in answer if k.endswith("-error") and k != f"admin-devices-{field}-error"]
    assert others and all(answer[k]["children"] is None for k in others)
    assert "admin-devices-message" not in answer  # a code shown before stays on the screen
    assert "admin-devices-serial" not in answer  # what was typed stays, to be corrected
    assert _device(conn, "PAGE-BAD") is None


def test_the_list_shows_own_devices_and_refuses_another_company(app, tenants):
    client = signed_in(app, tenants.a.admin)
    own = _list(client, app, tenants.a.id)
    text = own.get_data(as_text=True)
    assert own.status_code == 200 and "PAGE-A1" in text and CODE_BUTTON in text
    assert "PAGE-B1" not in text
    assert _list(client, app, tenants.b.id).status_code == 204


def test_support_reads_devices_without_buttons_and_changes_nothing(app, conn, tenants):
    client = signed_in(app, tenants.support)
    text = _list(client, app, tenants.b.id).get_data(as_text=True)
    assert "PAGE-B1" in text and CODE_BUTTON not in text and REVOKE_BUTTON not in text
    device = _device(conn, "PAGE-B1")
    assert _register(client, app, tenants.b.sites[0], "PAGE-SUPPORT").status_code == 403
    assert _confirm(client, app, device["id"], "revoke").status_code == 403
    assert _ask(client, app, REVOKE_BUTTON, device["id"]).status_code == 403
    assert _device(conn, "PAGE-B1") == device
    page = call_callback(client, app, "_pages_content.children", {
        "_pages_location.pathname": "/admin/devices", "_pages_location.search": ""})
    page_text = page.get_data(as_text=True)
    assert "admin-devices-read-only" in page_text and "admin-devices-register" not in page_text


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_are_refused(app, tenants, role):
    client = signed_in(app, getattr(tenants.a, role))
    assert _list(client, app, tenants.a.id).status_code == 403
    assert _register(client, app, tenants.a.sites[0], "PAGE-NO").status_code == 403
    page = call_callback(client, app, "_pages_content.children", {
        "_pages_location.pathname": "/admin/devices", "_pages_location.search": ""})
    assert "kw-not-allowed" in page.get_data(as_text=True)


def test_revoke_asks_first_then_revokes_and_audits(app, conn, tenants, settings):
    client = signed_in(app, tenants.a.admin)
    code = _code_of(_answer(_register(client, app, tenants.a.sites[0], "PAGE-A2")))
    lifecycle.activate(conn, settings, serial="PAGE-A2", code=code)
    device = _device(conn, "PAGE-A2")
    asked = _answer(_ask(client, app, REVOKE_BUTTON, device["id"]))
    assert asked["admin-devices-confirm-modal"]["is_open"] is True
    assert asked["admin-devices-confirm-title"]["children"] == "Revoke PAGE-A2?"
    assert asked["admin-devices-device"]["data"] == device["id"]
    assert asked["admin-devices-action"]["data"] == "revoke"
    assert _device(conn, "PAGE-A2")["credential_nonce"] is not None  # asking changed nothing
    answer = _answer(_confirm(client, app, device["id"], "revoke"))
    assert "PAGE-A2 is revoked" in json.dumps(answer["admin-devices-message"])
    assert answer["admin-devices-confirm-modal"]["is_open"] is False
    row = _device(conn, "PAGE-A2")
    assert row["credential_nonce"] is None and row["revoked_at"] is not None
    assert "revoked" in _list(client, app, tenants.a.id).get_data(as_text=True)
    audit = conn.execute("SELECT * FROM audit_log WHERE action = 'device.revoke' AND "
                         "target = %s", (f"device:{device['id']}",)).fetchone()
    assert audit["actor"] == tenants.a.admin.email
    again = _answer(_confirm(client, app, device["id"], "revoke"))
    assert "had no credentials or code to revoke" in json.dumps(again)


def test_a_new_code_replaces_the_previous_one(app, conn, tenants, settings):
    client = signed_in(app, tenants.a.admin)
    first = _code_of(_answer(_register(client, app, tenants.a.sites[0], "PAGE-A3")))
    device = _device(conn, "PAGE-A3")
    asked = _answer(_ask(client, app, CODE_BUTTON, device["id"]))
    assert asked["admin-devices-action"]["data"] == "code"
    second = _code_of(_answer(_confirm(client, app, device["id"], "code")))
    assert second != first
    with pytest.raises(lifecycle.ActivationRefused):
        lifecycle.activate(conn, settings, serial="PAGE-A3", code=first)
    lifecycle.activate(conn, settings, serial="PAGE-A3", code=second)


def test_another_company_device_is_refused_at_every_step(app, conn, tenants):
    device = _device(conn, "PAGE-B1")
    client = signed_in(app, tenants.a.admin)
    for button in (CODE_BUTTON, REVOKE_BUTTON):
        assert _ask(client, app, button, device["id"]).status_code == 204
    for action in ("code", "revoke"):
        assert _confirm(client, app, device["id"], action).status_code == 204
    assert _device(conn, "PAGE-B1") == device


def test_garbage_in_the_confirm_step_gets_a_message(app, tenants):
    client = signed_in(app, tenants.a.admin)
    answer = _answer(_confirm(client, app, "1; DROP TABLE devices", "revoke"))
    assert "Choose a device's button first." in json.dumps(answer["admin-devices-message"])


def _real(tenants):
    values = {"admin-devices-company.value": str(tenants.a.id),
              "admin-devices-site-id.value": str(tenants.a.sites[0]),
              "admin-devices-serial.value": "PAGE-FORGE", "admin-devices-model.value": "HES-L",
              "admin-devices-action.data": "code"}

    def real(_key, dependency):
        return values.get(f"{dependency['id']}.{dependency['property']}", 1)
    return real


def test_forged_values_never_crash_the_devices_page(app, tenants):
    client = signed_in(app, tenants.superadmin)
    failures = forging.forge_each_input(client, app, "admin-devices", _real(tenants))
    failures += forging.forge_all_inputs(client, app, "admin-devices")
    assert not failures, "\n".join(failures)
