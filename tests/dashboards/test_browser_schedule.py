"""Browser journeys on the schedule page, with every piece real.

``kilowatch web`` (gunicorn), the collector, the broker and ``kilowatch simulate``
(whose devices follow the schedules they receive and acknowledge them) run as
processes. To see a revision pending before the device answers, the test holds
the simulator still (SIGSTOP: a device busy for a few seconds, well within its
MQTT keep-alive) while saving, then lets it go on (SIGCONT); it reads the
schedule, applies it and acknowledges it, and the page shows it applied.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import signal
import subprocess
import sys

import psycopg
import pytest
from playwright.sync_api import expect

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store
from simulator.sites import make_sites
from tests.collector.helpers import running_collector, wait_for
from tests.dashboards.conftest import browser_login
from tests.dashboards.schedule_helpers import callback_body, draft_values

pytestmark = pytest.mark.browser

ROOT = system_scope("test")
SCREENSHOTS = "/tmp/kilowatch-screenshots"
SEED = 7
BODY = {"timezone": "Europe/Paris", "default_mode": "self_consumption",
        "default_params": {"soc_min": 10, "soc_max": 95},
        "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00",
                     "end": "21:00", "mode": "discharge", "power_kw": 40, "soc_min": 20},
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "01:00",
                     "end": "05:00", "mode": "charge", "power_kw": 25, "soc_max": 90},
                    {"days": ["sat", "sun"], "start": "11:00", "end": "15:00",
                     "mode": "peak_shaving", "grid_limit_kw": 20, "soc_min": 15}],
        "exceptions": []}


class Simulator:
    """``kilowatch simulate`` for one device, in its own process."""

    def __init__(self, kw_env: dict, prefix: str, log_path) -> None:
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "kilowatch", "simulate", "--sites", "1", "--seed",
                   str(SEED), "--serial-prefix", prefix, "--interval", "1", "--backfill", "2",
                   "--backfill-interval", "300", "--fault-rate", "0"]
        self.process = subprocess.Popen(command, env={**os.environ, **kw_env},
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def hold(self) -> None:
        """Freeze the device: it answers nothing until released."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def release(self) -> None:
        """Let the device go on."""
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the simulator cleanly (it publishes its offline status)."""
        if self.process.poll() is None:
            self.release()
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _delivered(conn, site_id: int, revision: int) -> bool:
    state = schedule_store.delivery_state(conn, ROOT, site_id)
    return bool(state) and state[0]["revision"] == revision and state[0]["status"] == "applied"


@pytest.fixture(scope="module")
def device_site(tenants, settings, kw_env, tmp_path_factory):
    """Company A's first site with a simulated storage device, the collector, and revision 1."""
    prefix = f"BRS{secrets.token_hex(3)}"
    spec = make_sites(1, seed=SEED, serial_prefix=prefix)[0]  # the device simulate will run
    site_id = tenants.a.sites[0]
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        fleet.register_device(conn, ROOT, site_id=site_id, serial=spec.serial, model=spec.model,
                              rated_power_kw=spec.rated_power_kw,
                              capacity_kwh=spec.capacity_kwh)
        schedule_delivery.save_and_publish(conn, ROOT, site_id, BODY, comment="winter program",
                                           settings=settings)
        with running_collector(kw_env):
            simulator = Simulator(kw_env, prefix, tmp_path_factory.mktemp("sim") / "log")
            try:
                wait_for(lambda: _delivered(conn, site_id, 1), what="the device to apply rev 1")
                yield {"id": site_id, "serial": spec.serial, "simulator": simulator}
            finally:
                simulator.stop()
                schedule_delivery.publish_retained(
                    [(schedule_delivery.schedule_topic(spec.serial, settings), "")],
                    settings=settings)


def _cell(page, kind: str, field: str, index: int):
    return page.locator(f"""[id='{{"index":{index},"type":"schedule-{kind}-{field}"}}']""")


def _delivery(page):
    return page.locator("#schedule-delivery-text")


