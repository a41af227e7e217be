"""Browser journey: an admin imports a URDB tariff, assigns it to a site, sees the savings."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kilowatch.access import system_scope
from kilowatch.billing import savings
from tests.dashboards.conftest import browser_login
from tests.dashboards.savings_helpers import month_start, seed_energy

URDB = Path(__file__).resolve().parents[1] / "kilowatch" / "data" / "urdb_sunridge.json"
SHOTS = Path(os.environ.get("KILOWATCH_SCREENSHOTS", "/tmp/kilowatch-screenshots"))


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"savings-{name}.png"), full_page=True)


@pytest.fixture
def metered_site(conn, tenants):
    """A's first site with this month's metered energy up to the last quarter hour."""
    site_id = tenants.a.sites[0]
    now = datetime.now(UTC)
    start = month_start(now, "Europe/Paris")
    end = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    if end - start < timedelta(hours=1):  # first hour of a month: use the previous one
        start = month_start(start - timedelta(days=1), "Europe/Paris")
    seed_energy(conn, site_id, start, end)
    return site_id, start


@pytest.mark.browser
def test_admin_imports_urdb_assigns_it_and_sees_the_month_savings(live_server, page, tenants,
                                                                  metered_site, conn):
    site_id, start = metered_site
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    page.goto(f"{live_server}/admin/tariffs?site={site_id}")
    page.wait_for_selector("#tariffs-none")
    page.set_input_files("#tariffs-upload input[type=file]", str(URDB))
    page.wait_for_selector("text=Imported GS-TOU-2")
    # Functions, not bare expressions: Playwright evaluates those with eval(), which the
    # app's Content-Security-Policy refuses.
    page.wait_for_function(
        "() => document.querySelector('#tariffs-selected').selectedOptions[0]?.text"
        ".startsWith('GS-TOU-2')")
    page.wait_for_function(  # the grids are drawn with the imported tariff's four periods
        "() => document.querySelectorAll('#tariffs-paint-energy input').length == 4")
    _shot(page, "1-imported")

    first_day = start.astimezone(ZoneInfo("Europe/Paris")).date()
    page.fill("#tariffs-from", first_day.isoformat())
    page.select_option("#tariffs-site", str(site_id))
    page.click("#tariffs-assign")
    page.wait_for_selector("#tariffs-savings-link")
    page.wait_for_selector("#tariffs-history td:has-text('GS-TOU-2')")
    _shot(page, "2-assigned")

    page.click("#tariffs-savings-link")
    page.wait_for_selector("#savings-kpi-system", timeout=60_000)
    page.wait_for_selector("#savings-monthly .barlayer")
    page.wait_for_selector("#savings-peak-graph .scatterlayer")
    _shot(page, "3-savings")

    label = f"{first_day:%Y-%m}"
    assert page.input_value("#savings-month") == label
    summary = savings.month_summary(conn, system_scope("test"), site_id, label)
    shown = page.inner_text("#savings-kpi-system")
    assert shown == f"{summary['savings']['system']['total']:,.2f} USD"
    assert page.inner_text("#savings-kpi-actual") == (
        f"{summary['bills']['actual']['total']:,.2f} USD")
    assert summary["bills"]["actual"]["total"] > 0
    assert summary["tariff"].startswith("GS-TOU-2")
    assert date.fromisoformat(summary["data_until"][:10]) >= first_day

    page.click("#nav-fleet_savings")
    page.wait_for_selector(f"#fleet-savings-table td:has-text('{shown}')")
    _shot(page, "4-fleet")
