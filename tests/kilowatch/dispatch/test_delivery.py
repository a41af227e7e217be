"""Plans sent to devices on the real broker: shares by rating, revisions, acks, retention."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
from datetime import UTC, date, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.dispatch import delivery as plan_delivery
from kilowatch.dispatch import store as dispatch_store
from kilowatch.jobs import dispatch as dispatch_job
from kilowatch.jobs import retention
from tests.collector.helpers import Publisher, running_collector
from tests.conftest import wait_for
from tests.kilowatch.dispatch.test_job import NOW, optimised_site
from tests.simulator.conftest import Inbox, clear_retained

ROOT = system_scope("test")


@pytest.fixture
def plans(kw_env):
    """An Inbox on every plan topic of this module's prefix; retained plans cleared after."""
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    box = Inbox(f"{prefix}/+/plan")
    yield box
    box.close()
    clear_retained(prefix)


def storage_serials(conn, site):
    return {row["serial"]: row["id"] for row in conn.execute(
        "SELECT id, serial FROM devices WHERE site_id = %s AND model LIKE 'HES%%'",
        (site,)).fetchall()}


def test_the_job_sends_each_storage_device_its_share_of_each_new_plan(conn, settings, plans):
    _, site, storage = optimised_site(conn)  # an HES-L of 50 kW
    larger = fleet.register_device(conn, ROOT, site_id=site, serial=f"X-{secrets.token_hex(5)}",
                                   model="HES-XL", rated_power_kw=125, capacity_kwh=250)
    dispatch_job.plan_sites(conn, settings, now=NOW + timedelta(minutes=7))
    row = dispatch_store.latest_plan(conn, ROOT, site)
    serials = storage_serials(conn, site)
    assert plans.wait_for(lambda box: all(box.on("plan", s) for s in serials))
    stored_steps = row["plan"]["steps"]
    for serial, device in serials.items():
        [sent] = plans.on("plan", serial)
        share = (50 if device == storage else 125) / 175
        assert sent["revision"] == row["revision"]
        assert sent["created"] == "2026-06-03T00:00:00Z"
        assert sent["expires"] == "2026-06-05T00:45:00Z"  # an hour after the last step
        assert len(sent["steps"]) == 192
        for step, planned in zip(sent["steps"], stored_steps, strict=True):
            assert step["mode"] == planned["mode"]
            assert step["battery_kw"] == pytest.approx(planned["battery_kw"] * share, abs=1e-3)
            if "grid_limit_kw" in planned:
                assert step["grid_limit_kw"] == pytest.approx(planned["grid_limit_kw"] * share,
                                                              abs=0.01)
    late = Inbox(f"{settings.mqtt_prefix}/+/plan")  # a device connecting later gets it
    try:
        assert late.wait_for(lambda box: len(box.messages) == 2)
        assert all(retained for _, _, retained in late.messages)
    finally:
        late.close()
    state = plan_delivery.delivery_state(conn, ROOT, site)
    assert {(r["device_id"], r["revision"], r["status"]) for r in state} == {
        (storage, row["revision"], "pending"), (larger, row["revision"], "pending")}
    assert all(r["published_at"] and r["publish_error"] is None for r in state)

    # Planned again in the same step: a new revision, though the same row of dispatch_plans.
    dispatch_job.plan_sites(conn, settings, now=NOW + timedelta(minutes=9))
    again = dispatch_store.latest_plan(conn, ROOT, site)
    assert again["id"] == row["id"] and again["revision"] > row["revision"]
    assert plans.wait_for(lambda box: all(len(box.on("plan", s)) == 2 for s in serials))
    assert {r["revision"] for r in plan_delivery.delivery_state(conn, ROOT, site)} == {
        again["revision"]}


