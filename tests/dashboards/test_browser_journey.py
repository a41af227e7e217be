"""Browser journey: a viewer follows a simulated site live, looks back 30 days, exports a CSV.

Real processes on this module's services: ``kilowatch web`` (``live_server``),
``kilowatch collector``, ``kilowatch simulate --register`` and one
``kilowatch worker --once --job rollups``; headless Chromium drives the pages.
No fixed sleeps: the simulator starts once the collector's metrics say it is
connected, and the export waits until the device's final "offline" status
(sent after its last telemetry) is stored.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from kilowatch.access import system_scope
from kilowatch.accounts import groups
from simulator.sites import make_sites
from tests.collector.helpers import CollectorProcess
from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp/kilowatch-screenshots")
SEED, PREFIX = 5, "JRN"
EXPORTED = ["bms.soc", "meter.grid.p", "meter.load.p", "meter.pv.p", "pcs.p"]


def _kilowatch(kw_env, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "kilowatch", *args],
                            env={**os.environ, **kw_env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until(condition, timeout_s: float = 90.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def simulated_site(kw_env, settings, tenants, tmp_path_factory):
    """A simulated site of company A, granted to A's viewer, publishing every 2 s."""
    # start() returns once /metrics shows kilowatch_collector_broker_connected 1:
    # subscribed before the device speaks.
    collector = CollectorProcess(
        kw_env, log_path=tmp_path_factory.mktemp("journey") / "collector.log").start()
    simulator = _kilowatch(kw_env, "simulate", "--register", "--company", tenants.a.name,
                           "--sites", "1", "--seed", str(SEED), "--serial-prefix", PREFIX,
                           "--backfill", "2", "--interval", "2", "--fault-rate", "0")
    spec = make_sites(1, SEED, PREFIX)[0]
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        device = _wait_until(lambda: conn.execute(
            "SELECT d.id, d.site_id FROM devices d WHERE serial = %s", (spec.serial,)
        ).fetchone(), what="the simulated device's registration")
        groups.grant_site(conn, system_scope("test"), tenants.a.group_id, device["site_id"])
        _wait_until(lambda: conn.execute(  # live samples come after the backfilled ones
            "SELECT max(time) > now() - interval '30 seconds' AS ok FROM telemetry "
            "WHERE device_id = %s", (device["id"],)).fetchone()["ok"],
            what="the backfilled history to arrive")
    worker = subprocess.run([sys.executable, "-m", "kilowatch", "worker", "--once", "--job",
                             "rollups"], env={**os.environ, **kw_env}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert worker.returncode == 0, worker.stderr
    yield {"name": spec.name, "device_id": device["id"], "site_id": device["site_id"],
           "timezone": spec.timezone, "simulator": simulator, "collector": collector}
    _stop(simulator)
    collector.stop()


def _text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def test_viewer_follows_a_live_site_then_exports_thirty_days(live_server, browser, tenants,
                                                            simulated_site, settings, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    browser_login(page, live_server, tenants.a.viewer.email, tenants.a.viewer.password)

    # The fleet lists exactly the granted sites.
    sites = page.locator("#fleet-grid .kw-cell-site")
    page.get_by_text(simulated_site["name"]).wait_for()
    assert sorted(sites.all_inner_texts()) == sorted(["Company A site 1", simulated_site["name"]])
    page.screenshot(path=str(SCREENSHOTS / "journey-fleet.png"), full_page=True)

    # A click opens the site; the live tiles follow the simulator.
    page.get_by_text(simulated_site["name"]).click()
    page.wait_for_url(f"**/site/{simulated_site['site_id']}")
    updated = page.locator("#site-live-updated")
    _wait_until(lambda: "last data" in updated.inner_text(), 30, "live values")
    first = updated.inner_text()
    _wait_until(lambda: updated.inner_text() != first, 30, "the live values to change")
    assert _text(page, "#site-tile-load").endswith("kW")
    assert page.locator("#site-live-devices").get_by_text("Online").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "journey-site-live.png"), full_page=True)

    # 30 days: drawn hour by hour from the hourly rollup, with data in it.
    page.locator("label", has_text="30 days").click()
    page.get_by_text("Resolution: 1 h").wait_for()
    page.locator("#site-power-graph .scatterlayer .trace").first.wait_for()
    assert page.locator("#site-power-graph .legendtext").all_text_contents() == [
        "PV", "Consumption", "Grid (+ import)", "Battery (+ discharge)"]
    page.screenshot(path=str(SCREENSHOTS / "journey-site-30-days.png"), full_page=True)

    # The shared range picker shows its day picker for "Custom" only.
    custom_days = page.locator("#site-custom-col")
    assert not custom_days.is_visible()
    page.locator("label", has_text="Custom").click()
    custom_days.wait_for(state="visible")
    page.locator("label", has_text="30 days").click()
    custom_days.wait_for(state="hidden")

    # Stop the device so that the database holds still, then export raw samples. Its last
    # message is the "offline" status: once that is stored, so is every sample before it.
    _stop(simulated_site["simulator"])
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        _wait_until(lambda: not conn.execute("SELECT online FROM devices WHERE id = %s", (
            simulated_site["device_id"],)).fetchone()[0], 30, "the device's offline status")
    collector = simulated_site["collector"]
    _wait_until(lambda: collector.metric("kilowatch_collector_backlog_messages") == 0, 30,
                "the collector's backlog to drain")
    page.get_by_role("tab", name="Export").click()
    page.locator("label", has_text="Raw samples").click()
    link = page.locator("#site-export-csv")
    # The link's href is set by a callback: wait for it to follow the choice.
    _wait_until(lambda: "resolution=raw" in (link.get_attribute("href") or ""), 30,
                "the export link to ask for raw samples")
    assert "range=30d" in link.get_attribute("href")
    with page.expect_download() as download_info:
        page.click("#site-export-csv")
    path = tmp_path / "export.csv"
    download_info.value.save_as(path)
    page.screenshot(path=str(SCREENSHOTS / "journey-export.png"), full_page=True)
    context.close()

    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    serial = f"{PREFIX}-0001"
    units = {"bms.soc": "%", "meter.grid.p": "kW", "meter.load.p": "kW", "meter.pv.p": "kW",
             "pcs.p": "kW"}
    assert rows[0] == [f"time ({simulated_site['timezone']})",
                       *(f"{serial} {p} ({units[p]})" for p in EXPORTED)]
    with psycopg.connect(settings.database_url, row_factory=psycopg.rows.dict_row) as conn:
        stored = conn.execute(
            "SELECT t.time, p.name, t.value FROM telemetry t JOIN points p ON p.id = t.point_id "
            "WHERE t.device_id = %s AND p.name = ANY(%s) ORDER BY t.time",
            (simulated_site["device_id"], EXPORTED)).fetchall()
    # Every stored row (two days of backfill, then live ones; the simulator is stopped and
    # the collector drained) lies inside the 30 days: the export must hold all of them.
    expected: dict[datetime, list[str]] = {}
    for row in stored:
        values = expected.setdefault(row["time"], [""] * len(EXPORTED))
        values[EXPORTED.index(row["name"])] = repr(row["value"])
    exported = {datetime.fromisoformat(r[0]): r[1:] for r in rows[1:]}
    assert len(exported) > 2 * 24 * 60  # two days of minute samples, then live ones
    assert exported == expected
