"""Schedule delivery through the real broker: retained, QoS 1, and republished after an outage."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import secrets
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.jobs import schedules as schedule_jobs
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store
from tests.collector.helpers import running_collector
from tests.conftest import bench_login

ROOT = system_scope("test")
BODY = {"timezone": "Europe/Berlin", "default_mode": "idle",
        "periods": [{"days": ["mon", "tue"], "start": "17:00", "end": "24:00",
                     "mode": "discharge", "power_kw": 40, "soc_min": 20}]}


class Subscriber:
    """A real MQTT client reading schedules under this module's topic prefix."""

    def __init__(self, prefix: str, serial: str = "+") -> None:
        self.messages: queue.Queue = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{secrets.token_hex(4)}")
        self.client.on_message = lambda _c, _u, m: self.messages.put(m)
        self.client.connect(*bench_login(self.client))
        self.client.subscribe(f"{prefix}/{serial}/schedule", qos=1)
        self.client.loop_start()

    def next(self, timeout_s: float = 5.0) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def site(conn, settings):
    """A Berlin site with one storage device and a meter; retained schedules removed after."""
    tag = secrets.token_hex(3)
    company = fleet.create_company(conn, ROOT, f"Delivery {tag}")
    site_id = fleet.create_site(conn, ROOT, company_id=company, name="Plant",
                                timezone="Europe/Berlin")
    serials = [f"XXL-{tag}", f"MTR-{tag}"]
    fleet.register_device(conn, ROOT, site_id=site_id, serial=serials[0], model="HES-XXL",
                          rated_power_kw=250)
    fleet.register_device(conn, ROOT, site_id=site_id, serial=serials[1], model="meter")
    info = {"id": site_id, "company": company, "tag": tag, "serials": serials}
    yield info
    topics = [schedule_delivery.schedule_topic(s, settings) for s in
              (*serials, f"XL-{tag}", f"L-{tag}")]
    schedule_delivery.publish_retained([(t, "") for t in topics], settings=settings)


def test_saved_revision_reaches_a_real_client_retained(conn, settings, site):
    revision, result = schedule_delivery.save_and_publish(conn, ROOT, site["id"], BODY,
                                                          comment="first", settings=settings)
    assert result.ok and result.published == (site["serials"][0],)  # not the meter
    # Subscribing only now: the broker hands over the retained message.
    subscriber = Subscriber(settings.mqtt_prefix)
    try:
        message = subscriber.next()
    finally:
        subscriber.close()
    assert message.topic == f"{settings.mqtt_prefix}/{site['serials'][0]}/schedule"
    assert message.retain and message.qos == 1
    payload = json.loads(message.payload)
    assert payload == {"revision": revision["revision"], **schedules.validate(
        BODY, schedule_store.site_limits(conn, ROOT, site["id"]))}
    assert list(payload)[:3] == ["revision", "timezone", "default_mode"]
    state = schedule_store.delivery_state(conn, ROOT, site["id"])
    assert state[0]["published_at"] is not None and state[0]["status"] == "pending"


def test_unreachable_broker_leaves_the_revision_unpublished_until_the_job_sends_it(
        conn, settings, site):
    down = dataclasses.replace(settings, mqtt_publisher_url="mqtt://127.0.0.1:1")
    revision = schedule_store.save_revision(conn, ROOT, site["id"], BODY)
    result = schedule_delivery.publish_latest(conn, ROOT, site["id"], settings=down,
                                              timeout_s=2)
    assert not result.ok and result.failed == (site["serials"][0],)
    assert result.error.startswith("cannot reach the MQTT broker at 127.0.0.1:1")
    state = schedule_store.delivery_state(conn, ROOT, site["id"])
    assert state[0]["published_at"] is None and "cannot reach" in state[0]["publish_error"]
    assert "(not yet published)" in schedule_store.describe_delivery(state, "Europe/Berlin")
    assert site["id"] in schedule_store.sites_to_republish(conn, ROOT)
    assert schedule_jobs.republish(conn, down) == 0

    # A device registered after the save gets the latest revision too.
    late = f"XL-{site['tag']}"
    fleet.register_device(conn, ROOT, site_id=site["id"], serial=late, model="HES-XL")
    assert schedule_jobs.republish(conn, settings) >= 2
    assert site["id"] not in schedule_store.sites_to_republish(conn, ROOT)
    subscriber = Subscriber(settings.mqtt_prefix)
    try:
        received = {subscriber.next().topic.split("/")[-2] for _ in range(2)}
    finally:
        subscriber.close()
    assert received == {site["serials"][0], late}
    state = schedule_store.delivery_state(conn, ROOT, site["id"])
    assert {r["revision"] for r in state} == {revision["revision"]}
    assert all(r["published_at"] is not None and r["publish_error"] is None for r in state)


