"""The broker itself refuses what a device or a stranger may not do, and stores nothing of it.

Every refusal is read from the broker's own answer (CONNACK, SUBACK or PUBACK
reason code, or the connection's end) and checked in the database. Each device
is real: registered, activated, pushed to the broker by the platform's sync.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import time

import pytest

from kilowatch import db
from kilowatch.broker import config
from kilowatch.settings import DEV_MQTT_PASSWORD
from tests.collector.helpers import count_rows, running_collector, telemetry
from tests.conftest import MQTT_PORT, MQTT_TLS_PORT, wait_for
from tests.kilowatch.broker.devices import Device, activated_device, make_site

NOT_AUTHORIZED = "Not authorized"
TAG = secrets.token_hex(3).upper()
A, B = f"LOCK-A-{TAG}", f"LOCK-B-{TAG}"


@pytest.fixture(scope="module")
def fleet(kw_env, settings):
    with db.connect(settings.database_url, autocommit=True) as conn:
        site = make_site(conn)
        passwords = {serial: activated_device(conn, settings, site, serial) for serial in (A, B)}
        ids = {r["serial"]: r["id"] for r in conn.execute("SELECT id, serial FROM devices")}
    with running_collector(kw_env) as collector:
        yield {"passwords": passwords, "ids": ids, "collector": collector,
               "prefix": settings.mqtt_prefix}


@pytest.fixture
def device_a(fleet):
    device = Device(A, fleet["passwords"][A]).connect()
    assert device.accepted, device.connack
    yield device
    device.close()


def _topic(fleet, serial: str, kind: str) -> str:
    return f"{fleet['prefix']}/{serial}/{kind}"


def test_a_device_stores_its_own_telemetry_over_tls(conn, fleet, device_a):
    now = time.time()
    payload = telemetry(1, _utc(now), points=3)
    assert device_a.publish(_topic(fleet, A, "telemetry"), payload) in ("Success",
                                                                        "No matching subscribers")
    wait_for(lambda: count_rows(conn, [fleet["ids"][A]]) >= 4, what="A's rows stored")


@pytest.mark.parametrize("port,tls", [(MQTT_PORT, False), (MQTT_TLS_PORT, True)])
def test_anonymous_clients_are_refused_on_every_listener(fleet, port, tls):
    stranger = Device(None, None, tls=tls, port=port).connect()
    assert stranger.connack == [NOT_AUTHORIZED]
    stranger.close()


def test_plaintext_to_the_device_listener_gets_no_mqtt_answer(fleet):
    plain = Device(A, fleet["passwords"][A], tls=False, port=MQTT_TLS_PORT).connect(timeout_s=5)
    assert plain.connack == [] and plain.disconnects
    plain.close()


def test_a_wrong_password_is_refused(fleet):
    guess = Device(A, "x" * 43).connect()
    assert guess.connack == [NOT_AUTHORIZED]
    guess.close()


@pytest.mark.parametrize("kind", ["telemetry", "alarms", "status", "schedule/ack", "plan/ack"])
def test_a_device_cannot_publish_as_another(conn, fleet, device_a, kind):
    before = _rows_of_b(conn, fleet)
    body = {"telemetry": telemetry(7, _utc(time.time())),
            "alarms": json.dumps({"code": "FAKE", "severity": "critical", "state": "raised",
                                  "message": "forged"}).encode(),
            "status": json.dumps({"state": "offline"}).encode(),
            "schedule/ack": json.dumps({"revision": 1, "status": "applied"}).encode(),
            "plan/ack": json.dumps({"revision": 1, "status": "applied"}).encode()}[kind]
    assert device_a.publish(_topic(fleet, B, kind), body) == NOT_AUTHORIZED
    time.sleep(1.0)  # the collector would have stored it by now
    assert _rows_of_b(conn, fleet) == before


def _rows_of_b(conn, fleet) -> tuple:
    device = fleet["ids"][B]
    return (count_rows(conn, [device]),
            conn.execute("SELECT count(*) AS n FROM alarms WHERE device_id = %s",
                         (device,)).fetchone()["n"],
            conn.execute("SELECT count(*) AS n FROM device_events WHERE device_id = %s",
                         (device,)).fetchone()["n"],
            conn.execute("SELECT count(*) AS n FROM schedule_deliveries WHERE device_id = %s",
                         (device,)).fetchone()["n"],
            conn.execute("SELECT count(*) AS n FROM dead_letters WHERE device_id = %s",
                         (device,)).fetchone()["n"])


@pytest.mark.parametrize("which", ["prefix/#", "#", "B's schedule", "B's plan", "$share"])
def test_a_device_cannot_subscribe_beyond_its_own_commands(fleet, device_a, which):
    topic = {"prefix/#": f"{fleet['prefix']}/#", "#": "#",
             "B's schedule": _topic(fleet, B, "schedule"),
             "B's plan": _topic(fleet, B, "plan"),
             "$share": f"$share/kilowatch/{fleet['prefix']}/+/telemetry"}[which]
    assert device_a.subscribe(topic) == [NOT_AUTHORIZED]
    other = Device(B, fleet["passwords"][B]).connect()
    other.publish(_topic(fleet, B, "telemetry"), telemetry(1, _utc(time.time())))
    other.close()
    time.sleep(0.5)
    assert device_a.received == []


@pytest.mark.parametrize("kind", ["schedule", "plan"])
def test_a_device_receives_its_own_schedule_and_plan(fleet, device_a, kind):
    assert device_a.subscribe(_topic(fleet, A, kind)) == ["Granted QoS 1"]


@pytest.mark.parametrize("client_id", ["B", "collector"])
def test_a_device_cannot_take_another_client_id(fleet, client_id):
    taken = {"B": B, "collector": fleet["collector"].client_id}[client_id]
    thief = Device(A, fleet["passwords"][A], client_id=taken).connect()
    assert thief.connack == [NOT_AUTHORIZED]
    thief.close()
    assert fleet["collector"].metric("kilowatch_collector_broker_connected") == 1


def test_a_packet_over_the_limit_ends_the_connection_and_stores_nothing(conn, fleet, device_a):
    before = count_rows(conn, [fleet["ids"][A]])
    huge = telemetry(99, _utc(time.time()), samples=1, points=1,
                     extra={"test.pad": 0}) + b" " * (config.MAX_PACKET_BYTES + 1)
    answer = device_a.publish(_topic(fleet, A, "telemetry"), huge, timeout_s=5)
    assert answer.startswith("disconnected") or device_a.disconnects, answer
    time.sleep(1.0)
    assert count_rows(conn, [fleet["ids"][A]]) == before


def test_revoking_a_connected_device_cuts_it_off_within_5_s(kw_env, conn, fleet, settings):
    serial = f"LOCK-R-{TAG}"
    password = activated_device(conn, settings, make_site(conn), serial)
    device = Device(serial, password).connect()
    assert device.accepted
    started = time.monotonic()
    result = subprocess.run(["kilowatch", "device", "revoke", "--serial", serial],
                            env={**_environ(), **kw_env}, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "cut off" in result.stdout
    wait_for(lambda: device.disconnects, what="the revoked device's disconnection",
             timeout_s=5)
    assert device.disconnects[0][0] - started < 5
    device.close()
    again = Device(serial, password).connect()
    assert again.connack == [NOT_AUTHORIZED]
    again.close()
    row = conn.execute("SELECT revoked_at, credential_nonce FROM devices WHERE serial = %s",
                       (serial,)).fetchone()
    assert row["revoked_at"] and row["credential_nonce"] is None


def test_the_admin_account_is_not_for_devices(fleet):
    # The broker admin logs in on the service listener; on the device listener too, but a
    # device's credentials never reach the control topic.
    admin = Device("kilowatch-admin", DEV_MQTT_PASSWORD, tls=False).connect()
    assert admin.accepted
    admin.close()
    device = Device(A, fleet["passwords"][A]).connect()
    assert device.publish("$CONTROL/dynamic-security/v1", b'{"commands": []}') == NOT_AUTHORIZED
    device.close()


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(epoch), dt.UTC)


def _environ() -> dict:
    return dict(os.environ)

