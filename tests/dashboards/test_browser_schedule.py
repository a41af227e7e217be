"""Browser journey: an operator moves Monday's discharge window, saves it, and sees it applied.

Everything is real: ``kilowatch web`` (gunicorn), the collector, the broker and a
simulated storage device run by the simulator's runner. The simulator does not
follow schedules by itself yet, so the device gets a small controller here
(:class:`ScheduleFollower`, through the simulator's documented controller seam)
that does what the issue asks of a device: read ``…/schedule``, check it, run it
and answer on ``…/schedule/ack``. The test holds the answer back until it has
seen the revision pending in the page.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading

import psycopg
import pytest

from kilowatch import fleet, schedule_delivery, schedule_store, schedules
from kilowatch.access import system_scope
from simulator import runner
from simulator.controller import ConstantController
from simulator.link import MqttLink
from simulator.sites import make_sites
from tests.collector.helpers import running_collector, wait_for
from tests.dashboards.conftest import browser_login
from tests.dashboards.schedule_helpers import callback_body, draft_values

pytestmark = pytest.mark.browser

ROOT = system_scope("test")
SCREENSHOTS = "/tmp/kilowatch-screenshots"
BODY = {"timezone": "Europe/Paris", "default_mode": "self_consumption",
        "default_params": {"soc_min": 10, "soc_max": 95},
        "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00",
                     "end": "21:00", "mode": "discharge", "power_kw": 40, "soc_min": 20},
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "01:00",
                     "end": "05:00", "mode": "charge", "power_kw": 25, "soc_max": 90},
                    {"days": ["sat", "sun"], "start": "11:00", "end": "15:00",
                     "mode": "peak_shaving", "grid_limit_kw": 20, "soc_min": 15}],
        "exceptions": []}


class ScheduleFollower:
    """A device controller: runs the last valid schedule it received and acknowledges it."""

    def __init__(self, rated_power_kw: float) -> None:
        self.rated_power_kw = rated_power_kw
        self.schedule: dict | None = None
        self.answers = threading.Event()  # cleared: hold acknowledgements back
        self.answers.set()
        self.received: list[int] = []
        self._held: list[dict] = []
        self._lock = threading.Lock()
        self.link = None

    def attach(self, link) -> None:
        self.link = link
        link.subscribe("schedule", self._on_schedule)

    def _on_schedule(self, payload: bytes) -> None:
        if not payload:
            return
        message = json.loads(payload)
        self.received.append(message["revision"])
        with self._lock:
            self._held.append(message)
        self._answer()

    def _answer(self) -> None:
        if not self.answers.is_set():
            return
        with self._lock:
            held, self._held = self._held, []
        for message in held:
            body = {k: v for k, v in message.items() if k != "revision"}
            limits = schedules.SiteLimits(timezone=body.get("timezone", "UTC"),
                                          rated_power_kw=self.rated_power_kw)
            try:
                self.schedule = schedules.validate(body, limits)
                ack = {"revision": message["revision"], "status": "applied"}
            except schedules.ScheduleInvalid as invalid:
                ack = {"revision": message["revision"], "status": "rejected",
                       "reason": str(invalid)[:200]}
            self.link.publish("schedule/ack", ack)

    def mode_at(self, t):
        self._answer()  # answers held back are sent at the next step once allowed
        if self.schedule is None:
            return ConstantController().mode_at(t)
        setpoint = schedules.mode_at(self.schedule, t)
        return setpoint.mode, setpoint.params


@pytest.fixture(scope="module")
def device_site(tenants, settings, kw_env):
    """Company A's first site with a simulated storage device, the collector, and revision 1."""
    spec = make_sites(1, seed=7, serial_prefix=f"BRS{secrets.token_hex(3)}")[0]
    site_id = tenants.a.sites[0]
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        fleet.register_device(conn, ROOT, site_id=site_id, serial=spec.serial, model=spec.model,
                              rated_power_kw=spec.rated_power_kw,
                              capacity_kwh=spec.capacity_kwh)
        schedule_delivery.save_and_publish(conn, ROOT, site_id, BODY, comment="winter program",
                                           settings=settings)
    follower = ScheduleFollower(spec.rated_power_kw)
    options = runner.RunOptions(interval_s=1.0, backfill_days=2, backfill_interval_s=300,
                                fault_rate=0.0)
    stop = threading.Event()
    with running_collector(kw_env):
        link = MqttLink(url=settings.mqtt_url, prefix=settings.mqtt_prefix, serial=spec.serial,
                        firmware=spec.firmware)
        link.connect()
        devices = runner.make_devices([spec], [link], options, lambda _spec: follower)
        thread = threading.Thread(target=runner.run, args=(devices, options, stop), daemon=True)
        thread.start()
        try:
            yield {"id": site_id, "serial": spec.serial, "follower": follower}
        finally:
            stop.set()
            thread.join(30)
            link.close()
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
    assert _cell(page, "period", "day", 1).input_value() == "mon"
    assert _cell(page, "period", "mode", 1).input_value() == "discharge"
    _cell(page, "period", "start", 1).fill("18:00")
    _cell(page, "period", "end", 1).fill("22:30")
    _cell(page, "period", "end", 1).press("Tab")
    _cell(page, "period", "power_kw", 1).fill("45")
    _cell(page, "period", "power_kw", 1).press("Tab")
    device_site["follower"].answers.clear()  # the device will answer when the test says so
    page.fill("#schedule-comment", "Monday evening peak moved to 18:00–22:30")
    page.click("#schedule-save")
    page.locator("#schedule-saved").wait_for()
    page.get_by_text("Revision 2 pending since").wait_for()
    page.locator("#schedule-history-table").get_by_text(
        "Monday evening peak moved to 18:00–22:30").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/schedule-pending.png", full_page=True)

    device_site["follower"].answers.set()
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
    # The device now runs the new program.
    assert wait_for(lambda: device_site["follower"].schedule is not None and [
        p for p in device_site["follower"].schedule["periods"] if p["start"] == "18:00"],
        what="the device to follow revision 2", timeout_s=10)
    diff = page.locator("#schedule-diff-lines")
    diff.wait_for()
    assert "18:00–22:30" in diff.inner_text()

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
