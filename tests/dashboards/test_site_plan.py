"""Site page, plan tab: the newest dispatch plan against what happened, and forecast accuracy."""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.dashboards import seed
from tests.dashboards.conftest import browser_login, call_callback
from tests.dashboards.savings_helpers import assign_tou
from tests.dashboards.schedule_helpers import signed_in
from tests.kilowatch.dispatch import plan_seed

TZ = "Europe/Paris"
SHOTS = Path(os.environ.get("KILOWATCH_SCREENSHOTS", "/tmp/kilowatch-screenshots"))
PLAN_TAB = {"site-tabs.active_tab": "plan"}


@pytest.fixture(scope="module")
def planned_site(tenants, settings):
    """A's first site offered the optimiser, with telemetry, a TOU tariff, plans and forecasts."""
    site_id, now = tenants.a.sites[0], datetime.now(UTC)
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("UPDATE sites SET has_optimizer = true, latitude = 48.85, "
                     "longitude = 2.35 WHERE id = %s", (site_id,))
        device = seed.register(conn, site_id, f"PLAN-{secrets.token_hex(3)}")
        seed.seed_history(conn, device, days=4, until=now)
        plan_seed.follow_plan(conn, device, TZ, now - timedelta(days=1, hours=1), now)
        assign_tou(conn, tenants.a.id, site_id, date(now.year, 1, 1))
        plan_seed.store_plans(conn, site_id, TZ, now)
        plan_seed.store_day_ahead(conn, site_id, TZ, now)
    seed.publish_live(device, seed.live_values())
    return site_id


def _answer(client, app, output: str, site_id) -> dict:
    response = call_callback(client, app, output, {"site-id.data": site_id, **PLAN_TAB},
                             triggered="site-tabs.active_tab")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["response"]


def test_the_plan_tab_shows_savings_why_and_planned_against_actual(app, tenants, planned_site):
    answer = _answer(signed_in(app, tenants.a.admin), app, "site-plan-graph.figure",
                     planned_site)
    summary = json.dumps(answer["site-plan-summary"])
    assert "42.50 EUR" in summary  # the bill without the battery less the plan's
    assert "Demand: holds the peak to 12.5 kW" in summary
    assert "charge " in summary and "discharge " in summary and "kWh at 0.1/kWh" in summary
    names = [trace["name"] for trace in answer["site-plan-graph"]["figure"]["data"]]
    assert names == ["State of charge planned", "State of charge actual",
                     "Battery (+ discharge) planned", "Battery (+ discharge) actual",
                     "Grid (+ import) planned", "Grid (+ import) actual"]


def test_the_plan_tab_shows_forecast_accuracy_per_day(app, tenants, planned_site):
    answer = _answer(signed_in(app, tenants.a.viewer), app, "site-accuracy-graph.figure",
                     planned_site)
    table = json.dumps(answer["site-accuracy-days"])
    assert table.count("3.00 kW") >= 2 and "10 %" in table  # forecast 33 kW, metered 30 kW
    assert "2.00 kW" in table  # PV: forecast 18 kW, metered 20 kW
    names = [trace["name"] for trace in answer["site-accuracy-graph"]["figure"]["data"]]
    assert names == ["Consumption forecast", "Consumption actual", "PV forecast", "PV actual"]


def test_a_site_without_plans_says_so(app, tenants, planned_site):
    answer = _answer(signed_in(app, tenants.a.admin), app, "site-plan-graph.figure",
                     tenants.a.sites[1])
    assert "No dispatch plan for this site yet" in json.dumps(answer["site-plan-summary"])
    accuracy = _answer(signed_in(app, tenants.a.admin), app, "site-accuracy-graph.figure",
                       tenants.a.sites[1])
    assert "No day has both" in json.dumps(accuracy["site-accuracy-days"])


@pytest.mark.parametrize("output", ["site-plan-graph.figure", "site-accuracy-graph.figure"])
@pytest.mark.parametrize("who", ["b_admin", "a_viewer_other_site"])
def test_forged_site_ids_get_no_update(app, tenants, planned_site, output, who):
    account, site_id = {"b_admin": (tenants.b.admin, planned_site),
                        "a_viewer_other_site": (tenants.a.viewer, tenants.a.sites[1])}[who]
    response = call_callback(signed_in(app, account), app, output,
                             {"site-id.data": site_id, **PLAN_TAB},
                             triggered="site-tabs.active_tab")
    assert response.status_code == 204


@pytest.mark.parametrize("site_id", ["1 OR 1=1", None, [1], {"id": 1}, -3])
def test_malformed_site_ids_get_no_update(app, tenants, planned_site, site_id):
    response = call_callback(signed_in(app, tenants.a.admin), app, "site-plan-graph.figure",
                             {"site-id.data": site_id, **PLAN_TAB},
                             triggered="site-tabs.active_tab")
    assert response.status_code == 204


def test_the_plan_tab_is_offered_only_to_planned_sites(app, tenants, planned_site):
    client = signed_in(app, tenants.a.admin)
    for site_id, shown in ((planned_site, True), (tenants.a.sites[1], False)):
        response = call_callback(client, app, "_pages_content.children",
                                 {"_pages_location.pathname": f"/site/{site_id}",
                                  "_pages_location.search": ""})
        assert ("site-plan-graph" in response.get_data(as_text=True)) is shown


@pytest.mark.browser
def test_admin_views_the_plan_and_forecast_accuracy(live_server, page, tenants, planned_site):
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/site/{planned_site}")
    page.click("#site-tabs a:has-text('Plan')")
    page.wait_for_selector("#site-plan-savings", timeout=30_000)
    page.wait_for_selector("#site-plan-graph .scatterlayer .trace", timeout=30_000)
    page.wait_for_selector("#site-accuracy-table", timeout=30_000)
    page.wait_for_selector("#site-accuracy-graph .scatterlayer .trace", state="attached",
                           timeout=30_000)
    assert page.inner_text("#site-plan-savings") == "42.50 EUR"
    assert "holds the peak to 12.5 kW" in page.inner_text("#site-plan-why")
    assert page.locator("#site-plan-graph .scatterlayer .trace").count() == 6
    assert page.locator("#site-accuracy-table tbody tr").count() == 3
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "site-plan.png"), full_page=True)
    page.locator(".tab-content").screenshot(path=str(SHOTS / "site-plan-tab.png"))
