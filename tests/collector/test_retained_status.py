"""Retained status messages replayed by the broker to a new collector session."""

from __future__ import annotations

import datetime as dt
import json

from tests.collector.helpers import Publisher, iso, register_fleet, running_collector
from tests.conftest import wait_for


def test_a_stale_retained_status_sets_firmware_but_not_online(kw_env, conn, settings, tmp_path):
    devices = register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["RET-OLD", "RET-NEW"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stale = now - dt.timedelta(seconds=settings.offline_after + 3600)
    topics = {serial: f"{settings.mqtt_prefix}/{serial}/status" for serial in devices}
    publisher = Publisher()
    try:
        # Published before the collector's first subscription: it gets them as retained.
        publisher.publish(topics["RET-OLD"], json.dumps(
            {"ts": iso(stale), "state": "online", "firmware": "1.9.0"}).encode(), retain=True)
        publisher.publish(topics["RET-NEW"], json.dumps(
            {"ts": iso(now), "state": "online", "firmware": "2.4.1"}).encode(), retain=True)
        with running_collector(kw_env, log_path=tmp_path / "collector.log"):
            rows = wait_for(lambda: (lambda r: r if all(x["firmware"] for x in r) else None)(
                conn.execute("SELECT serial, firmware, online, last_seen FROM devices "
                             "ORDER BY serial").fetchall()), what="firmware from retained")
    finally:
        for topic in topics.values():
            publisher.publish(topic, b"", retain=True)
        publisher.close()
    by_serial = {r["serial"]: r for r in rows}
    old, new = by_serial["RET-OLD"], by_serial["RET-NEW"]
    assert old["firmware"] == "1.9.0" and new["firmware"] == "2.4.1"
    assert old["online"] is False and old["last_seen"] is None
    assert new["online"] is True and new["last_seen"] == now  # its own time, not arrival
    events = conn.execute("SELECT device_id FROM device_events WHERE state = 'online'").fetchall()
    assert [e["device_id"] for e in events] == [devices["RET-NEW"]]
