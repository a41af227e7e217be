"""The collector against the real broker, database and Redis: what is stored, what is refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from kilowatch import db, redis_client
from kilowatch.access import AccessScope, system_scope
from kilowatch.telemetry import live
from tests.collector.helpers import (
    Publisher,
    count_rows,
    iso,
    register_fleet,
    running_collector,
    telemetry,
)
from tests.conftest import wait_for


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["INV-1", "INV-2", "INV-3"])


@pytest.fixture(scope="module")
def collector(kw_env, devices, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("collector") / "collector.log"
    with running_collector(kw_env, log_path=log_path) as process:
        yield process


@pytest.fixture(scope="module")
def publisher():
    pub = Publisher()
    yield pub
    pub.close()


@pytest.fixture
def topic(settings):
    return lambda serial, kind="telemetry": f"{settings.mqtt_prefix}/{serial}/{kind}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def test_valid_telemetry_is_stored_and_live(conn, collector, publisher, topic, devices, settings):
    start = now() - dt.timedelta(minutes=10)
    for seq in range(1, 21):
        publisher.publish(topic("INV-1"), telemetry(seq, start + dt.timedelta(seconds=seq * 10),
                                                     samples=3, points=10))
    device_id = devices["INV-1"]
    expected = 20 * 3 * 11
    wait_for(lambda: count_rows(conn, [device_id]) == expected, what="rows stored")
    seqs = conn.execute(
        "SELECT DISTINCT t.value FROM telemetry t JOIN points p ON p.id = t.point_id "
        "WHERE p.name = 'test.seq' AND t.device_id = %s ORDER BY 1", (device_id,)).fetchall()
    assert [int(r["value"]) for r in seqs] == list(range(1, 21))
    client = redis_client.get_redis(settings)
    state = wait_for(lambda: live.read_live(conn, client, system_scope(),
                                            device_ids=[device_id]).get(device_id),
                     what="live hash")
    wait_for(lambda: live.read_live(conn, client, system_scope(),
                                    device_ids=[device_id])[device_id]["seq"] == 20,
             what="live seq")
    state = live.read_live(conn, client, system_scope(), device_ids=[device_id])[device_id]
    assert state["online"] is True
    assert state["values"]["test.seq"] == 20
    assert state["ts"] == start + dt.timedelta(seconds=200 + 2)
    raw = client.hgetall(redis_client.key("live", device_id, settings=settings))
    assert raw["_online"] == "1" and float(raw["_last_seen"]) > 0
    device = conn.execute("SELECT online, last_seen FROM devices WHERE id = %s",
                          (device_id,)).fetchone()
    assert device["online"] and device["last_seen"] is not None
    other = AccessScope(role="admin", company_id=999_999)
    assert live.read_live(conn, client, other, device_ids=[device_id]) == {}


def test_published_points_reach_the_rollups(kw_env, conn, collector, devices):
    import os
    import subprocess

    device_id = devices["INV-1"]
    raw = count_rows(conn, [device_id])
    assert raw == 20 * 3 * 11
    result = subprocess.run(["kilowatch", "worker", "--once", "--job", "rollups"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    closed = {}
    for rollup, table in (("1m", "telemetry_1m"), ("1h", "telemetry_1h")):
        # Rollups hold closed buckets: everything before the rollup's watermark.
        watermark = conn.execute("SELECT watermark FROM rollup_state WHERE rollup = %s",
                                 (rollup,)).fetchone()["watermark"]
        closed[rollup] = conn.execute(
            "SELECT count(*) AS n FROM telemetry WHERE device_id = %s AND time < %s",
            (device_id, watermark)).fetchone()["n"]
        total = conn.execute(f"SELECT coalesce(sum(count), 0) AS n FROM {table} "
                             "WHERE device_id = %s", (device_id,)).fetchone()["n"]
        assert total == closed[rollup], table
    assert closed["1m"] == raw  # the samples are minutes old: every minute bucket is closed


def test_same_message_twice_stores_one_row(conn, collector, publisher, topic, devices):
    stored = 'kilowatch_collector_messages_stored_total', '{kind="telemetry"}'
    before = collector.metric(*stored) or 0
    payload = telemetry(1, now() - dt.timedelta(minutes=5), samples=2, points=4)
    publisher.publish(topic("INV-2"), payload)
    publisher.publish(topic("INV-2"), payload)
    publisher.publish(topic("INV-2"), telemetry(2, now() - dt.timedelta(minutes=4), points=4))
    device_id = devices["INV-2"]
    wait_for(lambda: count_rows(conn, [device_id]) == 2 * 5 + 5, what="rows")
    wait_for(lambda: collector.metric("kilowatch_collector_points_duplicate_total") == 10,
             what="duplicates counted")
    assert count_rows(conn, [device_id]) == 15
    # Every delivery is a stored message (the duplicate is committed as a no-op), not a refusal.
    assert collector.metric(*stored) - before == 3


INVALID = {
    "bad_json": b'{"seq": 1, "samples": [',
    "bad_schema": json.dumps({"seq": "one", "samples": []}).encode(),
    "bad_point_name": json.dumps({"seq": 3, "samples": [
        {"ts": "NOW", "v": {"Bad Name": 1.0, "test.ok": 2.0}}]}).encode(),
    "bad_value": json.dumps({"seq": 4, "samples": [
        {"ts": "NOW", "v": {"test.ok": "high"}}]}).encode(),
    "future_timestamp": json.dumps({"seq": 5, "samples": [
        {"ts": "FUTURE", "v": {"test.ok": 1.0}}]}).encode(),
    "too_old": json.dumps({"seq": 6, "samples": [
        {"ts": "OLD", "v": {"test.ok": 1.0}}]}).encode(),
    "too_many_samples": json.dumps({"seq": 7, "samples": [
        {"ts": "NOW", "v": {f"test.many.p{i}": 1.0 for i in range(10_001)}}]}).encode(),
    "bad_timestamp": json.dumps({"seq": 8, "samples": [
        {"ts": "2026-01-01 10:00", "v": {"test.ok": 1.0}}]}).encode(),
}


def _fill(payload: bytes) -> bytes:
    current = now()
    return (payload.replace(b'"NOW"', json.dumps(iso(current - dt.timedelta(seconds=30))).encode())
            .replace(b'"FUTURE"', json.dumps(iso(current + dt.timedelta(minutes=10))).encode())
            .replace(b'"OLD"', json.dumps(iso(current - dt.timedelta(days=40))).encode()))


def test_every_invalid_kind_is_refused_and_neighbours_are_stored(
        conn, collector, publisher, topic, devices):
    device_id = devices["INV-3"]
    start = now() - dt.timedelta(minutes=30)
    messages = []
    seq = 100
    for payload in INVALID.values():
        seq += 1
        messages.append((topic("INV-3"), telemetry(seq, start + dt.timedelta(seconds=seq))))
        messages.append((topic("INV-3"), _fill(payload)))
    seq += 1
    messages.append((topic("INV-3"), telemetry(seq, start + dt.timedelta(seconds=seq))))
    messages.append((topic("NOT-REGISTERED"), telemetry(1, start)))
    messages.append((topic("bad serial!"), telemetry(1, start)))
    publisher.publish_many(messages)
    good = len(INVALID) + 1
    wait_for(lambda: count_rows(conn, [device_id]) == good * 6, what="neighbours stored")
    reasons = {*INVALID, "unknown_serial"}

    def letters():
        rows = conn.execute("SELECT reason, serial, payload FROM dead_letters").fetchall()
        return rows if {r["reason"] for r in rows} >= reasons else None

    rows = wait_for(letters, what="dead letters")
    by_reason = {r["reason"]: r for r in rows}
    assert by_reason["bad_json"]["payload"] == INVALID["bad_json"].decode()
    assert by_reason["bad_value"]["serial"] == "INV-3"
    # refused after validation (by the writer): what the device sent is kept too
    assert by_reason["unknown_serial"]["payload"] == telemetry(1, start).decode()
    assert len(by_reason["too_many_samples"]["payload"]) <= 4096
    for reason in reasons:
        value = collector.metric("kilowatch_collector_messages_rejected_total",
                                 f'{{reason="{reason}"}}')
        assert value and value >= 1, reason
    assert count_rows(conn, [device_id]) == good * 6


def test_device_alarms_are_raised_then_cleared(conn, collector, publisher, topic, devices):
    device_id = devices["INV-1"]
    raised = {"ts": iso(now()), "code": "BMS_OVERTEMP", "severity": "critical",
              "state": "raised", "message": "Cell temperature 61 °C"}
    publisher.publish(topic("INV-1", "alarms"), json.dumps(raised).encode())
    alarm = wait_for(lambda: conn.execute(
        "SELECT * FROM alarms WHERE device_id = %s AND code = 'BMS_OVERTEMP'",
        (device_id,)).fetchone(), what="alarm raised")
    assert alarm["source"] == "device" and alarm["cleared_at"] is None
    assert alarm["message"] == "Cell temperature 61 °C"
    cleared = {**raised, "state": "cleared", "ts": iso(now())}
    publisher.publish(topic("INV-1", "alarms"), json.dumps(cleared).encode())
    wait_for(lambda: conn.execute("SELECT cleared_at FROM alarms WHERE id = %s",
                                  (alarm["id"],)).fetchone()["cleared_at"], what="cleared")
    publisher.publish(topic("INV-1", "alarms"), json.dumps(
        {**raised, "severity": "fatal"}).encode())
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM dead_letters WHERE reason = 'bad_schema' AND topic LIKE '%%/alarms'"
    ).fetchone(), what="bad alarm refused")


def test_a_redelivered_alarm_message_opens_no_second_alarm(conn, collector, publisher, topic,
                                                           devices):
    device_id = devices["INV-3"]
    raised = json.dumps({"ts": iso(now() - dt.timedelta(seconds=5)), "code": "PCS_FAULT",
                         "severity": "major", "state": "raised"}).encode()
    cleared = json.dumps({"ts": iso(now()), "code": "PCS_FAULT", "state": "cleared"}).encode()
    # What the broker sends again when the collector restarts before acknowledging.
    for message in (raised, cleared, raised, cleared, raised):
        publisher.publish(topic("INV-3", "alarms"), message)
    publisher.publish(topic("INV-3", "alarms"), json.dumps(
        {"ts": iso(now()), "code": "SENTINEL", "severity": "minor",
         "state": "raised"}).encode())
    wait_for(lambda: conn.execute("SELECT 1 FROM alarms WHERE device_id = %s AND code = "
                                  "'SENTINEL'", (device_id,)).fetchone(), what="sentinel")
    alarms = conn.execute("SELECT id, cleared_at, raise_count FROM alarms WHERE device_id = %s "
                          "AND code = 'PCS_FAULT'", (device_id,)).fetchall()
    assert len(alarms) == 1 and alarms[0]["cleared_at"] and alarms[0]["raise_count"] == 1
    events = conn.execute("SELECT kind FROM alarm_events e JOIN notification_inbox n "
                          "ON n.event_id = e.id WHERE e.alarm_id = %s ORDER BY e.id",
                          (alarms[0]["id"],)).fetchall()
    assert [e["kind"] for e in events] == ["raised", "cleared"]


def test_will_message_sets_offline_and_raises_comm_lost_next_message_clears(
        conn, collector, publisher, topic, devices, settings):
    device_id = devices["INV-2"]
    publisher.publish(topic("INV-2", "status"),
                      json.dumps({"ts": iso(now()), "state": "online",
                                  "firmware": "2.4.1"}).encode())
    wait_for(lambda: conn.execute("SELECT firmware FROM devices WHERE id = %s",
                                  (device_id,)).fetchone()["firmware"] == "2.4.1",
             what="firmware")
    publisher.publish(topic("INV-2", "status"),
                      json.dumps({"ts": iso(now()), "state": "offline"}).encode())
    alarm = wait_for(lambda: conn.execute(
        "SELECT * FROM alarms WHERE device_id = %s AND code = 'COMM_LOST' "
        "AND cleared_at IS NULL", (device_id,)).fetchone(), what="COMM_LOST")
    assert alarm["severity"] == "major" and alarm["source"] == "platform"
    assert conn.execute("SELECT online FROM devices WHERE id = %s",
                        (device_id,)).fetchone()["online"] is False
    client = redis_client.get_redis(settings)
    key = redis_client.key("live", device_id, settings=settings)
    wait_for(lambda: client.hget(key, "_online") == "0", what="redis offline")
    publisher.publish(topic("INV-2"), telemetry(50, now() - dt.timedelta(seconds=5)))
    wait_for(lambda: conn.execute("SELECT cleared_at FROM alarms WHERE id = %s",
                                  (alarm["id"],)).fetchone()["cleared_at"], what="cleared")
    wait_for(lambda: client.hget(key, "_online") == "1", what="redis online")
    states = [r["state"] for r in conn.execute(
        "SELECT state FROM device_events WHERE device_id = %s ORDER BY id",
        (device_id,)).fetchall()]
    assert states[-2:] == ["offline", "online"]


def test_seq_gaps_are_recorded_and_filled_by_late_messages(
        conn, collector, publisher, topic, devices):
    device_id = devices["INV-3"]
    start = now() - dt.timedelta(minutes=20)
    for seq in (500, 501, 505, 503):
        publisher.publish(topic("INV-3"), telemetry(seq, start + dt.timedelta(seconds=seq)))

    def gaps():
        rows = conn.execute("SELECT first_missing, last_missing FROM seq_gaps "
                            "WHERE device_id = %s AND first_missing >= 500 ORDER BY 1",
                            (device_id,)).fetchall()
        return [(r["first_missing"], r["last_missing"]) for r in rows]

    wait_for(lambda: gaps() == [(502, 502), (504, 504)], what="gaps 502 and 504")


def test_schedule_ack_for_unknown_revision_is_dead_lettered(conn, collector, publisher, topic):
    publisher.publish(topic("INV-1", "schedule/ack"),
                      json.dumps({"revision": 99, "status": "applied"}).encode())
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM dead_letters WHERE reason = 'unknown_revision'").fetchone(),
        what="unknown revision refused")
    publisher.publish(topic("INV-1", "schedule/ack"),
                      json.dumps({"revision": 0, "status": "maybe"}).encode())
    wait_for(lambda: conn.execute(
        "SELECT 1 FROM dead_letters WHERE reason = 'bad_schema' AND topic LIKE '%%/ack'"
    ).fetchone(), what="bad ack refused")


def test_deadletter_list_command(kw_env, collector, conn):
    import os
    import subprocess

    wait_for(lambda: conn.execute("SELECT 1 FROM dead_letters").fetchone(), what="letters")
    result = subprocess.run(["kilowatch", "deadletter", "list", "--limit", "5"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert any(reason in result.stdout for reason in (*INVALID, "unknown_serial"))
    with db.connect(kw_env["KILOWATCH_DATABASE_URL"]) as other:
        assert other.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] >= 5
