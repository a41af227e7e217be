"""Nothing lost, nothing doubled: collector crash, broker restart, database restart,
and two collectors sharing one subscription.

Each device publishes seq 1..N; every message carries its seq as the point
``test.seq``, so what was stored is reconciled message by message.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from tests.collector.helpers import (
    CollectorProcess,
    Publisher,
    register_fleet,
    running_collector,
    telemetry,
)
from tests.collector.servers import free_port
from tests.conftest import wait_for

SAMPLES, POINTS = 2, 20
ROWS_PER_MESSAGE = SAMPLES * (POINTS + 1)


class Stream(threading.Thread):
    """Publish seq 1..count for every serial, paced, retrying until the broker has each."""

    def __init__(self, publisher: Publisher, prefix: str, serials: list[str], count: int,
                 pace_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.publisher, self.prefix, self.serials = publisher, prefix, serials
        self.count, self.pace_s = count, pace_s
        self.start_time = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for seq in range(1, self.count + 1):
                moment = self.start_time + dt.timedelta(seconds=seq * SAMPLES)
                for serial in self.serials:
                    self.publisher.publish(f"{self.prefix}/{serial}/telemetry",
                                           telemetry(seq, moment, samples=SAMPLES, points=POINTS))
                self.sent = seq
                time.sleep(self.pace_s)
        except BaseException as error:  # reported by finish()
            self.error = error

    def wait_until(self, seq: int) -> None:
        """Block until ``seq`` has been published for every device."""
        wait_for(lambda: self.sent >= seq or self.error, what=f"seq {seq} published")

    def finish(self) -> None:
        """Wait for the last message and re-raise a publishing failure."""
        self.join(300)
        assert self.error is None, self.error
        assert self.sent == self.count


def assert_exactly_once(database_url: str, devices: dict, count: int) -> None:
    """Every device has seq 1..count stored, each message's rows exactly once."""
    from kilowatch import db

    with db.connect(database_url, autocommit=True) as conn:
        def complete():
            n = conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = ANY(%s)",
                             (list(devices.values()),)).fetchone()["n"]
            return n >= count * ROWS_PER_MESSAGE * len(devices)

        wait_for(complete, what="every row stored", timeout_s=120)
        for device_id in devices.values():
            rows = conn.execute(
                "SELECT t.value AS seq, count(*) AS n FROM telemetry t "
                "JOIN points p ON p.id = t.point_id WHERE p.name = 'test.seq' "
                "AND t.device_id = %s GROUP BY 1 ORDER BY 1", (device_id,)).fetchall()
            assert [int(r["seq"]) for r in rows] == list(range(1, count + 1))
            assert {r["n"] for r in rows} == {SAMPLES}
            total = conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = %s",
                                 (device_id,)).fetchone()["n"]
            assert total == count * ROWS_PER_MESSAGE
        gaps = conn.execute("SELECT * FROM seq_gaps WHERE device_id = ANY(%s)",
                            (list(devices.values()),)).fetchall()
        assert gaps == []


def test_sigkill_mid_stream_then_restart_stores_every_point_once(kw_env, settings, tmp_path):
    devices = register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["KILL-1", "KILL-2"], "Killco")
    collector = CollectorProcess(kw_env, log_path=tmp_path / "collector.log").start()
    publisher = Publisher()
    stream = Stream(publisher, settings.mqtt_prefix, list(devices), count=300)
    try:
        stream.start()
        stream.wait_until(100)
        collector.kill()
        stream.wait_until(200)
        collector.start()
        stream.finish()
        assert_exactly_once(kw_env["KILOWATCH_DATABASE_URL"], devices, 300)
    finally:
        publisher.close()
        collector.stop()


def test_two_collectors_on_a_shared_subscription_store_each_point_once(kw_env, settings,
                                                                       tmp_path):
    devices = register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["SHARE-1", "SHARE-2"],
                             "Shareco")
    shared = {**kw_env, "KILOWATCH_MQTT_SHARE_GROUP": f"kwtest{free_port()}"}
    first = CollectorProcess(shared, log_path=tmp_path / "first.log").start()
    second = CollectorProcess({**shared, "KILOWATCH_METRICS_PORT": str(free_port())},
                              log_path=tmp_path / "second.log").start()
    publisher = Publisher()
    try:
        stream = Stream(publisher, settings.mqtt_prefix, list(devices), count=200, pace_s=0)
        stream.start()
        stream.finish()
        assert_exactly_once(kw_env["KILOWATCH_DATABASE_URL"], devices, 200)
        label = '{kind="telemetry"}'
        received = [c.metric("kilowatch_collector_messages_received_total", label) or 0
                    for c in (first, second)]
        assert all(r > 0 for r in received), received
        assert sum(received) == 200 * len(devices)
    finally:
        publisher.close()
        first.stop()
        second.stop()


def test_broker_restart_mid_stream_loses_and_doubles_nothing(kw_env, own_broker, tmp_path):
    devices = register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["MQ-1", "MQ-2"], "Brokerco")
    env = {**kw_env, **own_broker.logins(kw_env["KILOWATCH_MQTT_PREFIX"])}
    publisher = Publisher(env["KILOWATCH_SIMULATOR_MQTT_URL"])
    publisher.client.reconnect_delay_set(1, 2)
    try:
        with running_collector(env, log_path=tmp_path / "collector.log"):
            stream = Stream(publisher, kw_env["KILOWATCH_MQTT_PREFIX"], list(devices), count=300)
            stream.start()
            stream.wait_until(100)
            own_broker.restart()
            stream.finish()
            assert_exactly_once(kw_env["KILOWATCH_DATABASE_URL"], devices, 300)
    finally:
        publisher.close()


def test_database_restart_mid_stream_loses_and_doubles_nothing(kw_env, own_database, tmp_path):
    devices = register_fleet(own_database.url, ["PG-1", "PG-2"], "Databaseco")
    env = {**kw_env, "KILOWATCH_DATABASE_URL": own_database.url}
    publisher = Publisher()
    try:
        with running_collector(env, log_path=tmp_path / "collector.log") as collector:
            stream = Stream(publisher, kw_env["KILOWATCH_MQTT_PREFIX"], list(devices), count=300)
            stream.start()
            stream.wait_until(100)
            own_database.restart(down_s=3)
            stream.finish()
            assert_exactly_once(own_database.url, devices, 300)
            assert collector.metric("kilowatch_collector_database_errors_total") >= 1
            assert collector.process.poll() is None
    finally:
        publisher.close()
