"""The dispatch worker job on the real database: plans stored, failures alarmed, accuracy read."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.billing import tariff_store
from kilowatch.dispatch import store as dispatch_store
from kilowatch.jobs import dispatch as dispatch_job
from kilowatch.schedules import store as schedule_store
from tests.kilowatch.dispatch import helpers
from tests.kilowatch.telemetry.helpers import MINUTE, roll_up, store
from tests.simulator.conftest import clear_retained

DAYS = 2
BEGIN = datetime(2026, 6, 1, tzinfo=UTC)
NOW = BEGIN + timedelta(days=DAYS)  # Wednesday 3 June 00:00 UTC
LOAD_KW, PV_KW = 40.0, 0.0
OPTIMIZED = {"timezone": "UTC", "default_mode": "optimized", "periods": [], "exceptions": []}
IDLE = {"timezone": "UTC", "default_mode": "idle", "periods": [], "exceptions": []}


def counters(start, minutes, kw, first=1000.0):
    """Minute readings of a counter growing at a steady ``kw``."""
    return [(start + (i + 1) * MINUTE, first + (i + 1) * kw / 60) for i in range(minutes)]


def optimised_site(conn, *, schedule=OPTIMIZED, tariff=True, days=DAYS + 1):
    """A site with a meter (steady 40 kW load, all imported), an HES-L, a schedule, a tariff."""
    scope = system_scope()
    company = fleet.create_company(conn, scope, f"Dispatch {secrets.token_hex(4)}")
    site = fleet.create_site(conn, scope, company_id=company, name="Depot", timezone="UTC",
                             latitude=48.85, longitude=2.35)
    conn.execute("UPDATE sites SET has_optimizer = true WHERE id = %s", (site,))
    meter = fleet.register_device(conn, scope, site_id=site, serial=f"M-{secrets.token_hex(5)}",
                                  model="meter")
    storage = fleet.register_device(conn, scope, site_id=site,
                                    serial=f"B-{secrets.token_hex(5)}", model="HES-L",
                                    rated_power_kw=50, capacity_kwh=100)
    minutes = days * 24 * 60 + 60  # from an hour before: the first interval is whole
    start = BEGIN - timedelta(hours=1)
    store(conn, meter, {point: counters(start, minutes, kw) for point, kw in (
        ("meter.grid.e_import", LOAD_KW), ("meter.grid.e_export", 0.0),
        ("meter.load.e", LOAD_KW), ("meter.pv.e", PV_KW))})
    roll_up(conn, [meter], start, start + minutes * MINUTE)
    schedule_store.save_revision(conn, scope, site, schedule, now=BEGIN)
    if tariff:
        assign(conn, company, site)
    return company, site, storage


def assign(conn, company, site):
    scope = system_scope()
    tariff_id = tariff_store.create_tariff(
        conn, scope, company_id=company, name=f"TOU {secrets.token_hex(3)}",
        tariff=helpers.tariff((0.10, 0.40), expensive=range(17, 21), flat_kw=10.0))
    tariff_store.assign_tariff(conn, scope, site_id=site, tariff_id=tariff_id,
                               valid_from=date(2026, 5, 1))


def alarms_of(conn, device):
    return conn.execute("SELECT code, message, cleared_at FROM alarms WHERE device_id = %s",
                        (device,)).fetchall()


@pytest.fixture(scope="module")
def plans_cleared(kw_env):
    """Delete the plans the job leaves retained on the broker, after the module."""
    yield
    clear_retained(kw_env["KILOWATCH_MQTT_PREFIX"])


@pytest.mark.usefixtures("plans_cleared")
def test_the_job_plans_optimised_sites_and_stores_forecasts_and_plans(conn, settings):
    _, site, storage = optimised_site(conn)
    _, resting, _ = optimised_site(conn, schedule=IDLE)
    counts = dispatch_job.plan_sites(conn, settings, now=NOW + timedelta(minutes=7))
    assert counts["failed"] == 0 and counts["planned"] >= 1
    row = dispatch_store.latest_plan(conn, system_scope(), site)
    assert (row["status"], row["made_at"]) == ("planned", NOW)  # on the 15-minute step
    body = row["plan"]
    assert len(body["steps"]) == 192 and body["steps"][0]["start"] == NOW.isoformat()
    assert body["savings"] > 0  # a flat 40 kW load under a demand charge: shave it
    assert any("holds the peak" in line for line in body["why"])
    assert dispatch_store.latest_plan(conn, system_scope(), resting) is None
    forecasts = conn.execute("SELECT kind, values_kw FROM dispatch_forecasts WHERE site_id = %s",
                             (site,)).fetchall()
    by_kind = {r["kind"]: r["values_kw"] for r in forecasts}
    assert by_kind["load"] == pytest.approx([LOAD_KW] * 192, abs=0.01)
    assert by_kind["pv"] == [0.0] * 192  # no production in the history: no PV
    assert alarms_of(conn, storage) == []


@pytest.mark.usefixtures("plans_cleared")
def test_a_site_that_cannot_be_planned_is_alarmed_until_it_can(conn, settings):
    company, site, storage = optimised_site(conn, tariff=False)
    dispatch_job.plan_sites(conn, settings, now=NOW)
    row = dispatch_store.latest_plan(conn, system_scope(), site)
    assert (row["status"], row["plan"]) == ("failed", None)
    assert row["error"] == "site 'Depot' has no tariff in 2026-06"
    [alarm] = alarms_of(conn, storage)
    assert alarm["code"] == "DISPATCH_FAILED" and alarm["cleared_at"] is None
    assert alarm["message"] == ("no dispatch plan: site 'Depot' has no tariff in 2026-06; "
                                "the devices run their last plan until it expires, then the "
                                "weekly schedule")
    assign(conn, company, site)
    dispatch_job.plan_sites(conn, settings, now=NOW + timedelta(minutes=15))
    assert dispatch_store.latest_plan(conn, system_scope(), site)["status"] == "planned"
    [alarm] = alarms_of(conn, storage)
    assert alarm["cleared_at"] is not None


@pytest.mark.usefixtures("plans_cleared")
def test_day_ahead_forecast_accuracy_against_what_happened(conn, settings):
    _, site, _ = optimised_site(conn, days=DAYS + 1)  # the history and the day after it
    dispatch_job.plan_sites(conn, settings, now=NOW)
    accuracy = dispatch_store.forecast_accuracy(conn, system_scope(), site, NOW.date(),
                                                now=NOW + timedelta(days=2))
    load, pv = accuracy["load"], accuracy["pv"]
    assert (load.day, load.steps) == (NOW.date(), 96)
    assert load.mae_kw == pytest.approx(0.0, abs=0.01) and load.nmae == pytest.approx(0, abs=1e-3)
    assert (pv.mae_kw, pv.nmae) == (0.0, None)  # no PV: nothing to normalise by


def test_sites_to_plan_reads_the_latest_schedule():
    assert dispatch_store.uses_optimizer(OPTIMIZED)
    assert not dispatch_store.uses_optimizer(IDLE)
    assert dispatch_store.uses_optimizer(
        {**IDLE, "exceptions": [{"date": "2026-06-05", "periods": [
            {"start": "10:00", "end": "12:00", "mode": "optimized"}]}]})
    assert not dispatch_store.uses_optimizer(None)
