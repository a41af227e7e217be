"""`kilowatch simulate` devices against the real platform: schedules applied, rejected, obeyed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import datetime

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store
from simulator.sites import make_sites
from tests.collector.helpers import Publisher, running_collector
from tests.conftest import wait_for
from tests.simulator.conftest import run_simulate, simulate_command
from tests.simulator.test_mqtt import protocol_errors

ROOT = system_scope("test")
SITE = make_sites(1, seed=31, serial_prefix="FOL")[0]
POWER_KW = SITE.rated_power_kw / 2


@pytest.fixture
def simulated_device(kw_env, conn, tmp_path):
    """One registered simulated site publishing every 0.5 s; yields its device row."""
    log = (tmp_path / "simulate.log").open("w")
    process = subprocess.Popen(
        simulate_command("--register", "--sites", "1", "--seed", "31", "--serial-prefix", "FOL",
                         "--interval", "0.5", "--fault-rate", "0", "--duration", "300"),
        env={**os.environ, **kw_env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        device = wait_for(lambda: conn.execute(
            "SELECT d.*, s.timezone FROM devices d JOIN sites s ON s.id = d.site_id "
            "WHERE d.serial = %s", (SITE.serial,)).fetchone(), what="the registered device")
        yield device
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "simulate.log").read_text()
        log.close()


def delivery(conn, site_id: int, status: str) -> dict:
    """Wait until the site's latest revision has ``status`` on its device; return the row."""
    return wait_for(lambda: next((row for row in schedule_store.delivery_state(conn, ROOT, site_id)
                                  if row["status"] == status), None),
                    what=f"a {status} delivery", timeout_s=30)


def stored_power(conn, device_id: int, after: datetime) -> list[tuple[float, float]]:
    """(pcs.p, bms.soc) pairs the collector stored for samples after ``after``."""
    rows = conn.execute(
        """SELECT t.time, p.name, t.value FROM telemetry t JOIN points p ON p.id = t.point_id
           WHERE t.device_id = %s AND p.name IN ('pcs.p', 'bms.soc') AND t.time > %s
           ORDER BY t.time""", (device_id, after)).fetchall()
    by_time: dict = {}
    for row in rows:
        by_time.setdefault(row["time"], {})[row["name"]] = row["value"]
    return [(v["pcs.p"], v["bms.soc"]) for v in by_time.values() if len(v) == 2]


def test_a_simulated_device_applies_obeys_and_rejects_schedules(kw_env, settings, conn, inbox,
                                                                 simulated_device):
    device, site_id = simulated_device, simulated_device["site_id"]
    everyday_discharge = {
        "timezone": device["timezone"], "default_mode": "idle",
        "periods": [{"days": list(schedules.DAYS), "start": "00:00", "end": "24:00",
                     "mode": "discharge", "power_kw": POWER_KW, "soc_min": 5}],
        "exceptions": []}
    with running_collector(kw_env):
        revision, result = schedule_delivery.save_and_publish(
            conn, ROOT, site_id, everyday_discharge, comment="discharge now", settings=settings)
        assert result.ok and result.published == (SITE.serial,)
        applied = delivery(conn, site_id, "applied")
        assert applied["revision"] == applied["applied_revision"] == revision["revision"]
        assert schedule_store.describe_delivery([applied], device["timezone"]) == (
            f"applied revision {revision['revision']}")

        # The battery now discharges at the scheduled power (its SoC is far above 5 %).
        after_ack = wait_for(lambda: stored_power(conn, device["id"], applied["acked_at"])[4:],
                             what="telemetry stored after the ack")
        assert all(p == pytest.approx(POWER_KW, abs=1e-3) and soc > 5 for p, soc in after_ack)

        # The platform's check passed, but this message asks the device for 4× its rating
        # (sent straight to the topic, as a platform with a wrong rating on file would).
        second = schedule_store.save_revision(conn, ROOT, site_id, everyday_discharge,
                                              comment="to be forged")
        forged = {"revision": second["revision"], **everyday_discharge,
                  "periods": [{**everyday_discharge["periods"][0],
                               "power_kw": SITE.rated_power_kw * 4}]}
        publisher = Publisher()
        try:
            publisher.publish(schedule_delivery.schedule_topic(SITE.serial, settings),
                              json.dumps(forged).encode())
        finally:
            publisher.client.disconnect()
            publisher.client.loop_stop()
        rejected = delivery(conn, site_id, "rejected")
        kept = wait_for(lambda: stored_power(conn, device["id"], rejected["acked_at"])[4:],
                        what="telemetry stored after the rejection")
    assert rejected["revision"] == second["revision"]
    assert rejected["reason"] == (
        f"period 1 (every day 00:00–24:00): power {SITE.rated_power_kw * 4:g} kW is above "
        f"this device's rated power of {SITE.rated_power_kw:g} kW")
    assert rejected["applied_revision"] == revision["revision"]
    assert all(p == pytest.approx(POWER_KW, abs=1e-3) for p, _ in kept)  # the old program runs
    assert protocol_errors(inbox.messages) == []
    acks = inbox.on("schedule/ack", SITE.serial)
    assert [(a["revision"], a["status"]) for a in acks] == [
        (revision["revision"], "applied"), (second["revision"], "rejected")]
    first_ack = next(i for i, (topic, _, _) in enumerate(inbox.messages)
                     if topic.endswith("/schedule/ack"))
    before = [sample["v"]["pcs.p"] for topic, message, _ in inbox.messages[:first_ack]
              if topic.endswith("/telemetry") for sample in message["samples"]]
    assert before and POWER_KW not in before  # the built-in program ran until then


