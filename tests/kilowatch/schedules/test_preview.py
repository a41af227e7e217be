"""The 7-day schedule preview: the simulation (pure) and the site's inputs (real database)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.schedules import battery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import preview as schedule_preview
from kilowatch.telemetry import energy
from tests.kilowatch.telemetry.helpers import make_site, roll_up, store

PARIS = "Europe/Paris"
STORAGE = battery.Battery(rated_power_kw=50, capacity_kwh=100)
EVENING = {"timezone": PARIS, "default_mode": "idle", "exceptions": [],
           "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00",
                        "end": "21:00", "mode": "discharge", "power_kw": 20, "soc_min": 20}]}


def flat(load_kw=30.0, pv_kw=0.0):
    return lambda _local: (load_kw, pv_kw)


def by_local_time(steps, timezone=PARIS):
    tz = schedules.zone(timezone)
    return {s.start.astimezone(tz).replace(tzinfo=None): s for s in steps}


def test_discharge_runs_at_its_local_hours_until_soc_min():
    start = dt.datetime(2026, 11, 16, 0, 0, tzinfo=schedules.zone(PARIS))  # a Monday
    steps = schedule_preview.simulate(EVENING, STORAGE, start=start, soc=50, site_power=flat())
    assert len(steps) == 7 * 96
    local = by_local_time(steps)
    monday = dt.datetime(2026, 11, 16)
    assert local[monday.replace(hour=16, minute=45)].mode == "idle"
    first = local[monday.replace(hour=17)]
    assert first.mode == "discharge" and first.battery_kw == pytest.approx(20)
    assert first.grid_kw == pytest.approx(10)  # 30 kW load, 20 kW from the battery
    # 20 kW for an hour takes 20 / 0.96 kWh: about 20.8 points of a 100 kWh battery.
    assert local[monday.replace(hour=17, minute=45)].soc == pytest.approx(
        50 - 20 / 0.96, abs=1e-6)
    assert local[monday.replace(hour=20, minute=45)].soc == pytest.approx(20)  # stops at min
    assert local[monday.replace(hour=21)].mode == "idle"
    saturday = [s for t, s in local.items() if t.weekday() == 5]
    assert {s.mode for s in saturday} == {"idle"}
    for step in steps:
        assert step.grid_kw == pytest.approx(step.load_kw - step.pv_kw - step.battery_kw)


def test_periods_keep_their_local_hours_across_the_autumn_dst_change():
    every_day = {**EVENING, "periods": [{**EVENING["periods"][0], "days": list(schedules.DAYS),
                                         "power_kw": 1}]}
    start = dt.datetime(2026, 10, 22, 0, 0, tzinfo=dt.UTC)  # Paris leaves DST on Oct 25
    steps = schedule_preview.simulate(every_day, STORAGE, start=start, soc=90,
                                      site_power=flat())
    tz = schedules.zone(PARIS)
    discharging = {s.start.astimezone(tz).hour for s in steps if s.mode == "discharge"}
    assert discharging == {17, 18, 19, 20}
    utc_hours = {s.start.hour for s in steps if s.mode == "discharge"}
    assert utc_hours == {15, 16, 17, 18, 19}  # 15–18 UTC before the change, 16–19 after


def test_self_consumption_default_stores_pv_surplus_and_never_exports():
    schedule = {"timezone": PARIS, "default_mode": "self_consumption",
                "default_params": {"soc_min": 10, "soc_max": 90}, "periods": [],
                "exceptions": []}
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)

    def sunny(local):
        return 20.0, 60.0 if 10 <= local.hour < 16 else 0.0

    steps = schedule_preview.simulate(schedule, STORAGE, start=start, soc=10, site_power=sunny,
                                      days=1)
    assert max(s.soc for s in steps) == pytest.approx(90)
    exporting = [s for s in steps if s.grid_kw < -1e-9]
    assert exporting and all(s.soc == pytest.approx(90) for s in exporting)  # only when full


def test_profile_repeats_the_week_by_local_slot_and_fills_holes():
    tz = schedules.zone(PARIS)
    start = dt.datetime(2026, 11, 9, tzinfo=tz)  # a Monday
    intervals = []
    for n in range(7 * 96):
        begin = start + n * schedule_preview.STEP
        local = begin.astimezone(tz)
        load = None if (local.weekday() == 2 and local.hour == 12) else 10.0 + local.hour
        intervals.append(energy.EnergyInterval(
            begin.astimezone(dt.UTC), (begin + schedule_preview.STEP).astimezone(dt.UTC),
            {"load": None if load is None else load / 4, "pv": 1.0}, frozenset()))
    profile = schedule_preview.build_profile(energy.SiteEnergy(1, PARIS, intervals, {}))
    assert profile.at(dt.datetime(2026, 11, 16, 8, 15, tzinfo=tz)) == pytest.approx((18.0, 4.0))
    # Wednesday 12:00 had no reading: the same time on the other days (all 22 kW).
    assert profile.at(dt.datetime(2026, 11, 18, 12, 0, tzinfo=tz))[0] == pytest.approx(22.0)
    assert profile.missing_share == pytest.approx(4 / (7 * 96))
    empty = schedule_preview.build_profile(energy.SiteEnergy(1, PARIS, [], {}))
    assert empty.at(dt.datetime(2026, 11, 18, 12, 0, tzinfo=tz)) == (0.0, 0.0)


def test_week_figures_of_a_preview():
    start = dt.datetime(2026, 11, 16, tzinfo=schedules.zone(PARIS))
    steps = schedule_preview.simulate(EVENING, STORAGE, start=start, soc=50, site_power=flat())
    result = schedule_preview.Preview(PARIS, STORAGE, 50, steps)
    assert result.export_kwh == 0
    assert result.import_kwh == pytest.approx(math.fsum(s.grid_kw for s in steps) / 4)
    peak, when = result.peak_import
    assert peak == 30 and when == steps[0].start


# ---- against the database ---------------------------------------------------------------

NOW = dt.datetime(2026, 9, 21, 12, 7, tzinfo=dt.UTC)  # a Monday, long past for every test run


def _site_with_history(conn, load_kw=30.0, days=7):
    company, site, (meter, hes) = make_site(conn, PARIS, models=("meter", "HES-L"))
    start = NOW.replace(minute=0) - dt.timedelta(days=days)
    minutes = int((NOW - start).total_seconds() // 60)
    rows = [(start + dt.timedelta(minutes=i), load_kw) for i in range(minutes)]
    store(conn, meter, {"meter.load.p": rows})
    roll_up(conn, [meter], start, NOW)
    store(conn, hes, {"bms.soc": [(NOW - dt.timedelta(minutes=5), 64.0)]})
    return company, site


def _body(timezone=PARIS):
    return {**EVENING, "timezone": timezone}


def test_preview_runs_on_the_sites_last_week(conn):
    _, site = _site_with_history(conn)
    result = schedule_preview.preview(conn, system_scope(), site, _body(), now=NOW)
    assert result.initial_soc == pytest.approx(64.0)
    assert result.battery == battery.Battery(rated_power_kw=50, capacity_kwh=100)  # HES-L
    assert result.steps[0].start == dt.datetime(2026, 9, 21, 12, 0, tzinfo=dt.UTC)
    assert all(s.load_kw == pytest.approx(30.0) and s.pv_kw == 0 for s in result.steps)
    assert result.notes == ()
    discharging = [s for s in result.steps if s.mode == "discharge"]
    assert discharging[0].battery_kw == pytest.approx(20)
    assert min(s.soc for s in result.steps) == pytest.approx(20)


def test_preview_says_what_it_assumed_without_data(conn):
    _, site, _ = make_site(conn, PARIS, models=("HES-XL",))
    result = schedule_preview.preview(conn, system_scope(), site, _body(), now=NOW)
    assert result.initial_soc == schedule_preview.ASSUMED_SOC
    assert result.battery.rated_power_kw == 125 and result.battery.capacity_kwh == 250
    assert any("No load was measured" in n for n in result.notes)
    assert any("No recent state of charge" in n for n in result.notes)


def test_preview_notes_a_partial_history(conn):
    _, site = _site_with_history(conn, days=2)
    result = schedule_preview.preview(conn, system_scope(), site, _body(), now=NOW)
    assert any("of the last 7 days has no load reading" in n for n in result.notes)
    assert all(s.load_kw == pytest.approx(30.0) for s in result.steps)  # filled by time of day


def test_preview_refuses_invalid_schedules_sites_without_storage_and_other_scopes(conn):
    company, site = _site_with_history(conn, days=1)
    with pytest.raises(schedules.ScheduleInvalid):
        schedule_preview.preview(conn, system_scope(), site, _body("Europe/Berlin"), now=NOW)
    outsider = AccessScope(role="admin", company_id=company + 10_000, actor="x")
    with pytest.raises(AccessDenied):
        schedule_preview.preview(conn, outsider, site, _body(), now=NOW)
    viewer = AccessScope(role="viewer", company_id=company, site_ids=frozenset({site}),
                         actor="viewer")
    assert schedule_preview.preview(conn, viewer, site, _body(), now=NOW).steps
    bare = fleet.create_site(conn, system_scope(), company_id=company, name="Bare",
                             timezone=PARIS)
    with pytest.raises(schedule_preview.NoStorage):
        schedule_preview.preview(conn, system_scope(), bare, _body(), now=NOW)
