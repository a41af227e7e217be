"""The writer on its own: backlog items, made from MQTT messages as ``on_message`` makes
them, handed to its batch function against a real database, and the rows that come out."""

from __future__ import annotations

import datetime as dt
import json
import logging

import paho.mqtt.client as mqtt
import pytest

from collector.backlog import Backlog, Item
from collector.logs import RateLimitedLog
from collector.metrics import Metrics
from collector.service import decode_message
from collector.validation import Validator
from collector.writer import Writer
from kilowatch.access import system_scope
from kilowatch.schedules import store as schedule_store
from tests.collector.helpers import count_rows, iso, register_fleet, telemetry

SERIALS = ["WRT-1", "WRT-2", "WRT-3"]


@pytest.fixture(scope="module")
def devices(settings):
    return register_fleet(settings.database_url, SERIALS)


@pytest.fixture
def acked() -> list[Item]:
    return []


@pytest.fixture
def writer(settings, devices, acked):
    writer = Writer(settings=settings, backlog=Backlog(1_000_000), metrics=Metrics(),
                    ack=acked.append, refusals=RateLimitedLog(logging.getLogger("test")))
    yield writer
    writer.close()


@pytest.fixture
def item(settings):
    """Make backlog items the way on_message does, from a topic and a payload."""
    validator = Validator(retention_days=settings.raw_retention_days)
    mids = iter(range(1, 1_000_000))

    def make(serial: str, kind: str, body: bytes | dict, *, retain: bool = False) -> Item:
        message = mqtt.MQTTMessage(mid=next(mids),
                                   topic=f"{settings.mqtt_prefix}/{serial}/{kind}".encode())
        message.payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        message.qos, message.retain = 1, retain
        return decode_message(message, prefix=settings.mqtt_prefix, validator=validator,
                              generation=1)

    return make


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def rejected(writer: Writer, reason: str) -> float:
    return writer.metrics.registry.get_sample_value(
        "kilowatch_collector_messages_rejected_total", {"reason": reason})


def test_telemetry_rows_are_stored_and_a_redelivery_is_not_doubled(
        conn, writer, item, acked, devices):
    start = now() - dt.timedelta(minutes=5)
    payloads = [telemetry(seq, start + dt.timedelta(seconds=10 * seq), samples=3, points=5)
                for seq in (1, 2)]
    first = writer.write_batch([item("WRT-1", "telemetry", p) for p in payloads])
    assert (first.inserted, first.rows, first.refused) == (36, 36, {})
    assert count_rows(conn, [devices["WRT-1"]]) == 2 * 3 * 6
    assert len(acked) == 2

    again = writer.write_batch([item("WRT-1", "telemetry", p) for p in payloads])
    assert (again.inserted, again.rows) == (0, 36)
    assert count_rows(conn, [devices["WRT-1"]]) == 36
    assert len(acked) == 4  # a redelivery is acknowledged, or the broker sends it forever
    assert writer.metrics.registry.get_sample_value(
        "kilowatch_collector_points_duplicate_total") == 36
    newest = conn.execute("SELECT max(last_seq) AS seq FROM device_seq WHERE device_id = %s",
                          (devices["WRT-1"],)).fetchone()
    assert newest["seq"] == 2


def test_a_device_alarm_is_raised_then_cleared(conn, writer, item, devices):
    raised = {"ts": iso(now() - dt.timedelta(seconds=20)), "code": "BMS_OVERTEMP",
              "severity": "critical", "state": "raised", "message": "Cell temperature 61 °C"}
    assert writer.write_batch([item("WRT-2", "alarms", raised)]).refused == {}
    alarm = conn.execute("SELECT * FROM alarms WHERE device_id = %s AND code = 'BMS_OVERTEMP'",
                         (devices["WRT-2"],)).fetchone()
    assert (alarm["severity"], alarm["source"], alarm["message"]) == (
        "critical", "device", "Cell temperature 61 °C")
    assert alarm["cleared_at"] is None

    cleared = {"ts": iso(now() - dt.timedelta(seconds=10)), "code": "BMS_OVERTEMP",
               "state": "cleared"}
    writer.write_batch([item("WRT-2", "alarms", cleared)])
    after = conn.execute("SELECT cleared_at FROM alarms WHERE id = %s",
                         (alarm["id"],)).fetchone()
    assert after["cleared_at"] == dt.datetime.fromisoformat(cleared["ts"])


def test_a_status_sets_online_and_firmware(conn, writer, item, devices):
    status = {"ts": iso(now()), "state": "online", "firmware": "3.1.0"}
    result = writer.write_batch([item("WRT-2", "status", status)])
    assert result.states[devices["WRT-2"]][0] is True
    device = conn.execute("SELECT online, firmware FROM devices WHERE id = %s",
                          (devices["WRT-2"],)).fetchone()
    assert (device["online"], device["firmware"]) == (True, "3.1.0")


def test_schedule_acks_are_recorded_and_an_unknown_revision_is_dead_lettered(
        conn, writer, item, devices):
    device_id = devices["WRT-3"]
    site_id = conn.execute("SELECT site_id FROM devices WHERE id = %s",
                           (device_id,)).fetchone()["site_id"]
    revision = schedule_store.save_revision(
        conn, system_scope(), site_id, {"timezone": "Europe/Paris", "default_mode": "idle"})
    ack = {"revision": revision["revision"], "status": "rejected", "reason": "power too high"}
    result = writer.write_batch([item("WRT-3", "schedule/ack", ack),
                                 item("WRT-3", "schedule/ack", {**ack, "revision": 99})])
    assert [reason for reason, _ in result.refused.values()] == ["unknown_revision"]
    delivery = conn.execute("SELECT status, reason, acked_at FROM schedule_deliveries "
                            "WHERE revision_id = %s AND device_id = %s",
                            (revision["id"], device_id)).fetchone()
    assert (delivery["status"], delivery["reason"]) == ("rejected", "power too high")
    assert delivery["acked_at"] is not None
    letter = conn.execute("SELECT * FROM dead_letters WHERE reason = 'unknown_revision'"
                          ).fetchone()
    assert (letter["serial"], letter["device_id"]) == ("WRT-3", device_id)
    assert json.loads(letter["payload"])["revision"] == 99
    assert rejected(writer, "unknown_revision") == 1


def test_an_unknown_serial_is_dead_lettered_and_its_neighbours_stored(
        conn, writer, item, acked, devices):
    start = now() - dt.timedelta(minutes=2)
    stranger = telemetry(1, start)
    batch = [item("WRT-3", "telemetry", telemetry(7, start)),
             item("NOBODY-1", "telemetry", stranger),
             item("WRT-3", "telemetry", b'{"seq": 8, "samples": [')]
    result = writer.write_batch(batch)
    assert sorted(reason for reason, _ in result.refused.values()) == [
        "bad_json", "unknown_serial"]
    assert count_rows(conn, [devices["WRT-3"]]) == 6
    letters = {r["reason"]: r for r in conn.execute(
        "SELECT reason, serial, device_id, payload FROM dead_letters").fetchall()}
    assert letters["unknown_serial"]["serial"] == "NOBODY-1"
    assert letters["unknown_serial"]["device_id"] is None
    assert letters["unknown_serial"]["payload"] == stranger.decode()
    assert letters["bad_json"]["device_id"] == devices["WRT-3"]
    assert acked[-3:] == batch  # refused messages are acknowledged once kept
    # on_message counts the refusals it finds; the writer counts only its own
    assert (rejected(writer, "unknown_serial"), rejected(writer, "bad_json")) == (1, 0)
