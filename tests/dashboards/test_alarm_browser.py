"""Browser journey: support filters the alarm history to one site's critical alarms of last
week, opens one, sees its chart and timeline, and acknowledges it with a comment."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import expect

from tests.dashboards import alarm_seed
from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp/kilowatch-screenshots")


@pytest.fixture(scope="module")
def seeded(tenants, settings):
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        return alarm_seed.seed_alarms(conn, tenants, prefix="BRW")


def _grid_rows(page, grid: str):
    return page.locator(f"#{grid} .ag-center-cols-container .ag-row")


def test_support_filters_history_opens_and_acknowledges_an_alarm(page, live_server, tenants,
                                                                   seeded, settings):
    SCREENSHOTS.mkdir(exist_ok=True)
    browser_login(page, live_server, tenants.support.email, tenants.support.password)
    expect(page.locator("#nav-alarms-critical")).to_have_text("2")  # A2 and B1, active

    page.goto(f"{live_server}/alarm-history")
    rows = _grid_rows(page, "alarm-history-grid")
    rows.first.wait_for()
    page.select_option("#alarm-history-site", label="Company A site 1 (Company A)")
    page.locator("#alarm-history-severity label", has_text="Critical").click()
    page.wait_for_function("() => document.querySelectorAll('#alarm-history-grid "
                           ".ag-center-cols-container .ag-row').length === 1")
    expect(rows.first).to_contain_text("BMS_OVERTEMP")
    expect(page.locator("#alarm-history-count")).to_contain_text("1 alarms")
    page.screenshot(path=str(SCREENSHOTS / "alarm-history.png"), full_page=True)

    rows.first.locator("[col-id='message']").click()
    page.wait_for_url(re.compile(rf".*/alarms/{seeded.critical_a1}$"))
    page.locator("#alarm-chart .scatterlayer .trace").first.wait_for()
    assert page.locator("#alarm-chart .scatterlayer .trace").count() >= 2
    timeline = page.locator("#alarm-timeline-list li")
    kinds = [text.split("\n")[1].split(" · ")[0] for text in timeline.all_inner_texts()]
    assert kinds == ["Raised", "Cleared"]
    expect(page.locator("#alarm-ack-status")).to_have_text("Not acknowledged")

    page.fill("#alarm-comment", "Cooling checked on site, cells back to 31 °C")
    page.click("#alarm-ack")
    page.locator("#alarm-ack-status", has_text="Acknowledged by").wait_for()
    assert tenants.support.email in page.locator("#alarm-ack-status").inner_text()
    page.locator("#alarm-timeline-list", has_text="Cooling checked on site").wait_for()
    assert page.locator("#alarm-ack").is_disabled()
    page.screenshot(path=str(SCREENSHOTS / "alarm-page.png"), full_page=True)

    with psycopg.connect(settings.database_url, row_factory=psycopg.rows.dict_row) as conn:
        alarm = conn.execute("SELECT acknowledged_by FROM alarms WHERE id = %s",
                             (seeded.critical_a1,)).fetchone()
    assert alarm["acknowledged_by"] == tenants.support.email
