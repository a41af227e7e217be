"""Retention and offline detection, run through ``kilowatch worker --once``."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest

from kilowatch import redis_client
from kilowatch.telemetry import storage as telemetry
from tests.collector.helpers import heartbeat, register_fleet


def worker(kw_env, *args):
    return subprocess.run(["kilowatch", "worker", "--once", *args], env={**os.environ, **kw_env},
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["JOB-1", "JOB-2"])


def test_retention_drops_old_raw_and_minute_chunks_and_keeps_hourly(kw_env, conn, devices):
    device_id = devices["JOB-1"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    old, recent = now - dt.timedelta(days=45), now - dt.timedelta(hours=3)
    with conn.transaction():
        telemetry.copy_samples(conn, [(old, device_id, 1, 1.0), (recent, device_id, 1, 2.0)])
        for table, bucket in (("telemetry_1m", now - dt.timedelta(days=500)),
                              ("telemetry_1m", recent), ("telemetry_1h", now
                                                         - dt.timedelta(days=900))):
            conn.execute(f"INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, "
                         "last, count) VALUES (%s, %s, 1, 1, 1, 1, 1, 1)", (bucket, device_id))
    result = worker(kw_env, "--job", "retention")
    assert result.returncode == 0, result.stderr
    assert "unavailable" in result.stdout or "raw_chunks_compressed" in result.stdout
    raw = conn.execute("SELECT time FROM telemetry WHERE device_id = %s", (device_id,)).fetchall()
    assert [r["time"] for r in raw] == [recent]
    minute = conn.execute("SELECT bucket FROM telemetry_1m WHERE device_id = %s",
                          (device_id,)).fetchall()
    assert [r["bucket"] for r in minute] == [recent]
    assert conn.execute("SELECT count(*) AS n FROM telemetry_1h WHERE device_id = %s",
                        (device_id,)).fetchone()["n"] == 1


def test_silent_device_goes_offline_with_comm_lost(kw_env, conn, devices, settings):
    silent, talking = devices["JOB-1"], devices["JOB-2"]
    conn.execute("UPDATE devices SET online = true, last_seen = now() - interval '10 minutes' "
                 "WHERE id = %s", (silent,))
    conn.execute("UPDATE devices SET online = true, last_seen = now() WHERE id = %s", (talking,))
    heartbeat(conn)  # the platform ingests: the silence is the device's
    client = redis_client.get_redis(settings)
    key = redis_client.key("live", silent, settings=settings)
    client.hset(key, mapping={"_online": "1"})
    result = worker({**kw_env, "KILOWATCH_OFFLINE_AFTER": "300"}, "--job", "offline")
    assert result.returncode == 0, result.stderr
    assert "offline: ran" in result.stdout
    rows = {r["id"]: r["online"] for r in conn.execute(
        "SELECT id, online FROM devices WHERE id = ANY(%s)", ([silent, talking],)).fetchall()}
    assert rows == {silent: False, talking: True}
    alarm = conn.execute("SELECT * FROM alarms WHERE device_id = %s AND code = 'COMM_LOST' "
                         "AND cleared_at IS NULL", (silent,)).fetchone()
    assert alarm["severity"] == "major" and alarm["source"] == "platform"
    assert "No message" in alarm["message"]
    event = conn.execute("SELECT state, reason FROM device_events WHERE device_id = %s "
                         "ORDER BY id DESC LIMIT 1", (silent,)).fetchone()
    assert event == {"state": "offline", "reason": "silence"}
    assert client.hget(key, "_online") == "0"
    again = worker({**kw_env, "KILOWATCH_OFFLINE_AFTER": "300"}, "--job", "offline")
    assert "'offline': 0" in again.stdout
    assert conn.execute("SELECT raise_count FROM alarms WHERE id = %s",
                        (alarm["id"],)).fetchone()["raise_count"] == 1
