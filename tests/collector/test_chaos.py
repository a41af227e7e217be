"""Chaos under load: each server and service dies in turn while devices keep publishing.

Private PostgreSQL, Mosquitto and Redis (never the shared stack), a real
``kilowatch collector`` and ``kilowatch worker``. While four devices stream
telemetry and raise and clear alarms, the collector and the worker are killed
(SIGKILL), Redis is killed, the broker restarted and PostgreSQL crashed, one
after the other. Then: every message stored exactly once, every alarm opened
and cleared once with one notification each, and every service working again
without a manual restart.

The broker is stopped with SIGTERM, not SIGKILL: Mosquitto saves its queues every
30 s, so a killed broker loses what it queued since (see docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time

import redis

from kilowatch import db
from tests.collector.helpers import CollectorProcess, Publisher, iso, register_fleet, telemetry
from tests.collector.servers import free_port
from tests.collector.test_recovery import POINTS, SAMPLES, Stream, assert_exactly_once
from tests.conftest import wait_for

COUNT = 400
ALARM_EVERY = 40  # a device raises an alarm every 40 messages and clears it 20 later


class AlarmingStream(Stream):
    """Telemetry seq 1..count per device, with an alarm raised and later cleared now and then."""

    def run(self) -> None:
        try:
            for seq in range(1, self.count + 1):
                moment = self.start_time + dt.timedelta(seconds=seq * SAMPLES)
                for serial in self.serials:
                    self.publisher.publish(f"{self.prefix}/{serial}/telemetry",
                                           telemetry(seq, moment, samples=SAMPLES, points=POINTS))
                    alarm = _alarm(seq, moment)
                    if alarm:
                        self.publisher.publish(f"{self.prefix}/{serial}/alarms", alarm)
                self.sent = seq
                time.sleep(self.pace_s)
        except BaseException as error:  # reported by finish()
            self.error = error


def _alarm(seq: int, moment: dt.datetime) -> bytes | None:
    code = f"CHAOS_{seq // ALARM_EVERY}"
    if seq % ALARM_EVERY == 0:
        return json.dumps({"ts": iso(moment), "code": code, "severity": "major",
                           "state": "raised"}).encode()
    if seq % ALARM_EVERY == ALARM_EVERY // 2 and seq > ALARM_EVERY:
        return json.dumps({"ts": iso(moment), "code": code, "state": "cleared"}).encode()
    return None


def _worker(env: dict, log_path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(["kilowatch", "worker", "--job", "offline", "--job", "rollups"],
                                env={**os.environ, **env}, stdout=log, stderr=log)


def test_every_service_dies_in_turn_and_nothing_is_lost_or_doubled(
        kw_env, own_broker, own_database, own_redis, tmp_path):
    devices = register_fleet(own_database.url, [f"CHAOS-{n}" for n in range(4)], "Chaosco")
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    env = {**kw_env, **own_broker.logins(prefix), "KILOWATCH_DATABASE_URL": own_database.url,
           "KILOWATCH_REDIS_URL": own_redis.url, "KILOWATCH_METRICS_PORT": str(free_port())}
    publisher = Publisher(env["KILOWATCH_SIMULATOR_MQTT_URL"])
    publisher.client.reconnect_delay_set(1, 2)
    collector = CollectorProcess(env, log_path=tmp_path / "collector.log").start()
    worker = _worker(env, tmp_path / "worker.log")
    stream = AlarmingStream(publisher, prefix, list(devices), count=COUNT, pace_s=0.03)
    try:
        stream.start()
        stream.wait_until(70)
        collector.kill()
        time.sleep(1)
        collector.start()
        stream.wait_until(140)
        worker.kill()
        worker.wait(10)
        worker = _worker(env, tmp_path / "worker.log")
        stream.wait_until(210)
        own_redis.kill()
        time.sleep(1)
        own_redis.start()
        stream.wait_until(280)
        own_broker.restart()
        stream.wait_until(330)
        own_database.stop("immediate")
        time.sleep(2)
        own_database.start()
        restarted_at = dt.datetime.now(dt.UTC)
        stream.finish()
        assert_exactly_once(own_database.url, devices, COUNT)
        with db.connect(own_database.url, autocommit=True) as conn:
            _assert_each_alarm_once(conn, list(devices.values()))
            wait_for(lambda: conn.execute(
                "SELECT min(started_at) AS at FROM job_runs WHERE job IN ('offline', 'rollups')"
            ).fetchone()["at"] > restarted_at, what="the worker's jobs run again", timeout_s=60)
            assert conn.execute("SELECT count(*) AS n FROM alarms WHERE code = 'COMM_LOST'"
                                ).fetchone()["n"] == 0
        assert collector.metric("kilowatch_collector_broker_connected") == 1
        assert collector.process.poll() is None and worker.poll() is None
        live = redis.Redis.from_url(own_redis.url, decode_responses=True)
        wait_for(lambda: all(live.hget(f"{kw_env['KILOWATCH_REDIS_PREFIX']}:live:{d}", "_seq")
                             == str(COUNT) for d in devices.values()),
                 what="live values written to the restarted Redis")
    finally:
        publisher.close()
        collector.stop()
        worker.terminate()
        worker.wait(30)
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def _assert_each_alarm_once(conn, device_ids: list[int]) -> None:
    raised_codes = COUNT // ALARM_EVERY
    rows = conn.execute(
        "SELECT a.device_id, a.code, a.raise_count, a.cleared_at, "
        "array_agg(e.kind ORDER BY e.id) FILTER (WHERE n.event_id IS NOT NULL) AS told "
        "FROM alarms a JOIN alarm_events e ON e.alarm_id = a.id "
        "LEFT JOIN notification_inbox n ON n.event_id = e.id "
        "WHERE a.device_id = ANY(%s) AND a.code LIKE 'CHAOS_%%' "
        "GROUP BY a.id ORDER BY a.device_id, a.code", (device_ids,)).fetchall()
    assert len(rows) == raised_codes * len(device_ids), rows
    for row in rows:
        assert row["raise_count"] == 1, row
        last = row["code"] == f"CHAOS_{raised_codes}"
        assert row["told"] == (["raised"] if last else ["raised", "cleared"]), row
