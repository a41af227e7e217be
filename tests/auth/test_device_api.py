"""The device API over HTTP: activation with a one-time code, status reports, refusals.

Refused attempts change nothing but the audit log, whatever the reason, and the
answer does not tell an unknown serial from a wrong code.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.devices import lifecycle

ROOT = system_scope("test")
ACTIVATE = "/api/device/activate"
STATUS = "/api/device/status"
UNAUTHORIZED = {"error": "unknown serial or invalid activation code"}


@pytest.fixture
def device(conn):
    """A registered device (not activated) and its activation code."""
    company = fleet.create_company(conn, ROOT, f"Apico {secrets.token_hex(3)}")
    site = fleet.create_site(conn, ROOT, company_id=company, name="Api site",
                             timezone="Europe/Paris")
    serial = f"API-{secrets.token_hex(4)}"
    device_id, code = lifecycle.register(conn, ROOT, site_id=site, serial=serial,
                                         model="HES-XL", rated_power_kw=100, capacity_kwh=200)
    return {"id": device_id, "serial": serial, "code": code}


def _activate(client, body, *, address: str = "10.0.0.1", **kwargs):
    kwargs.setdefault("json", body)
    return client.post(ACTIVATE, environ_base={"REMOTE_ADDR": address}, **kwargs)


def _snapshot(conn, device_id: int) -> dict:
    row = conn.execute("SELECT activation_code_hash, activation_code_expires_at, activated_at, "
                       "revoked_at, credential_nonce, firmware, identity_changed_at "
                       "FROM devices WHERE id = %s", (device_id,)).fetchone()
    return dict(row)


def _audit(conn, action: str) -> int:
    return conn.execute("SELECT count(*) AS n FROM audit_log WHERE action = %s",
                        (action,)).fetchone()["n"]


def test_activation_returns_credentials_once(client, conn, settings, device):
    answer = _activate(client, {"serial": device["serial"], "activation_code": device["code"],
                                "firmware": "3.1.0"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["mqtt"]["username"] == device["serial"]
    assert len(base64.urlsafe_b64decode(body["mqtt"]["password"] + "=")) >= 32
    assert body["mqtt"]["url"] == settings.mqtt_device_url
    assert body["mqtt"]["url"].startswith("mqtts://")
    assert body["mqtt"]["prefix"] == settings.mqtt_prefix
    assert body["ca_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert answer.headers["Cache-Control"] == "no-store"
    row = _snapshot(conn, device["id"])
    assert row["activated_at"] and row["credential_nonce"] and row["firmware"] == "3.1.0"
    assert row["activation_code_hash"] is None  # single use
    assert body["mqtt"]["password"] not in json.dumps(row, default=str)  # never stored
    again = _activate(client, {"serial": device["serial"], "activation_code": device["code"]})
    assert (again.status_code, again.get_json()) == (401, UNAUTHORIZED)


@pytest.mark.parametrize("case", ["wrong code", "unknown serial", "expired code"])
def test_refusals_look_alike_and_change_nothing(client, conn, device, case):
    if case == "expired code":
        conn.execute("UPDATE devices SET activation_code_expires_at = now() - interval '1 s' "
                     "WHERE id = %s", (device["id"],))
    before = _snapshot(conn, device["id"])
    refused = _audit(conn, "device.activation_refused")
    body = {"serial": "NOPE-1" if case == "unknown serial" else device["serial"],
            "activation_code": "WRONG-CODE1-XXXXX" if case == "wrong code" else device["code"]}
    answer = _activate(client, body)
    assert (answer.status_code, answer.get_json()) == (401, UNAUTHORIZED)
    assert _snapshot(conn, device["id"]) == before
    assert _audit(conn, "device.activation_refused") == refused + 1
    reason = conn.execute("SELECT after->>'reason' AS reason FROM audit_log WHERE action = "
                          "'device.activation_refused' ORDER BY id DESC LIMIT 1").fetchone()
    assert reason["reason"] == case


@pytest.mark.parametrize("request_kwargs,message", [
    ({"data": b"{not json", "content_type": "application/json"}, "not valid JSON"),
    ({"data": b"serial=A", "content_type": "application/x-www-form-urlencoded"},
     "must be JSON"),
    ({"data": json.dumps({"serial": "A", "activation_code": "x" * 1_000_000}),
      "content_type": "application/json"}, "over 16 KB"),
    ({"json": ["a", "list"]}, "JSON object"),
    ({"json": {"serial": 7, "activation_code": "x"}}, "'serial' must be a string"),
    ({"json": {"serial": "bad serial!", "activation_code": "x"}}, "1-64 letters"),
    ({"json": {"serial": "A"}}, "'activation_code' must be a string"),
    ({"json": {"serial": "A", "activation_code": "x", "firmware": ""}}, "'firmware'"),
])
def test_malformed_requests_get_400_with_one_line(client, conn, device, request_kwargs, message):
    before = _snapshot(conn, device["id"])
    answer = client.post(ACTIVATE, environ_base={"REMOTE_ADDR": "10.0.0.2"}, **request_kwargs)
    assert answer.status_code == 400
    error = answer.get_json()["error"]
    assert message in error and "\n" not in error
    assert _snapshot(conn, device["id"]) == before


def test_twenty_wrong_codes_in_a_row_are_throttled_then_the_right_one_too(client, conn, device):
    before = _snapshot(conn, device["id"])
    attempts = _audit(conn, "device.activation_refused") + _audit(conn,
                                                                  "device.activation_throttled")
    statuses = [_activate(client, {"serial": device["serial"],
                                   "activation_code": f"WRONG-{n:05d}"},
                          address=f"10.1.0.{n}").status_code for n in range(20)]
    assert statuses[:10] == [401] * 10 and set(statuses[10:]) == {429}
    # Throttled per serial: even the right code waits now, from any address.
    late = _activate(client, {"serial": device["serial"], "activation_code": device["code"]},
                     address="10.2.0.1")
    assert late.status_code == 429 and "too many" in late.get_json()["error"]
    assert _snapshot(conn, device["id"]) == before
    assert _audit(conn, "device.activation_refused") + _audit(
        conn, "device.activation_throttled") == attempts + 21


def test_one_address_trying_many_serials_is_throttled(client, conn):
    statuses = [_activate(client, {"serial": f"SCAN-{n}", "activation_code": "GUESS"},
                          address="10.3.0.1").status_code for n in range(35)]
    assert statuses[:30] == [401] * 30 and set(statuses[30:]) == {429}


def test_a_device_reports_its_status_over_https(client, conn, settings, device):
    activation = lifecycle.activate(conn, settings, serial=device["serial"], code=device["code"])
    auth = base64.b64encode(f"{device['serial']}:{activation.password}".encode()).decode()
    answer = client.post(STATUS, json={"state": "online", "firmware": "3.2.0"},
                         headers={"Authorization": f"Basic {auth}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    row = conn.execute("SELECT online, firmware, last_seen FROM devices WHERE id = %s",
                       (device["id"],)).fetchone()
    assert row["online"] and row["firmware"] == "3.2.0"
    assert row["last_seen"] > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


@pytest.mark.parametrize("credentials", ["none", "wrong password", "other serial"])
def test_status_reports_need_the_devices_own_credentials(client, conn, settings, device,
                                                         credentials):
    lifecycle.activate(conn, settings, serial=device["serial"], code=device["code"])
    headers = {} if credentials == "none" else {"Authorization": "Basic " + base64.b64encode(
        f"{device['serial'] if credentials == 'wrong password' else 'API-other'}:"
        f"{'x' * 43}".encode()).decode()}
    answer = client.post(STATUS, json={"state": "offline"}, headers=headers)
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers
    assert conn.execute("SELECT count(*) AS n FROM device_events WHERE device_id = %s",
                        (device["id"],)).fetchone()["n"] == 0


def test_a_bad_status_body_is_refused(client, conn, settings, device):
    activation = lifecycle.activate(conn, settings, serial=device["serial"], code=device["code"])
    auth = base64.b64encode(f"{device['serial']}:{activation.password}".encode()).decode()
    answer = client.post(STATUS, json={"state": "sleeping"},
                         headers={"Authorization": f"Basic {auth}"})
    assert answer.status_code == 400 and "state" in answer.get_json()["error"]


def test_revocation_and_a_new_code(client, conn, settings, device):
    first = lifecycle.activate(conn, settings, serial=device["serial"], code=device["code"])
    assert lifecycle.revoke(conn, ROOT, device["id"])
    assert lifecycle.authenticate(conn, settings, device["serial"], first.password) is None
    assert lifecycle.state(_snapshot(conn, device["id"]) | {"revoked_at": True}) == "revoked"
    code = lifecycle.issue_code(conn, ROOT, device["id"])
    answer = _activate(client, {"serial": device["serial"], "activation_code": code},
                       address="10.4.0.1")
    assert answer.status_code == 200
    assert answer.get_json()["mqtt"]["password"] != first.password
    actions = [r["action"] for r in conn.execute(
        "SELECT action FROM audit_log WHERE target = %s ORDER BY id",
        (f"device:{device['id']}",))]
    assert actions == ["device.register", "device.activation_code", "device.activate",
                       "device.revoke", "device.activation_code", "device.activate"]