SITE_POWER = {"timezone": "Europe/Berlin", "default_mode": "peak_shaving",
              "default_params": {"grid_limit_kw": 90, "soc_min": 10},
              "periods": [{"days": ["mon", "tue"], "start": "17:00", "end": "24:00",
                           "mode": "discharge", "power_kw": 280, "soc_min": 20}]}


def _received(subscriber: Subscriber, count: int) -> dict[str, dict]:
    """The next ``count`` schedule messages, by device serial."""
    messages = [subscriber.next() for _ in range(count)]
    return {m.topic.split("/")[-2]: json.loads(m.payload) for m in messages}


def test_each_device_of_a_site_gets_its_share_of_the_sites_power(conn, settings, site):
    # 250 kW on file plus an HES-L without a rating (nominal 50 kW): the site has 300 kW,
    # so 280 kW is valid for the site but more than either device could run alone.
    big, small = site["serials"][0], f"L-{site['tag']}"
    ids = {big: conn.execute("SELECT id FROM devices WHERE serial = %s",
                             (big,)).fetchone()["id"],
           small: fleet.register_device(conn, ROOT, site_id=site["id"], serial=small,
                                        model="HES-L")}
    subscriber = Subscriber(settings.mqtt_prefix)
    try:
        revision, result = schedule_delivery.save_and_publish(
            conn, ROOT, site["id"], SITE_POWER, comment="split", settings=settings)
        assert result.ok and set(result.published) == {big, small}
        got = _received(subscriber, 2)
    finally:
        subscriber.close()
    assert {s: p["periods"][0]["power_kw"] for s, p in got.items()} == {
        big: pytest.approx(280 * 250 / 300, abs=0.005), small: pytest.approx(280 * 50 / 300,
                                                                             abs=0.005)}
    assert sum(p["periods"][0]["power_kw"] for p in got.values()) == pytest.approx(280, abs=0.01)
    assert {s: p["default_params"]["grid_limit_kw"] for s, p in got.items()} == {
        big: 75.0, small: 15.0}
    assert all(p["revision"] == revision["revision"] and p["periods"][0]["soc_min"] == 20
               and p["default_params"]["soc_min"] == 10 for p in got.values())

    # Both acks settle the site's summary; one refusal names its device and reason.
    for serial, status, reason in ((big, "applied", None), (small, "rejected", "BMS fault")):
        schedule_store.record_ack(conn, device_id=ids[serial], revision=revision["revision"],
                                  status=status, reason=reason)
    state = schedule_store.delivery_state(conn, ROOT, site["id"])
    assert schedule_store.describe_delivery(state, "Europe/Berlin") == (
        f"revision {revision['revision']} rejected ({small}: BMS fault)")
    schedule_store.record_ack(conn, device_id=ids[small],
                              revision=revision["revision"], status="applied")
    state = schedule_store.delivery_state(conn, ROOT, site["id"])
    assert schedule_store.describe_delivery(state, "Europe/Berlin") == (
        f"applied revision {revision['revision']}")

    # A third device changes every share: the worker's job sends the revision to all three.
    late = f"XL-{site['tag']}"
    fleet.register_device(conn, ROOT, site_id=site["id"], serial=late, model="HES-XL",
                          rated_power_kw=125)
    subscriber = Subscriber(settings.mqtt_prefix)
    try:
        _received(subscriber, 2)  # the retained messages of the first two devices
        assert schedule_jobs.republish(conn, settings) >= 3
        again = _received(subscriber, 3)
    finally:
        subscriber.close()
    assert {s: p["periods"][0]["power_kw"] for s, p in again.items()} == {
        big: pytest.approx(280 * 250 / 425, abs=0.005),
        small: pytest.approx(280 * 50 / 425, abs=0.005),
        late: pytest.approx(280 * 125 / 425, abs=0.005)}
    assert site["id"] not in schedule_store.sites_to_republish(conn, ROOT)


