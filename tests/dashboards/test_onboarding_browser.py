"""Browser journey: a superadmin onboards a new company from nothing to an issued commissioning
report, with every service real (web app, collector, worker, broker over TLS, SMTP).

The superadmin creates the company, its site, its device and its first admin in the
admin pages; the admin follows the invitation link the SMTP server received, chooses a
password and turns on alarm e-mails; the device (``kilowatch simulate``) activates with
the code the page showed, connects to the TLS broker and sends data; the site gets a
tariff and a schedule through the CLI; the checklist turns complete, the admin issues
the report, and another company's admin is not allowed to read it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kilowatch.commands import demo_fleet
from simulator.sites import make_site
from tests.auth.mail import link_of
from tests.collector.helpers import running_collector
from tests.conftest import wait_for
from tests.dashboards.conftest import browser_login
from tests.simulator.conftest import clear_retained

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(tempfile.gettempdir()) / "kilowatch-screenshots" / "onboarding"
COMPANY = "Onboarded Storage Ltd"
DEVICE = make_site(1, seed=1, serial_prefix="ONB")  # what `kilowatch simulate` will run
SITE = "Harbour warehouse"
ADMIN = "first.admin@onboarded.example.com"
ADMIN_PASSWORD = "a long password chosen by the admin"
COMMENT = "Battery handed over to the harbour team; fire extinguisher checked."


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _kilowatch(env: dict, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "kilowatch", *args], env=env, input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def services(kw_env, smtp, live_server):
    """The collector and a worker (broker accounts, e-mail outbox) on this module's services."""
    env = {**os.environ, **kw_env, "KILOWATCH_SMTP_URL": smtp.url,
           "KILOWATCH_BASE_URL": live_server}
    worker = subprocess.Popen(
        [sys.executable, "-m", "kilowatch", "worker", "--job", "broker-devices", "--job",
         "broker-reconcile", "--job", "outbox"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        with running_collector(kw_env):
            yield env
    finally:
        worker.terminate()
        worker.wait(30)


@pytest.fixture
def device(services, tmp_path):
    """Start the device once its code is known: ``start(code)``; stopped after the test."""
    processes: list[subprocess.Popen] = []

    def start(code: str) -> None:
        # The equipment keeps the code its installer typed in; no test bench login.
        state = tmp_path / "device.json"
        state.write_text(json.dumps({DEVICE.serial: {"activation_code": code}}))
        env = {key: value for key, value in services.items()
               if key != "KILOWATCH_SIMULATOR_MQTT_URL"}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "kilowatch", "simulate", "--sites", "1", "--seed", "1",
             "--serial-prefix", "ONB", "--interval", "2", "--fault-rate", "0",
             "--state", str(state)], env=env, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "simulate.log", "w")))  # noqa: SIM115

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)
    clear_retained(services["KILOWATCH_MQTT_PREFIX"])  # the schedule it was sent