def test_acks_settle_each_device_and_unknown_or_old_ones_are_told_apart(kw_env, conn, settings,
                                                                        plans):
    _, site, storage = optimised_site(conn)
    dispatch_job.plan_sites(conn, settings, now=NOW)
    revision = dispatch_store.latest_plan(conn, ROOT, site)["revision"]
    at = datetime.now(UTC)
    assert plan_delivery.record_ack(conn, device_id=storage, revision=revision,
                                    status="rejected", reason="x" * 600, at=at)
    [row] = plan_delivery.delivery_state(conn, ROOT, site)
    assert (row["status"], len(row["reason"])) == ("rejected", 500)
    # A duplicate older than the answer on file changes nothing.
    assert not plan_delivery.record_ack(conn, device_id=storage, revision=revision,
                                        status="applied", at=at - timedelta(seconds=5))
    assert plan_delivery.record_ack(conn, device_id=storage, revision=revision,
                                    status="applied", at=at + timedelta(seconds=5))
    [row] = plan_delivery.delivery_state(conn, ROOT, site)
    assert (row["status"], row["reason"]) == ("applied", None)
    shown = subprocess.run(["kilowatch", "schedule", "show", "--site", str(site)],
                           env={**os.environ, **kw_env}, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert f"plan {revision} (made 2026-06-03 00:00 UTC) applied at " in shown.stdout
    with pytest.raises(plan_delivery.UnknownPlan):
        plan_delivery.record_ack(conn, device_id=storage, revision=revision + 1000,
                                 status="applied")
    with pytest.raises(ValueError, match="applied or rejected"):
        plan_delivery.record_ack(conn, device_id=storage, revision=revision, status="maybe")


def test_no_plan_is_sent_while_the_schedule_is_not_optimized_during_it(conn, settings, plans):
    later = {"timezone": "UTC", "default_mode": "idle", "periods": [],
             "exceptions": [{"date": "2026-06-20", "periods": [
                 {"start": "00:00", "end": "24:00", "mode": "optimized"}]}]}
    _, site, _ = optimised_site(conn, schedule=later)
    counts = dispatch_job.plan_sites(conn, settings, now=NOW)
    assert counts["planned"] >= 1
    assert dispatch_store.latest_plan(conn, ROOT, site)["status"] == "planned"
    [row] = plan_delivery.delivery_state(conn, ROOT, site)
    assert row["revision"] is None
    serial = next(iter(storage_serials(conn, site)))
    assert not plans.wait_for(lambda box: box.on("plan", serial), timeout_s=1.5)


def test_the_collector_records_plan_acks_and_dead_letters_bad_ones(kw_env, conn, settings,
                                                                   plans):
    _, site, _ = optimised_site(conn)
    dispatch_job.plan_sites(conn, settings, now=NOW)
    revision = dispatch_store.latest_plan(conn, ROOT, site)["revision"]
    serial = next(iter(storage_serials(conn, site)))
    topic = f"{kw_env['KILOWATCH_MQTT_PREFIX']}/{serial}/plan/ack"
    publisher = Publisher()
    try:
        with running_collector(kw_env):
            for body in ({"revision": revision, "status": "maybe"},
                         {"revision": revision + 1000, "status": "applied"},
                         {"revision": revision, "status": "applied", "ts": "2026-06-03T00:01:00Z"}):
                publisher.publish(topic, json.dumps(body).encode())
            publisher.publish(topic, b"{not json")
            [row] = wait_for(lambda: [r for r in plan_delivery.delivery_state(conn, ROOT, site)
                                      if r["status"] == "applied"], what="the plan applied")
            letters = wait_for(lambda: (rows := conn.execute(
                "SELECT reason FROM dead_letters WHERE topic = %s ORDER BY id",
                (topic,)).fetchall()) and len(rows) == 3 and rows, what="three dead letters")
    finally:
        publisher.close()
    assert row["acked_at"] == datetime(2026, 6, 3, 0, 1, tzinfo=UTC)
    assert sorted(r["reason"] for r in letters) == ["bad_json", "bad_schema", "unknown_revision"]


def test_retention_deletes_old_forecasts_and_plans_with_their_deliveries(conn, settings, plans):
    _, site, _ = optimised_site(conn)
    dispatch_job.plan_sites(conn, settings, now=NOW)  # June: long before the retention
    recent = datetime.now(UTC).replace(second=0, microsecond=0)
    dispatch_store.store_forecasts(conn, site, recent, [1.0], [0.0])
    kept = dataclasses.replace(settings, forecast_retention_days=(date.today()
                                                                  - NOW.date()).days + 1)
    assert retention.run(conn, kept)["plans_deleted"] == 0
    done = retention.run(conn, dataclasses.replace(settings, forecast_retention_days=30))
    assert done["plans_deleted"] >= 1 and done["forecasts_deleted"] >= 2
    assert dispatch_store.latest_plan(conn, ROOT, site) is None
    assert conn.execute("SELECT count(*) AS n FROM dispatch_plan_deliveries").fetchone()["n"] == 0
    assert conn.execute("SELECT made_at FROM dispatch_forecasts WHERE site_id = %s",
                        (site,)).fetchall() == [{"made_at": recent}] * 2


def test_the_wear_cost_setting_reaches_the_optimiser(conn, settings, plans):
    _, site, _ = optimised_site(conn)
    dispatch_job.plan_sites(conn, settings, now=NOW)
    free = dispatch_store.latest_plan(conn, ROOT, site)["plan"]
    dispatch_job.plan_sites(conn, dataclasses.replace(settings, dispatch_wear_cost=0.05),
                            now=NOW)
    worn = dispatch_store.latest_plan(conn, ROOT, site)["plan"]
    assert free["wear_cost"] == 0 and worn["wear_cost"] > 0


def test_an_unreachable_broker_leaves_plans_stored_and_stops_the_run_sending(conn, settings,
                                                                           plans):
    sites = [optimised_site(conn)[1] for _ in range(2)]
    away = dataclasses.replace(settings, mqtt_publisher_url="mqtt://127.0.0.1:1")
    counts = dispatch_job.plan_sites(conn, away, now=NOW)
    assert counts["sent"] == 0 and counts["failed"] == 0 and counts["planned"] >= 2
    failed = conn.execute("""SELECT DISTINCT revision, publish_error FROM dispatch_plan_deliveries
                             WHERE publish_error IS NOT NULL""").fetchall()
    # The first site of the run found the broker away; the run stopped sending.
    assert len(failed) == 1 and "127.0.0.1:1" in failed[0]["publish_error"]
    for site in sites:
        row = dispatch_store.latest_plan(conn, ROOT, site)
        assert row["status"] == "planned"
        [state] = plan_delivery.delivery_state(conn, ROOT, site)
        assert state["revision"] != row["revision"] or state["published_at"] is None