@pytest.mark.parametrize("ignore", [False, True])
def test_simulate_answers_the_retained_schedule_unless_told_to_ignore_schedules(
        kw_env, inbox, ignore):
    site = make_sites(1, seed=32, serial_prefix="RET")[0]
    topic = f"{kw_env['KILOWATCH_MQTT_PREFIX']}/{site.serial}/schedule"
    waiting = {"revision": 12, "timezone": site.timezone, "default_mode": "idle"}
    publisher = Publisher()
    try:  # retained before the device connects: the broker hands it over on subscribe
        publisher.publish(topic, json.dumps(waiting).encode(), retain=True)
    finally:
        publisher.client.disconnect()
        publisher.client.loop_stop()
    flags = ["--ignore-schedules"] if ignore else []
    result = run_simulate(kw_env, "--sites", "1", "--seed", "32", "--serial-prefix", "RET",
                          "--interval", "0.2", "--duration", "1", "--fault-rate", "0", *flags)
    assert result.returncode == 0, result.stderr
    assert inbox.wait_for(lambda box: len(box.on("telemetry", site.serial)) >= 5)
    expected = [] if ignore else [{"revision": 12, "status": "applied"}]
    assert [{k: v for k, v in ack.items() if k != "ts"}
            for ack in inbox.on("schedule/ack", site.serial)] == expected


def test_two_simulated_devices_of_one_site_share_its_power_by_rating(kw_env, settings, conn,
                                                                     tmp_path):
    """An HES-L (50 kW) and an HES-XL (125 kW) on one site: 150 kW split 3:7 between them."""
    small, large = make_sites(2, seed=44, serial_prefix="MDV")
    assert (small.model, large.model) == ("HES-L", "HES-XL")
    company = fleet.create_company(conn, ROOT, "Shared Power")
    site_id = fleet.create_site(conn, ROOT, company_id=company, name="Two cabinets",
                                timezone="Europe/Berlin")
    ids = {spec.serial: fleet.register_device(conn, ROOT, site_id=site_id, serial=spec.serial,
                                              model=spec.model) for spec in (small, large)}
    site_power = 150.0  # more than either device's rating, within the site's 175 kW
    body = {"timezone": "Europe/Berlin", "default_mode": "idle",
            "periods": [{"days": list(schedules.DAYS), "start": "00:00", "end": "24:00",
                         "mode": "discharge", "power_kw": site_power, "soc_min": 5}]}
    log = (tmp_path / "simulate.log").open("w")
    process = subprocess.Popen(
        simulate_command("--sites", "2", "--seed", "44", "--serial-prefix", "MDV",
                         "--interval", "0.5", "--fault-rate", "0", "--duration", "300"),
        env={**os.environ, **kw_env}, stdout=log, stderr=subprocess.STDOUT)
    try:
        with running_collector(kw_env):
            revision, result = schedule_delivery.save_and_publish(
                conn, ROOT, site_id, body, comment="both cabinets", settings=settings)
            assert result.ok and set(result.published) == set(ids)
            state = wait_for(lambda: (rows := schedule_store.delivery_state(conn, ROOT, site_id))
                             and all(r["status"] == "applied" for r in rows) and rows,
                             what="both devices applying the revision", timeout_s=30)
            assert schedule_store.describe_delivery(state, "Europe/Berlin") == (
                f"applied revision {revision['revision']}")
            acked = max(r["acked_at"] for r in state)
            runs = {serial: wait_for(lambda d=device: stored_power(conn, d, acked)[4:],
                                     what=f"telemetry of {serial} after the acks")
                    for serial, device in ids.items()}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (tmp_path / "simulate.log").read_text()
        log.close()
        schedule_delivery.publish_retained(
            [(schedule_delivery.schedule_topic(s, settings), "") for s in ids], settings=settings)
    for spec in (small, large):
        share = round(site_power * spec.rated_power_kw / 175.0, 2)  # 42.86 and 107.14 kW
        assert all(p == pytest.approx(share, abs=1e-3) for p, _ in runs[spec.serial])
