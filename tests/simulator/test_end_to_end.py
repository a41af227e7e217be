"""The simulator against the real platform: the collector stores everything it sends."""

from __future__ import annotations

import os
import secrets
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.telemetry import energy
from simulator.sites import make_sites
from tests.conftest import collector_ready, wait_for
from tests.simulator.conftest import run_simulate

SERIALS = ("E2E-0001", "E2E-0002")


@pytest.fixture
def collector(kw_env):
    """``kilowatch collector`` as a real process on this module's services."""
    process = subprocess.Popen(
        ["kilowatch", "collector", "--client-id", f"kwtest-sim-{secrets.token_hex(4)}",
         "--session-expiry", "300"],
        env={**os.environ, **kw_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Subscribed before the devices speak.
    wait_for(lambda: collector_ready(kw_env["KILOWATCH_METRICS_PORT"], process),
             what="the collector to subscribe")
    yield process
    process.terminate()
    process.wait(30)


def stored_values(conn, device_ids: list[int]) -> int:
    """Raw telemetry rows of some devices."""
    return conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = ANY(%s)",
                        (device_ids,)).fetchone()["n"]


def test_the_collector_stores_every_value_alarm_and_gap_the_simulator_sends(
        kw_env, inbox, conn, collector):
    started = datetime.now(UTC)
    result = run_simulate(kw_env, "--register", "--sites", "2", "--seed", "21",
                          "--serial-prefix", "E2E", "--backfill", "0.1", "--duration", "4",
                          "--interval", "0.2", "--fault-rate", "10", "--drop-rate", "0.3",
                          "--extra-points", "4")
    assert result.returncode == 0, result.stderr
    devices = {row["serial"]: row for row in conn.execute(
        "SELECT * FROM devices WHERE serial = ANY(%s)", (list(SERIALS),)).fetchall()}
    assert set(devices) == set(SERIALS)
    ids = [row["id"] for row in devices.values()]

    published = sum(len(sample["v"]) for message in inbox.on("telemetry")
                    for sample in message["samples"])
    wait_for(lambda: stored_values(conn, ids) == published,
             what=f"all {published} values stored")
    assert conn.execute("SELECT count(*) AS n FROM dead_letters").fetchone()["n"] == 0

    for site in make_sites(2, seed=21, serial_prefix="E2E"):
        device = devices[site.serial]
        sent = {m["seq"] for m in inbox.on("telemetry", site.serial)}
        missing = set(range(1, max(sent) + 1)) - sent
        assert missing, "a drop rate of 0.3 over ~20 messages skips some"
        gaps = conn.execute("SELECT first_missing, last_missing FROM seq_gaps "
                            "WHERE device_id = %s", (device["id"],)).fetchall()
        recorded = {n for gap in gaps for n in range(gap["first_missing"],
                                                      gap["last_missing"] + 1)}
        assert recorded == missing, site.serial
        raised = {a["code"] for a in inbox.on("alarms", site.serial) if a["state"] == "raised"}
        stored = {row["code"] for row in conn.execute(
            "SELECT code FROM alarms WHERE device_id = %s AND source = 'device'",
            (device["id"],)).fetchall()}
        assert stored == raised, site.serial
        refreshed = wait_for(lambda d=device: conn.execute(
            "SELECT firmware, online FROM devices WHERE id = %s AND NOT online",
            (d["id"],)).fetchone(), what=f"{site.serial} offline", timeout_s=20)
        assert refreshed == {"firmware": site.firmware, "online": False}

    site_id = devices["E2E-0001"]["site_id"]
    report = energy.site_energy(conn, system_scope(), site_id,
                                started - timedelta(days=0.2), datetime.now(UTC) + timedelta(
                                    minutes=15), step="day")
    total = {q: sum(i.kwh[q] or 0 for i in report.intervals) for q in energy.QUANTITIES}
    assert total["load"] > 0
    balance = (total["grid_import"] - total["grid_export"] + total["pv"]
               + total["battery_discharge"] - total["battery_charge"])
    assert balance == pytest.approx(total["load"], rel=1e-3, abs=0.05)
    assert [s["name"] for s in fleet.list_sites(conn, system_scope())] == sorted(
        s.name for s in make_sites(2, seed=21, serial_prefix="E2E"))
