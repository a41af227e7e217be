"""The site page's dispatch reads on the real database: plans against telemetry, accuracy."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import db, fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.dispatch import store, views
from kilowatch.dispatch.forecast import HORIZON_STEPS, STEP
from tests.dashboards import seed
from tests.kilowatch.dispatch import plan_seed

ROOT = system_scope("test")
TZ = "Europe/Paris"
NOW = datetime(2026, 6, 3, 10, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def sites(settings):
    """Two companies' sites; the first with telemetry, plans and day-ahead forecasts."""
    with db.connect(settings.database_url, autocommit=True) as conn:
        return _seed(conn)


def _seed(conn) -> dict:
    ids = {}
    for name in ("Planned", "Other"):
        company = fleet.create_company(conn, ROOT, f"{name} {secrets.token_hex(3)}")
        site = fleet.create_site(conn, ROOT, company_id=company, name=f"{name} site",
                                 timezone=TZ, latitude=48.85, longitude=2.35)
        ids[name] = {"company": company, "site": site}
    device = seed.register(conn, ids["Planned"]["site"], f"VIEW-{secrets.token_hex(3)}")
    seed.seed_history(conn, device, days=4, until=NOW)
    plan_seed.store_plans(conn, ids["Planned"]["site"], TZ, NOW)
    plan_seed.store_day_ahead(conn, ids["Planned"]["site"], TZ, NOW)
    return ids


def _admin(company: int) -> AccessScope:
    return AccessScope(role="admin", company_id=company, user_id=1)


def test_plan_view_has_the_newest_plan_and_the_steps_in_force_since_a_day_ago(conn, sites):
    site = sites["Planned"]["site"]
    view = views.plan_view(conn, _admin(sites["Planned"]["company"]), site, now=NOW)
    assert view.plan["made_at"] == store.quarter(NOW)
    assert view.plan["plan"]["savings"] == pytest.approx(42.5)
    assert view.failure is None
    starts = view.steps.starts
    assert starts[0] == store.quarter(NOW - views.PAST)
    assert starts[-1] == store.quarter(NOW) + (HORIZON_STEPS - 1) * STEP
    assert starts == sorted(set(starts))  # one value per step, from the plan then in force
    evening = datetime(2026, 6, 2, 16, 0, tzinfo=UTC)  # 18:00 in Paris: discharging
    assert view.steps.battery_kw[starts.index(evening)] == 20.0
    assert view.steps.grid_kw[starts.index(evening)] == pytest.approx(-10.0)
    actual = view.actual.series
    assert len(actual["bms.soc"].times) == 97  # to now, the last step begun
    assert actual["pcs.p"].times[0] == store.quarter(NOW - views.PAST)
    assert 40 < sum(actual["bms.soc"].avg) / 97 < 70


def test_a_failed_planning_after_the_plan_is_reported(conn, sites):
    site = sites["Planned"]["site"]
    later = NOW + timedelta(minutes=15)
    store.store_plan(conn, site, store.quarter(later), None, "site 'x' has no tariff")
    try:
        view = views.plan_view(conn, ROOT, site, now=later)
        assert view.failure["error"] == "site 'x' has no tariff"
        assert view.plan["made_at"] == store.quarter(NOW)
    finally:
        conn.execute("DELETE FROM dispatch_plans WHERE site_id = %s AND made_at = %s",
                     (site, store.quarter(later)))


def test_a_site_without_plans_has_an_empty_view(conn, sites):
    other = sites["Other"]
    view = views.plan_view(conn, _admin(other["company"]), other["site"], now=NOW)
    assert view.plan is None and view.failure is None and view.actual is None
    assert view.steps.starts == []


def test_forecast_accuracy_per_day_against_the_meters(conn, sites):
    site = sites["Planned"]["site"]
    accuracy = views.forecast_accuracy(conn, _admin(sites["Planned"]["company"]), site,
                                       days=3, now=NOW)
    load = {item.day.isoformat(): item for item in accuracy.days["load"]}
    assert sorted(load) == ["2026-06-01", "2026-06-02", "2026-06-03"]
    for item in accuracy.days["load"]:  # forecast 33 kW, metered 30 kW
        assert item.mae_kw == pytest.approx(3.0, abs=0.01)
        assert item.nmae == pytest.approx(0.1, abs=0.001)
    assert load["2026-06-02"].steps == 96
    assert load["2026-06-03"].steps == 48  # today: whole steps until 12:07 in Paris
    for item in accuracy.days["pv"]:  # forecast 18 kW, metered 20 kW
        assert item.mae_kw == pytest.approx(2.0, abs=0.01)
    assert accuracy.has_forecasts


def test_days_without_a_day_ahead_forecast_are_left_out(conn, sites):
    site = sites["Planned"]["site"]
    accuracy = views.forecast_accuracy(conn, ROOT, site, days=5, now=NOW)
    assert [item.day.isoformat() for item in accuracy.days["load"]] == [
        "2026-06-01", "2026-06-02", "2026-06-03"]


@pytest.mark.parametrize("days", [0, 32, -1])
def test_forecast_accuracy_refuses_a_silly_number_of_days(conn, sites, days):
    with pytest.raises(ValueError, match="days must be between 1 and 31"):
        views.forecast_accuracy(conn, ROOT, sites["Planned"]["site"], days=days, now=NOW)


def test_another_companys_site_gives_nothing(conn, sites):
    planned, other = sites["Planned"], _admin(sites["Other"]["company"])
    with pytest.raises(AccessDenied):
        views.plan_view(conn, other, planned["site"], now=NOW)
    with pytest.raises(AccessDenied):
        views.forecast_accuracy(conn, other, planned["site"], now=NOW)
    assert views.newest_plans(conn, other, planned["site"]) == (None, None)
    steps = views.planned_steps(conn, other, planned["site"], NOW - views.PAST, NOW)
    assert steps.starts == []
    viewer = AccessScope(role="viewer", company_id=planned["company"], site_ids=frozenset())
    assert views.newest_plans(conn, viewer, planned["site"]) == (None, None)
