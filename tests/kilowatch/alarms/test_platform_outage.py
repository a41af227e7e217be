"""A platform outage (no collector ingesting) is one staff incident, not COMM_LOST everywhere.

A real ``kilowatch collector`` ingests two companies' devices, then dies (SIGKILL)
for longer than the offline delay; the worker's offline job, run meanwhile,
opens one platform incident and tells the staff, and no tenant gets an alarm or
an e-mail. With the collector back, the incident closes and the devices are
still online.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import time

import pytest

from kilowatch.access import AccessDenied, AccessScope
from kilowatch.alarms import platform
from kilowatch.jobs import offline
from kilowatch.settings import load_settings
from tests.collector.helpers import (
    CollectorProcess,
    Publisher,
    register_fleet,
    running_collector,
    telemetry,
    wait_for,
)
from tests.collector.servers import free_port

OFFLINE_AFTER_S = 4
STAFF = "noc@kilowatch.example.com"


def test_collector_outage_is_one_staff_incident_and_no_comm_lost(kw_env, conn, tmp_path):
    env = {**kw_env, "KILOWATCH_OFFLINE_AFTER": str(OFFLINE_AFTER_S),
           "KILOWATCH_STAFF_EMAIL": STAFF}
    settings = load_settings(env)
    devices = {**register_fleet(settings.database_url, ["OUT-A1"], "Outage A"),
               **register_fleet(settings.database_url, ["OUT-B1"], "Outage B")}
    publisher = Publisher()
    collector = CollectorProcess(env, log_path=tmp_path / "collector.log").start()

    def talk() -> None:
        """Every device sends a message; wait until the collector has stored them."""
        sent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=0.5)
        for serial in devices:
            publisher.publish(f"{settings.mqtt_prefix}/{serial}/telemetry",
                              telemetry(int(time.time()), dt.datetime.now(dt.UTC)))
        wait_for(lambda: conn.execute(
            "SELECT bool_and(last_seen >= %s) AS heard FROM devices WHERE id = ANY(%s)",
            (sent, list(devices.values()))).fetchone()["heard"], what="messages stored")

    def all_online() -> bool:
        return conn.execute("SELECT bool_and(online) AS up FROM devices WHERE id = ANY(%s)",
                            (list(devices.values()),)).fetchone()["up"]

    try:
        talk()
        wait_for(all_online, what="devices online")
        assert offline.run(conn, settings) == {"offline": 0}
        collector.kill()
        time.sleep(OFFLINE_AFTER_S + 1.5)
        for _ in range(3):  # the job's turns during the outage
            held = offline.run(conn, settings)
            assert held["offline"] == 0 and "heartbeat" in held["held"]
        [incident] = platform.open_incidents(conn)
        assert incident["kind"] == "ingest_stalled"
        collector = CollectorProcess(env, client_id=collector.client_id,
                                     log_path=tmp_path / "collector.log").start()
        talk()
        wait_for(lambda: "resumed" in offline.run(conn, settings).get("held", ""),
                 what="incident closed", timeout_s=30)
        assert platform.open_incidents(conn) == []
        time.sleep(OFFLINE_AFTER_S + 0.5)
        talk()
        assert offline.run(conn, settings) == {"offline": 0}  # judged again: all heard
        assert all_online()
    finally:
        collector.stop()
        publisher.close()
    alarms = conn.execute("SELECT count(*) AS n FROM alarms WHERE device_id = ANY(%s)",
                          (list(devices.values()),)).fetchone()["n"]
    assert alarms == 0
    mails = conn.execute("SELECT recipient, subject FROM email_outbox ORDER BY id").fetchall()
    assert [m["recipient"] for m in mails] == [STAFF, STAFF]
    assert "nothing ingested" in mails[0]["subject"] and "over" in mails[1]["subject"]
    listed = subprocess.run(["kilowatch", "alarm", "incidents"], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "ingest_stalled: No collector has ingested" in listed.stdout
    assert len(listed.stdout.splitlines()) == 1


def test_broker_outage_is_a_platform_incident_too(kw_env, conn, own_broker, tmp_path):
    env = {**kw_env, **own_broker.logins(kw_env["KILOWATCH_MQTT_PREFIX"]),
           "KILOWATCH_OFFLINE_AFTER": str(OFFLINE_AFTER_S), "KILOWATCH_METRICS_PORT":
           str(free_port())}
    settings = load_settings(env)
    devices = register_fleet(settings.database_url, ["OUT-D1", "OUT-D2"], "Outage D")
    publisher = Publisher(env["KILOWATCH_SIMULATOR_MQTT_URL"])
    publisher.client.reconnect_delay_set(1, 2)
    try:
        with running_collector(env, log_path=tmp_path / "collector.log") as collector:
            for serial in devices:
                publisher.publish(f"{settings.mqtt_prefix}/{serial}/telemetry",
                                  telemetry(1, dt.datetime.now(dt.UTC)))
            wait_for(lambda: conn.execute(
                "SELECT bool_and(online) AS up FROM devices WHERE id = ANY(%s)",
                (list(devices.values()),)).fetchone()["up"], what="devices online")
            own_broker.stop()
            time.sleep(OFFLINE_AFTER_S + 1.5)
            held = offline.run(conn, settings)
            assert held["offline"] == 0 and "heartbeat" in held["held"]
            assert len(platform.open_incidents(conn)) == 1
            own_broker.start()
            wait_for(lambda: collector.metric("kilowatch_collector_broker_connected") == 1,
                     what="collector back on the broker", timeout_s=60)
            wait_for(lambda: "resumed" in offline.run(conn, settings).get("held", ""),
                     what="incident closed", timeout_s=30)
    finally:
        publisher.close()
    assert conn.execute("SELECT count(*) AS n FROM alarms WHERE device_id = ANY(%s)",
                        (list(devices.values()),)).fetchone()["n"] == 0


def test_only_platform_staff_list_platform_incidents(conn):
    with pytest.raises(AccessDenied):
        platform.list_incidents(conn, AccessScope(role="admin", company_id=1))


def test_a_silent_device_while_the_platform_ingests_is_comm_lost(kw_env, conn):
    settings = dataclasses.replace(load_settings(kw_env), offline_after=OFFLINE_AFTER_S)
    device = register_fleet(settings.database_url, ["OUT-C1"], "Outage C")["OUT-C1"]
    conn.execute("UPDATE devices SET online = true, last_seen = now() - interval '1 minute' "
                 "WHERE id = %s", (device,))
    conn.execute("DELETE FROM platform_incidents")  # no outage just ended: no grace delay
    conn.execute("DELETE FROM collector_heartbeats")
    conn.execute("INSERT INTO collector_heartbeats VALUES ('kwtest-alive', now())")
    assert offline.run(conn, settings)["offline"] >= 1
    assert conn.execute("SELECT 1 FROM alarms WHERE device_id = %s AND code = 'COMM_LOST'",
                        (device,)).fetchone()
