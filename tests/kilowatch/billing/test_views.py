"""Read models of the savings pages, against the real database and within access scopes."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, date, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.billing import savings, tariff_store, tariffs
from kilowatch.billing import views as savings_views
from tests.dashboards.savings_helpers import month_start, seed_energy, tou_structure

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TZ = "Europe/Paris"


@pytest.fixture
def site(conn):
    """A company whose site has September 2026 metered and a TOU tariff from 2026-08-15."""
    scope = system_scope("test")
    company = fleet.create_company(conn, scope, f"Energy {secrets.token_hex(4)}")
    site_id = fleet.create_site(conn, scope, company_id=company, name="-Plant", timezone=TZ)
    seed_energy(conn, site_id, month_start(datetime(2026, 9, 10, tzinfo=UTC), TZ),
                month_start(datetime(2026, 10, 10, tzinfo=UTC), TZ))
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="@TOU",
                                           tariff=tariffs.parse(tou_structure()))
    tariff_store.assign_tariff(conn, scope, site_id=site_id, tariff_id=tariff_id,
                               valid_from=date(2026, 8, 15), valid_to=date(2026, 10, 2))
    return {"company": company, "site": site_id, "tariff": tariff_id}


def viewer_of(company, sites=()):
    return AccessScope(role="viewer", company_id=company, site_ids=frozenset(sites))


def test_site_months_cover_the_assignments_up_to_this_month(conn, site):
    months = savings_views.site_months(conn, system_scope(), site["site"], now=NOW)
    assert months == ["2026-10", "2026-09", "2026-08"]
    with pytest.raises(AccessDenied):
        savings_views.site_months(conn, viewer_of(site["company"]), site["site"], now=NOW)


def test_bills_csv_has_a_line_per_month_and_scenario_and_no_formulas(conn, site):
    savings.compute_month(conn, system_scope(), site["site"], "2026-09", now=NOW)
    text = savings_views.bills_csv(conn, viewer_of(site["company"], [site["site"]]),
                                   site["site"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["month"], r["scenario"]) for r in rows] == [
        ("2026-09", s) for s in ("without_system", "pv_only", "actual")]
    assert {r["site"] for r in rows} == {"'-Plant"} and {r["tariff"] for r in rows} == {"'@TOU"}
    stored = {r["scenario"]: r for r in conn.execute(
        "SELECT scenario, total FROM bills WHERE site_id = %s", (site["site"],)).fetchall()}
    assert all(r["total"] == f"{stored[r['scenario']]['total']:.2f}" for r in rows)
    assert all(float(r["peak_kw"]) > 0 and r["complete"] == "yes" for r in rows)
    with pytest.raises(AccessDenied):
        savings_views.bills_csv(conn, viewer_of(site["company"]), site["site"])


def test_peak_day_is_the_local_day_in_quarter_hours(conn, site):
    day = savings_views.peak_day(conn, system_scope(), site["site"], "2026-09-15T23:30:00+00:00")
    assert day["day"] == "2026-09-16"  # 01:30 in Paris
    assert len(day["intervals"]) == 96
    assert day["intervals"][0]["start"] == "2026-09-15T22:00:00+00:00"
    assert max(i["load"] for i in day["intervals"]) == pytest.approx(60.0)
    with pytest.raises(ValueError, match="not a time"):
        savings_views.peak_day(conn, system_scope(), site["site"], "noon")
    with pytest.raises(ValueError, match="no time zone"):
        savings_views.peak_day(conn, system_scope(), site["site"], "2026-09-15T10:00:00")
    with pytest.raises(AccessDenied):
        savings_views.peak_day(conn, viewer_of(site["company"]), site["site"],
                               "2026-09-15T10:00:00+00:00")


def test_fleet_month_lists_visible_sites_with_their_tariff_and_bills(conn, site):
    scope = system_scope()
    other = fleet.create_company(conn, scope, f"Other {secrets.token_hex(4)}")
    fleet.create_site(conn, scope, company_id=other, name="Elsewhere", timezone="UTC")
    savings.compute_month(conn, scope, site["site"], "2026-09", now=NOW)
    admin = AccessScope(role="admin", company_id=site["company"])
    rows = savings_views.fleet_month(conn, admin, "2026-09")
    assert [r["site_name"] for r in rows] == ["-Plant"]
    row = rows[0]
    assert row["tariff_name"] == "@TOU" and row["system_savings"] > row["storage_savings"] > 0
    assert row["system_savings"] == round(row["without_system"] - row["actual"], 2)
    october = savings_views.fleet_month(conn, admin, "2026-10")[0]
    assert october["tariff_name"] == "@TOU" and october["actual"] is None  # not computed yet
    december = savings_views.fleet_month(conn, admin, "2026-12")[0]
    assert december["tariff_id"] is None
    everyone = savings_views.fleet_month(conn, scope, "2026-09", company_id=other)
    assert [r["site_name"] for r in everyone] == ["Elsewhere"]
    with pytest.raises(ValueError, match="is not a month like"):
        savings_views.fleet_month(conn, admin, "September")


def test_recent_months_count_back_from_now():
    assert savings_views.recent_months(3, now=NOW) == ["2026-11", "2026-10", "2026-09"]
    assert savings_views.recent_months(2, now=NOW - timedelta(days=320)) == ["2026-01",
                                                                            "2025-12"]
