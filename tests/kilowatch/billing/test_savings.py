"""Tariff storage, assignment history, and bills computed from stored telemetry."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.billing import savings, tariff_store, tariffs
from kilowatch.billing.tariffs import TariffError
from tests.kilowatch.telemetry.helpers import MINUTE, counter, make_site, roll_up, store

SEP = datetime(2026, 9, 1, tzinfo=UTC)
NOW = SEP + timedelta(hours=6)  # the month to date: 24 intervals of 15 minutes


def flat_tariff(rate=0.20, demand_rate=10.0, fixed=10.0):
    """A flat energy rate, a flat demand charge every month and a fixed charge."""
    table = [[0] * 24 for _ in range(12)]
    return tariffs.parse({
        "currency": "EUR",
        "energy": {"periods": [{"tiers": [{"rate": rate}]}], "weekday": table, "weekend": table},
        "flat_demand": {"periods": [{"tiers": [{"rate": demand_rate}]}], "months": [0] * 12},
        "fixed_charge": {"amount": fixed, "per": "month"},
        "export": {"compensation": "net_billing", "rate": 0.05},
    })


def admin_of(company):
    return AccessScope(role="admin", company_id=company, actor="admin@example.com")


def test_company_admin_manages_own_tariffs_only(conn):
    company, _, _ = make_site(conn)
    other, _, _ = make_site(conn)
    tariff_id = tariff_store.create_tariff(conn, admin_of(company), company_id=company,
                                           name="Flat", tariff=flat_tariff())
    with pytest.raises(AccessDenied):
        tariff_store.create_tariff(conn, admin_of(other), company_id=company, name="X",
                                   tariff=flat_tariff())
    with pytest.raises(AccessDenied):
        tariff_store.get_tariff(conn, admin_of(other), tariff_id)
    viewer = AccessScope(role="viewer", company_id=company, site_ids=frozenset())
    with pytest.raises(AccessDenied):
        tariff_store.create_tariff(conn, viewer, company_id=company, name="Y",
                                   tariff=flat_tariff())
    with pytest.raises(TariffError, match="^name: the company already has a tariff named 'Flat'"):
        tariff_store.create_tariff(conn, admin_of(company), company_id=company, name="Flat",
                                   tariff=flat_tariff())
    assert [t["name"] for t in tariff_store.list_tariffs(conn, admin_of(other))] == []
    assert tariff_store.get_tariff(conn, viewer, tariff_id)["tariff"] == flat_tariff()
    actions = conn.execute("SELECT action, actor FROM audit_log WHERE target = %s",
                           (f"tariff:{tariff_id}",)).fetchall()
    assert actions == [{"action": "tariff.create", "actor": "admin@example.com"}]


def test_assignments_keep_history_and_never_overlap(conn):
    company, site, _ = make_site(conn)
    scope = admin_of(company)
    ids = {name: tariff_store.create_tariff(conn, scope, company_id=company, name=name,
                                            tariff=flat_tariff()) for name in "ABC"}
    assign = tariff_store.assign_tariff
    assign(conn, scope, site_id=site, tariff_id=ids["A"], valid_from=date(2026, 1, 1))
    assign(conn, scope, site_id=site, tariff_id=ids["B"], valid_from=date(2026, 6, 1))
    assign(conn, scope, site_id=site, tariff_id=ids["C"], valid_from=date(2026, 3, 1),
           valid_to=date(2026, 4, 1))
    live = [(r["tariff_name"], r["valid_from"], r["valid_to"])
            for r in tariff_store.assignments(conn, scope, site)]
    assert live == [("A", date(2026, 1, 1), date(2026, 3, 1)),
                    ("C", date(2026, 3, 1), date(2026, 4, 1)),
                    ("A", date(2026, 4, 1), date(2026, 6, 1)),
                    ("B", date(2026, 6, 1), None)]
    history = tariff_store.assignments(conn, scope, site, history=True)
    assert len(history) == 6 and sum(1 for r in history if r["superseded_at"]) == 2
    # March is C's whole month; a month split between A and C goes to whichever has more days.
    march = tariff_store.tariff_for_period(conn, scope, site, date(2026, 3, 1), date(2026, 4, 1))
    assert march["tariff_name"] == "C"


def test_tariff_of_another_company_cannot_be_assigned(conn):
    company, site, _ = make_site(conn)
    other, _, _ = make_site(conn)
    foreign = tariff_store.create_tariff(conn, admin_of(other), company_id=other, name="Theirs",
                                         tariff=flat_tariff())
    with pytest.raises(AccessDenied):
        tariff_store.assign_tariff(conn, admin_of(company), site_id=site, tariff_id=foreign,
                                   valid_from=date(2026, 1, 1))
    with pytest.raises(TariffError, match="another company"):
        tariff_store.assign_tariff(conn, system_scope(), site_id=site, tariff_id=foreign,
                                   valid_from=date(2026, 1, 1))
    with pytest.raises(AccessDenied):  # an admin of the other company cannot touch this site
        tariff_store.assign_tariff(conn, admin_of(other), site_id=site, tariff_id=foreign,
                                   valid_from=date(2026, 1, 1))


def metered_site(conn, *, gap=False):
    """Six hours of a site: load 12 kW, PV 4 kW, battery discharging 2 kW, grid import 6 kW."""
    company, site, (meter, hes) = make_site(conn, models=("meter", "HES-L"))
    minutes = 6 * 60
    for device, point, kw in ((meter, "meter.load.e", 12), (meter, "meter.pv.e", 4),
                              (meter, "meter.grid.e_import", 6), (meter, "meter.grid.e_export", 0),
                              (hes, "pcs.e_discharge", 2), (hes, "pcs.e_charge", 0)):
        rows = counter(lambda _, kw=kw: kw, SEP, SEP + (minutes + 1) * MINUTE, MINUTE)
        if gap:  # no readings between 01:00 and 02:00
            hole = (SEP + timedelta(hours=1), SEP + timedelta(hours=2))
            rows = [r for r in rows if not hole[0] < r[0] < hole[1]]
        store(conn, device, {point: rows})
    roll_up(conn, [meter, hes], SEP, SEP + timedelta(hours=7))
    return company, site


def test_month_to_date_bills_and_savings_from_telemetry(conn):
    # Six hours, flat 0.20 per kWh, 10 per kW of monthly peak, 10 fixed:
    # 1 without system: 72 kWh × 0.20 = 14.40, 12 kW × 10 = 120, fixed 10: 144.40
    # 2 PV only: 48 kWh = 9.60, 8 kW = 80, 10: 99.60
    # 3 actual: 36 kWh = 7.20, 6 kW = 60, 10: 77.20
    # System saves 67.20, storage 22.40.
    company, site = metered_site(conn)
    scope = admin_of(company)
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="Flat",
                                           tariff=flat_tariff())
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 1, 1))
    summary = savings.month_summary(conn, scope, site, "2026-09", now=NOW)
    assert [summary["bills"][s]["total"] for s in ("without_system", "pv_only", "actual")] == [
        144.40, 99.60, 77.20]
    assert summary["savings"]["system"]["total"] == 67.20
    assert summary["savings"]["storage"] == {"energy": 2.40, "demand": 20.0, "fixed": 0.0,
                                             "export_credit": 0.0, "total": 22.40}
    assert summary["final"] is False and summary["currency"] == "EUR"
    assert summary["data_until"] == NOW.isoformat()
    assert summary["bills"]["actual"]["quality"]["expected_intervals"] == 24
    assert all(summary["bills"][s]["complete"] for s in summary["bills"])
    stored = savings.list_bills(conn, scope, site_id=site)
    assert [(r["actual"], r["system_savings"], r["storage_savings"]) for r in stored] == [
        (77.20, 67.20, 22.40)]


def test_a_gap_is_flagged_in_the_stored_bills(conn):
    # 01:00-02:00 has no readings: the counters' energy over the gap is spread and flagged,
    # so the totals are the same as without a gap, and every bill says which hour.
    company, site = metered_site(conn, gap=True)
    scope = admin_of(company)
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="Flat",
                                           tariff=flat_tariff())
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 9, 1))
    summary = savings.month_summary(conn, scope, site, "2026-09", now=NOW)
    actual = summary["bills"]["actual"]
    assert actual["complete"] is False and actual["total"] == 77.20
    assert actual["quality"]["estimated"] == [["2026-09-01T01:00:00+00:00",
                                               "2026-09-01T02:00:00+00:00"]]


def test_a_new_assignment_marks_bills_stale_and_they_are_recomputed(conn):
    company, site = metered_site(conn)
    scope = admin_of(company)
    cheap = tariff_store.create_tariff(conn, scope, company_id=company, name="Cheap",
                                       tariff=flat_tariff(rate=0.10, demand_rate=0, fixed=0))
    dear = tariff_store.create_tariff(conn, scope, company_id=company, name="Dear",
                                      tariff=flat_tariff(rate=0.30, demand_rate=0, fixed=0))
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=cheap,
                               valid_from=date(2026, 8, 1))
    assert savings.month_summary(conn, scope, site, "2026-09", now=NOW)["bills"]["actual"][
        "total"] == 3.60  # 36 kWh × 0.10
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=dear,
                               valid_from=date(2026, 9, 1))
    stale = conn.execute("SELECT bool_and(stale) AS s FROM bills WHERE site_id = %s",
                         (site,)).fetchone()
    assert stale["s"] is True
    summary = savings.month_summary(conn, scope, site, "2026-09", now=NOW)
    assert (summary["tariff"], summary["bills"]["actual"]["total"]) == ("Dear", 10.80)
    # Editing the tariff itself also makes its bills stale: 36 kWh × 0.25 = 9.00.
    assert tariff_store.update_tariff(conn, scope, dear, flat_tariff(0.25, 0, 0)) == 3
    assert savings.month_summary(conn, scope, site, "2026-09", now=NOW)["bills"]["actual"][
        "total"] == 9.00


def test_the_worker_computes_due_months(conn):
    company, site = metered_site(conn)
    scope = admin_of(company)
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company, name="Flat",
                                           tariff=flat_tariff())
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 8, 1))
    assert {(site, "2026-08"), (site, "2026-09")} <= set(savings.due(conn, now=NOW, limit=1000))
    with pytest.raises(savings.SavingsError):
        savings.refresh(conn, scope, now=NOW)  # company admins do not run the worker
    savings.refresh(conn, system_scope("worker"), now=NOW, limit=1000)
    pending = {item for item in savings.due(conn, now=NOW, limit=1000) if item[0] == site}
    assert pending == set()
    # August had no data at all: stored as final, every interval missing, never zero-complete.
    august = savings.month_summary(conn, scope, site, "2026-08", now=NOW)
    assert august["final"] and not august["bills"]["actual"]["complete"]
    assert august["bills"]["actual"]["quality"]["missing_intervals"] == 31 * 96
    # Twenty minutes later the month to date is due again.
    later = NOW + timedelta(minutes=20)
    assert (site, "2026-09") in savings.due(conn, now=later, limit=1000)


def test_bills_are_private_to_the_company(conn):
    company, site = metered_site(conn)
    other, _, _ = make_site(conn)
    tariff_id = tariff_store.create_tariff(conn, admin_of(company), company_id=company,
                                           name="Flat", tariff=flat_tariff())
    tariff_store.assign_tariff(conn, admin_of(company), site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 9, 1))
    savings.month_summary(conn, admin_of(company), site, "2026-09", now=NOW)
    with pytest.raises(AccessDenied):
        savings.month_summary(conn, admin_of(other), site, "2026-09", now=NOW)
    assert savings.list_bills(conn, admin_of(other)) == []
    viewer = AccessScope(role="viewer", company_id=company, site_ids=frozenset({site}))
    assert savings.list_bills(conn, viewer)[0]["site_id"] == site


def test_months_without_tariff_or_not_begun_are_refused(conn):
    company, site = metered_site(conn)
    with pytest.raises(savings.SavingsError, match="no tariff in 2026-09"):
        savings.month_summary(conn, admin_of(company), site, "2026-09", now=NOW)
    with pytest.raises(savings.SavingsError, match="has not begun"):
        savings.compute_month(conn, admin_of(company), site, "2026-10", now=NOW)