def _create_company(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/companies")
    page.fill("#admin-companies-name", COMPANY)
    page.click("#admin-companies-create")
    page.get_by_text(f"Company {COMPANY} created.").wait_for()
    page.locator("#admin-companies-table").get_by_text(COMPANY).wait_for()
    _shot(page, "01-company")


def _create_site(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/sites")
    page.select_option("#admin-sites-company", label=COMPANY)
    page.fill("#admin-sites-name", SITE)
    page.fill("#admin-sites-address", "1 Quay Street, Madrid")
    page.fill("#admin-sites-latitude", f"{DEVICE.latitude}")
    page.fill("#admin-sites-longitude", f"{DEVICE.longitude}")
    page.fill("#admin-sites-timezone", DEVICE.timezone)
    page.click("#admin-sites-create")
    page.get_by_text(f"Site {SITE} created.").wait_for()
    _shot(page, "02-site")


def _register_device(page, base_url: str) -> str:
    page.goto(f"{base_url}/admin/devices")
    page.select_option("#admin-devices-company", label=COMPANY)
    page.locator("#admin-devices-site-id option", has_text=SITE).wait_for(state="attached")
    page.select_option("#admin-devices-site-id", label=SITE)
    page.fill("#admin-devices-serial", DEVICE.serial)
    page.select_option("#admin-devices-model", DEVICE.model)
    page.fill("#admin-devices-rated-power-kw", f"{DEVICE.rated_power_kw:g}")
    page.fill("#admin-devices-capacity-kwh", f"{DEVICE.capacity_kwh:g}")
    page.click("#admin-devices-register")
    code = page.locator("#admin-devices-code")
    code.wait_for()
    _shot(page, "03-device-code")
    return code.inner_text().strip()


def _invite_admin(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/users")
    page.select_option("#admin-users-company", label=COMPANY)
    page.fill("#admin-users-email", ADMIN)
    page.fill("#admin-users-name", "First Admin")
    page.select_option("#admin-users-new-role", "admin")
    page.click("#admin-users-create")
    page.get_by_text(f"{ADMIN} created.").wait_for()
    page.locator("#admin-users-list tr", has_text=ADMIN).get_by_text("invited").wait_for()
    _shot(page, "04-admin-invited")


def _accept_invitation(page, base_url: str, smtp) -> None:
    """Follow the e-mailed link (sent by the worker's outbox job), choose a password, sign in."""
    [message] = wait_for(lambda: smtp.to(ADMIN), what="the invitation e-mail", timeout_s=60)
    link = link_of(message)
    assert link.startswith(base_url)
    page.goto(link)
    page.fill("#new", ADMIN_PASSWORD)
    page.fill("#confirm", ADMIN_PASSWORD)
    _shot(page, "05-choose-password")
    page.click("#new-password-submit")
    page.wait_for_url("**/login?password_set=1")
    browser_login(page, base_url, ADMIN, ADMIN_PASSWORD)
    assert "/login" not in page.url


def _turn_on_alarm_emails(page, base_url: str) -> None:
    page.goto(f"{base_url}/account/notifications")
    page.locator("#notify-enabled").check()
    page.click("#notify-save")
    page.get_by_text("Saved.").wait_for()
    _shot(page, "06-alarm-emails")


def _set_tariff_and_schedule(env: dict, site_id: int) -> None:
    _kilowatch(env, *demo_fleet.tariff_import_args(COMPANY))
    yesterday = dt.date.today() - dt.timedelta(days=1)
    _kilowatch(env, "tariff", "assign", "--site", str(site_id), "--tariff",
               demo_fleet.TARIFF_NAME, "--from", yesterday.isoformat())
    schedule = demo_fleet.schedule_for("self-consumption", {
        "timezone": DEVICE.timezone, "rated_power_kw": DEVICE.rated_power_kw,
        "capacity_kwh": DEVICE.capacity_kwh})
    _kilowatch(env, "schedule", "set", "--site", str(site_id), "--file", "-", "--comment",
               "Commissioning", stdin=json.dumps(schedule))


def _issue_report(page, base_url: str, site_id: int) -> str:
    page.goto(f"{base_url}/site/{site_id}/commissioning")
    # The checklist refreshes every 10 s: wait until the device's data and acks show.
    page.get_by_text("Checklist: 8 of 8 done — ready to hand over").wait_for(timeout=120_000)
    _shot(page, "07-checklist-complete")
    page.fill("#commissioning-comment", COMMENT)
    page.click("#commissioning-issue")
    page.get_by_text("Report v1 issued and queued to 1 admin(s).").wait_for()
    pdf = page.locator("#commissioning-pdf-1")
    pdf.wait_for()
    _shot(page, "08-report-issued")
    return pdf.get_attribute("href")


def test_superadmin_onboards_a_company_until_its_report_is_issued(
        live_server, services, device, browser, tenants, conn, smtp):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    staff = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = staff.new_page()
    page.set_default_timeout(20_000)
    browser_login(page, live_server, tenants.superadmin.email, tenants.superadmin.password)
    _create_company(page, live_server)
    _create_site(page, live_server)
    code = _register_device(page, live_server)
    _invite_admin(page, live_server)
    site_id = conn.execute("SELECT id FROM sites WHERE name = %s", (SITE,)).fetchone()["id"]

    # The device activates over the web app with the code shown, then speaks over TLS.
    device(code)
    wait_for(lambda: conn.execute("SELECT activated_at FROM devices WHERE serial = %s",
                                  (DEVICE.serial,)).fetchone()["activated_at"],
             what="the device's activation")
    page.goto(f"{live_server}/admin/devices")
    page.select_option("#admin-devices-company", label=COMPANY)
    page.locator(f"#admin-devices-row-{DEVICE.serial} .kw-device-state", has_text="activated"
                 ).wait_for()
    _shot(page, "09-device-activated")
    staff.close()

    admin = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = admin.new_page()
    page.set_default_timeout(20_000)
    _accept_invitation(page, live_server, smtp)
    _turn_on_alarm_emails(page, live_server)
    _set_tariff_and_schedule(services, site_id)
    pdf_path = _issue_report(page, live_server, site_id)

    stored = wait_for(lambda: conn.execute(
        "SELECT count(*) AS n FROM telemetry t JOIN devices d ON d.id = t.device_id "
        "WHERE d.serial = %s", (DEVICE.serial,)).fetchone()["n"], what="telemetry stored")
    assert stored > 0
    download = page.request.get(f"{live_server}{pdf_path}")
    assert download.status == 200 and download.headers["content-type"] == "application/pdf"
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=download.body(),
                          capture_output=True, check=True).stdout.decode()
    assert DEVICE.serial in text and ADMIN in text
    assert COMMENT in " ".join(text.split())
    (SCREENSHOTS / "report.txt").write_text(text)
    for action in ("company.create", "site.create", "device.register", "device.activate",
                   "user.create", "user.accept_invitation", "notifications.update",
                   "site.tariff.assign", "schedule.save"):
        assert action in text, action
    # The worker's outbox e-mails the same PDF to the company's admin.
    mails = wait_for(lambda: smtp.to(ADMIN)[1:], what="the report e-mail", timeout_s=60)
    attached = [part.get_content() for part in mails[0].iter_attachments()]
    assert attached == [download.body()]
    admin.close()

    # Another company's admin: the same URL answers 403 with the "not allowed" page.
    other = browser.new_context()
    page = other.new_page()
    browser_login(page, live_server, tenants.b.admin.email, tenants.b.admin.password)
    refused = page.request.get(f"{live_server}{pdf_path}")
    assert refused.status == 403
    assert "Not allowed" in refused.text() and "%PDF" not in refused.text()
    page.goto(f"{live_server}{pdf_path}")
    page.get_by_text("Not allowed").first.wait_for()
    _shot(page, "10-other-company-not-allowed")
    other.close()
