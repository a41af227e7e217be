"""The collector's threads outlive an exception: in a paho callback, in the live updater.

And a batch rolled back by a conflict is retried after a random pause that grows.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from collector import live_updater, writer
from collector.metrics import Metrics
from collector.service import Collector
from kilowatch import redis_client
from kilowatch.probes import SUBSCRIBED_GAUGE
from tests.collector.helpers import Publisher, count_rows, register_fleet, telemetry
from tests.conftest import wait_for


class FragileCollector(Collector):
    """A collector whose handling of one device's messages raises (a bug, say)."""

    def _on_message(self, client, userdata, message) -> None:
        if "/FRAGILE-X/" in message.topic:
            raise RuntimeError("handling failed")
        super()._on_message(client, userdata, message)


def test_a_message_whose_handling_raises_does_not_stop_the_next(settings, conn, caplog):
    device_id = register_fleet(settings.database_url, ["FRAGILE-1"], "Fragileco")["FRAGILE-1"]
    service = FragileCollector(settings, client_id=f"kwtest-fragile-{secrets.token_hex(4)}",
                               session_expiry_s=60)
    publisher = Publisher()
    service.start()
    try:
        wait_for(lambda: service.metrics.registry.get_sample_value(SUBSCRIBED_GAUGE) == 1,
                 what="collector subscribed")
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        with caplog.at_level(logging.ERROR, logger="collector"):
            publisher.publish(f"{settings.mqtt_prefix}/FRAGILE-X/telemetry", telemetry(1, start))
            publisher.publish(f"{settings.mqtt_prefix}/FRAGILE-1/telemetry", telemetry(1, start))
            wait_for(lambda: count_rows(conn, [device_id]) == 6,
                     what="the next message stored", timeout_s=30)
        assert "MQTT callback _on_message failed" in caplog.text
        assert service.client._thread.is_alive()
    finally:
        service.stop()
        publisher.close()


def test_the_live_updater_survives_a_failed_write(settings):
    client = redis_client.get_redis(settings)
    updater = live_updater.LiveUpdater(client, Metrics())
    updater.start()
    try:
        now = dt.datetime.now(dt.UTC)
        updater.submit({1: ("not", "an", "update", "tuple")}, {}, 1.0)  # a bug's output
        errors = "kilowatch_collector_redis_errors_total"
        wait_for(lambda: updater.metrics.registry.get_sample_value(errors) == 1,
                 what="the write failed")
        updater.submit({2: (now, 7, {"bms.soc": 55.0})}, {}, 2.0)
        live_key = redis_client.key("live", 2, settings=settings)
        wait_for(lambda: client.hget(live_key, "bms.soc"), what="the next write")
        assert updater.is_alive()
    finally:
        updater.stop()


def test_conflict_pauses_are_random_bounded_and_grow():
    firsts = [writer.conflict_pause(1) for _ in range(200)]
    lates = [writer.conflict_pause(12) for _ in range(200)]
    assert all(0 <= p <= 0.02 for p in firsts) and len(set(firsts)) > 100
    assert all(0 <= p <= 2.0 for p in lates) and max(lates) > 1.0