def test_only_editors_may_send_a_schedule(conn, settings, site):
    schedule_store.save_revision(conn, ROOT, site["id"], BODY)
    viewer = AccessScope(role="viewer", company_id=site["company"],
                         site_ids=frozenset({site["id"]}), actor="viewer@example.com")
    with pytest.raises(AccessDenied):
        schedule_delivery.publish_latest(conn, viewer, site["id"], settings=settings)
    outsider = AccessScope(role="admin", company_id=site["company"] + 10_000, actor="x")
    with pytest.raises(AccessDenied):
        schedule_delivery.publish_latest(conn, outsider, site["id"], settings=settings)
    assert schedule_delivery.publish_latest(conn, ROOT, site["id"], settings=settings).ok


def _wait_for_status(conn, site_id, status, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = schedule_store.delivery_state(conn, ROOT, site_id)
        if state[0]["status"] == status:
            return state[0]
        time.sleep(0.1)
    raise AssertionError(f"delivery never became {status}: {state}")


def test_device_acks_over_mqtt_reach_the_delivery_state(conn, settings, kw_env, site):
    serial = site["serials"][0]
    with running_collector(kw_env):
        device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{serial}")
        received: queue.Queue = queue.Queue()
        device.on_message = lambda _c, _u, m: received.put(json.loads(m.payload))
        device.connect(*bench_login(device))
        device.subscribe(schedule_delivery.schedule_topic(serial, settings), qos=1)
        device.loop_start()
        try:
            schedule_delivery.save_and_publish(conn, ROOT, site["id"], BODY, settings=settings)
            payload = received.get(timeout=5)
            ack = f"{settings.mqtt_prefix}/{serial}/schedule/ack"
            device.publish(ack, json.dumps({"revision": payload["revision"],
                                            "status": "applied"}), qos=1).wait_for_publish(5)
            applied = _wait_for_status(conn, site["id"], "applied")
            assert applied["applied_revision"] == payload["revision"]

            changed = {**BODY, "default_mode": "self_consumption",
                       "default_params": {"soc_min": 5, "soc_max": 95}}
            schedule_delivery.save_and_publish(conn, ROOT, site["id"], changed,
                                               settings=settings)
            second = received.get(timeout=5)
            assert second["revision"] == payload["revision"] + 1
            device.publish(ack, json.dumps({"revision": second["revision"], "status": "rejected",
                                            "reason": "SoC 5 % is below the BMS floor"}),
                           qos=1).wait_for_publish(5)
            rejected = _wait_for_status(conn, site["id"], "rejected")
        finally:
            device.disconnect()
            device.loop_stop()
    assert rejected["reason"] == "SoC 5 % is below the BMS floor"
    assert rejected["applied_revision"] == payload["revision"]


def test_worker_job_republishes_after_an_outage(conn, settings, kw_env, site):
    down = dataclasses.replace(settings, mqtt_publisher_url="mqtt://127.0.0.1:1")
    revision, result = schedule_delivery.save_and_publish(conn, ROOT, site["id"], BODY,
                                                          settings=down)
    assert not result.ok
    worker = subprocess.run(["kilowatch", "worker", "--once", "--job", "schedules.republish"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=60)
    assert worker.returncode == 0, worker.stderr
    subscriber = Subscriber(settings.mqtt_prefix, site["serials"][0])
    try:
        message = subscriber.next()
    finally:
        subscriber.close()
    assert json.loads(message.payload)["revision"] == revision["revision"]
    assert schedule_store.delivery_state(conn, ROOT, site["id"])[0]["published_at"] is not None