def test_operator_moves_mondays_discharge_and_sees_it_applied(live_server, browser, tenants,
                                                              device_site, conn):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    browser_login(page, live_server, tenants.a.operator.email, tenants.a.operator.password)
    page.goto(f"{live_server}/site/{device_site['id']}")
    page.click("#site-schedule-link")
    page.wait_for_url(f"**/site/{device_site['id']}/schedule")
    page.get_by_text("Applied revision 1").wait_for()
    page.locator("#schedule-preview-graph").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-editor.png", full_page=True)

    # The first rows are Monday's: 01:00–05:00 charge, then 17:00–21:00 discharge.
    expect(_cell(page, "period", "day", 1)).to_have_value("mon")
    expect(_cell(page, "period", "mode", 1)).to_have_value("discharge")
    _cell(page, "period", "start", 1).fill("18:00")
    _cell(page, "period", "end", 1).fill("22:30")
    _cell(page, "period", "end", 1).press("Tab")
    _cell(page, "period", "power_kw", 1).fill("45")
    _cell(page, "period", "power_kw", 1).press("Tab")
    device_site["simulator"].hold()  # the device will answer when the test lets it
    page.fill("#schedule-comment", "Monday evening peak moved to 18:00–22:30")
    page.click("#schedule-save")
    page.locator("#schedule-saved").wait_for()
    page.get_by_text("Revision 2 pending since").wait_for()
    page.locator("#schedule-history-table").get_by_text(
        "Monday evening peak moved to 18:00–22:30").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-pending.png", full_page=True)

    device_site["simulator"].release()
    page.get_by_text("Applied revision 2").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-applied.png", full_page=True)
    latest = schedule_store.get_revision(conn, ROOT, device_site["id"])
    assert latest["revision"] == 2 and latest["author"] == tenants.a.operator.email
    monday = [(p["start"], p["end"], p["mode"], p.get("power_kw"))
              for p in latest["body"]["periods"] if "mon" in p["days"]]
    assert sorted(monday) == [("01:00", "05:00", "charge", 25),
                              ("18:00", "22:30", "discharge", 45)]
    tuesday = [p for p in latest["body"]["periods"] if "tue" in p["days"]
               and p["mode"] == "discharge"]
    assert tuesday[0]["start"] == "17:00" and tuesday[0]["days"] == ["tue", "wed", "thu", "fri"]
    diff = page.locator("#schedule-diff-lines")
    expect(diff).to_contain_text("18:00–22:30")

    # The operator's browser session forging a save for a site they are not granted.
    other = tenants.a.sites[1]
    forged = page.request.post(f"{live_server}/_dash-update-component",
                               data=_forged_save(page, live_server, other))
    assert forged.status == 204
    assert schedule_store.latest_revision(conn, ROOT, other) is None
    context.close()


def _forged_save(page, base_url: str, site_id: int) -> dict:
    """The page's save callback as the browser would post it, for another site."""
    dependencies = page.request.get(f"{base_url}/_dash-dependencies").json()
    entry = next(e for e in dependencies if "schedule-message.children" in e["output"])
    values = {**draft_values(site_id, BODY), "schedule-save.n_clicks": 1}
    return callback_body(entry["output"], entry, values, triggered="schedule-save.n_clicks")


def test_operator_copies_a_day_and_adds_an_exception(live_server, browser, tenants,
                                                      device_site, conn):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    browser_login(page, live_server, tenants.a.operator.email, tenants.a.operator.password)
    page.goto(f"{live_server}/site/{device_site['id']}/schedule")
    page.locator("#schedule-delivery-text").wait_for()
    before = schedule_store.get_revision(conn, ROOT, device_site["id"])["revision"]

    page.select_option("#schedule-copy-from", "tue")
    page.get_by_label("Sat", exact=True).check()
    page.click("#schedule-copy")
    saturday = page.locator("select[id*='schedule-period-day']").locator("option:checked")
    page.wait_for_function("""() => [...document.querySelectorAll(
        "select[id*='schedule-period-day']")].filter(s => s.value === 'sat').length === 2""")
    assert saturday.count() == 13  # Mon–Fri 2 rows each, Sat 2 copied, Sun 1

    page.click("#schedule-add-exception")
    _cell(page, "exception", "date", 0).wait_for()
    _cell(page, "exception", "date", 0).fill("2020-01-01")
    page.get_by_text("This date is in the past").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-exception-error.png", full_page=True)
    holiday = schedules.local_today("Europe/Paris") + dt.timedelta(days=30)
    _cell(page, "exception", "date", 0).fill(holiday.isoformat())
    _cell(page, "exception", "name", 0).fill("Maintenance")
    _cell(page, "exception", "name", 0).press("Tab")
    page.wait_for_function("() => !document.querySelector('#schedule-error-summary')")
    page.fill("#schedule-comment", "Saturday like Tuesday; maintenance day")
    page.click("#schedule-save")
    page.get_by_text(f"Saved revision {before + 1}").wait_for()
    page.get_by_text(f"Applied revision {before + 1}").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-exception.png", full_page=True)
    latest = schedule_store.get_revision(conn, ROOT, device_site["id"])
    assert latest["revision"] == before + 1
    assert latest["body"]["exceptions"] == [
        {"date": holiday.isoformat(), "name": "Maintenance", "periods": []}]
    saturday_periods = sorted((p["start"], p["mode"]) for p in latest["body"]["periods"]
                              if "sat" in p["days"])
    assert saturday_periods == [("01:00", "charge"), ("17:00", "discharge")]
    context.close()


def test_viewer_sees_the_editor_read_only(live_server, browser, tenants, device_site):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    browser_login(page, live_server, tenants.a.viewer.email, tenants.a.viewer.password)
    page.goto(f"{live_server}/site/{device_site['id']}/schedule")
    page.locator("#schedule-read-only").wait_for()
    page.locator("#schedule-delivery-text").wait_for()
    assert page.locator("#schedule-save").count() == 0
    assert page.locator("#schedule-add-period").count() == 0
    assert _cell(page, "period", "start", 0).is_disabled()
    assert _cell(page, "period", "mode", 0).is_disabled()
    assert page.locator("#schedule-default-mode").is_disabled()
    page.locator("#schedule-history-table").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-viewer.png", full_page=True)
    assert page.locator("#schedule-error-summary").count() == 0
    context.close()
