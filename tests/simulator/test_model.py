"""Physics of a simulated site: power balance, counters, SoC, sun, load shape, determinism."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from kilowatch.schedules import battery
from simulator import physics
from simulator.controller import ConstantController, default_controller
from simulator.model import CANONICAL_POINTS, COUNTERS, SiteModel, extra_point_names
from simulator.payloads import telemetry
from simulator.sites import CITIES, MODELS, make_site, make_sites

POINT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
CANONICAL = {  # docs/protocol.md, "Point names"
    "meter.grid.p", "meter.grid.e_import", "meter.grid.e_export", "meter.load.p",
    "meter.load.e", "meter.pv.p", "meter.pv.e", "pcs.p", "pcs.q", "pcs.e_charge",
    "pcs.e_discharge", "pcs.state", "bms.soc", "bms.soh", "bms.v", "bms.i", "bms.t_min",
    "bms.t_max", "bms.cell_v_min", "bms.cell_v_max",
}
START = datetime(2026, 6, 15, tzinfo=ZoneInfo("UTC")).timestamp()  # a Monday in June


def simulate(site, steps, dt_s=300.0, controller=None, start=START, **options):
    """Run a site model and return its samples."""
    model = SiteModel(site, controller or default_controller(site), **options)
    return model, [model.step(start + k * dt_s, dt_s) for k in range(1, steps + 1)]


@pytest.fixture(scope="module")
def fleet_runs():
    """Three days at 5-minute steps for a few sites of two seeds."""
    sites = make_sites(4, seed=11) + make_sites(2, seed=12)
    return [(site, *simulate(site, 3 * 288)) for site in sites]


def test_grid_is_load_minus_pv_minus_battery_at_every_sample(fleet_runs):
    for _, _, samples in fleet_runs:
        for sample in samples:
            v = sample.values
            assert v["meter.grid.p"] == pytest.approx(
                v["meter.load.p"] - v["meter.pv.p"] - v["pcs.p"], abs=1e-9)


def test_counters_grow_by_the_integral_of_power(fleet_runs):
    hours = 300 / 3600
    for _, _, samples in fleet_runs:
        for before, after in pairwise(samples):
            grow = {name: after.values[name] - before.values[name] for name in COUNTERS}
            v = after.values
            assert grow["meter.load.e"] == pytest.approx(v["meter.load.p"] * hours)
            assert grow["meter.pv.e"] == pytest.approx(v["meter.pv.p"] * hours, abs=1e-9)
            assert grow["meter.grid.e_import"] - grow["meter.grid.e_export"] == pytest.approx(
                v["meter.grid.p"] * hours, abs=1e-6)
            assert grow["pcs.e_discharge"] - grow["pcs.e_charge"] == pytest.approx(
                v["pcs.p"] * hours, abs=1e-6)
            assert min(grow.values()) >= 0


def test_soc_stays_in_bounds_and_follows_energy_and_efficiency(fleet_runs):
    for site, model, samples in fleet_runs:
        for before, after in pairwise(samples):
            soc = after.values["bms.soc"]
            assert 10 - 1e-9 <= soc <= 95 + 1e-9
            expected = battery.soc_change(model.battery, after.values["pcs.p"], 300)
            assert soc - before.values["bms.soc"] == pytest.approx(expected, abs=1e-9)
            assert abs(after.values["pcs.p"]) <= site.rated_power_kw + 1e-9
        soc_range = [s.values["bms.soc"] for s in samples]
        assert max(soc_range) - min(soc_range) > 5, "the battery should actually cycle"


def test_self_consumption_charges_from_pv_by_day_and_discharges_at_night():
    for site in make_sites(4, seed=11):
        _, samples = simulate(site, 3 * 288, controller=ConstantController())
        states = {s.values["pcs.state"] for s in samples}
        assert {2, 3} <= states, site.name
        charging = [s for s in samples if s.values["pcs.state"] == 2]
        assert all(s.values["meter.pv.p"] > 0 for s in charging)


@pytest.mark.parametrize(("city", "latitude", "longitude", "timezone"), CITIES)
def test_pv_is_zero_at_local_night_and_produces_at_local_noon(city, latitude, longitude,
                                                              timezone):
    site = next(s for s in make_sites(60, seed=3) if s.city == city)
    zone = ZoneInfo(timezone)
    for day in range(0, 365, 7):
        date = datetime(2026, 1, 1, tzinfo=zone) + timedelta(days=day)
        for hour in (0, 1, 2, 3, 23):
            night = date.replace(hour=hour, minute=30).timestamp()
            assert physics.pv_power_kw(site, night) == 0.0, (city, date, hour)
    summer_noon = datetime(2026, 6, 21, 13, 0, tzinfo=zone).timestamp()
    assert physics.pv_power_kw(site, summer_noon) > 0.05 * site.pv_peak_kw


def test_clear_summer_noon_is_brighter_than_clear_winter_noon_in_europe():
    noon = {month: datetime(2026, month, 21, 13, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
            for month in (6, 12)}
    elevation = {m: physics.solar_elevation_deg(t, 52.5, 13.4) for m, t in noon.items()}
    assert elevation[6] == pytest.approx(61, abs=2)  # 90 − 52.5 + 23.4
    assert elevation[12] == pytest.approx(14, abs=2)  # 90 − 52.5 − 23.4


def test_clouds_pass_but_stay_within_physical_limits():
    site = make_site(1, seed=5)
    values = [physics.cloud_transmittance(site, START + k * 60) for k in range(14 * 1440)]
    assert min(values) >= 0.08 and max(values) <= 1.0
    assert max(values) - min(values) > 0.3


def test_weekday_load_is_higher_than_weekend_and_night_load():
    site = make_site(2, seed=8)
    zone = ZoneInfo(site.timezone)

    def mean_load(day, hour):
        start = datetime(2026, 6, day, hour, tzinfo=zone).timestamp()
        return sum(physics.load_power_kw(site, start + m * 60) for m in range(60)) / 60

    monday_noon, saturday_noon, monday_3am = mean_load(15, 12), mean_load(20, 12), mean_load(15, 3)
    assert monday_noon > monday_3am * 1.5
    assert monday_noon * site.weekend_share == pytest.approx(
        saturday_noon - site.load_peak_kw * site.load_base_share * (1 - site.weekend_share),
        rel=0.15)


def test_same_seed_same_fleet_and_samples_other_seed_differs():
    first, second, other = make_sites(3, seed=42), make_sites(3, seed=42), make_sites(3, seed=43)
    assert first == second and first != other
    assert [s.serial for s in first] == ["SIM-0001", "SIM-0002", "SIM-0003"]
    runs = [simulate(site, 200, fault_rate=5.0, extra_points=4)[1]
            for site in (first[0], second[0], other[0])]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_sites_use_the_documented_models_and_real_places():
    sites = make_sites(40, seed=1)
    assert {s.model for s in sites} == set(MODELS)
    for site in sites:
        assert (site.rated_power_kw, site.capacity_kwh) == MODELS[site.model][:2]
        ZoneInfo(site.timezone)
        assert -90 <= site.latitude <= 90 and -180 <= site.longitude <= 180
    assert len({s.name for s in sites}) == len(sites)


def test_samples_carry_every_canonical_point_and_valid_extra_names():
    site = make_site(1, seed=2)
    _, samples = simulate(site, 3, extra_points=12)
    names = set(samples[-1].values)
    assert names >= CANONICAL
    assert names - CANONICAL == set(extra_point_names(12))
    assert set(CANONICAL_POINTS) == CANONICAL
    assert all(POINT_NAME.match(name) and len(name) <= 64 for name in names)
    v = samples[-1].values
    cells = [v[name] for name in extra_point_names(12)]
    assert v["bms.cell_v_min"] <= min(cells) and max(cells) <= v["bms.cell_v_max"]
    assert v["bms.t_min"] < v["bms.t_max"]
    assert v["bms.i"] == pytest.approx(v["pcs.p"] * 1000 / v["bms.v"])
    assert extra_point_names(1200)[-1] == "bms.cell.v_1200"


def test_alarms_are_raised_then_cleared_and_trip_the_pcs():
    site = make_site(3, seed=4)
    _, samples = simulate(site, 2000, dt_s=60, fault_rate=2.0)
    events = [e for s in samples for e in s.alarms]
    raised = [e for e in events if e.state == "raised"]
    assert len(raised) > 10
    for event in raised:
        cleared = [e for e in events if e.code == event.code and e.state == "cleared"
                   and e.t > event.t]
        assert cleared or event.t > samples[-1].t - 1800, event
    assert {e.severity for e in events} <= {"critical", "major", "minor", "warning"}
    tripped = [s for s in samples if s.values["pcs.state"] == 4]
    assert tripped and all(s.values["pcs.p"] == 0 for s in tripped)


def test_a_held_alarm_is_raised_once_and_never_cleared_and_shows_in_the_readings():
    site = make_site(2, seed=4)
    model = SiteModel(site, default_controller(site), fault_rate=0.0)
    t0 = datetime(2026, 3, 2, 12, tzinfo=ZoneInfo("UTC")).timestamp()
    held = model.alarms.hold("BMS_CELL_IMBALANCE", t0)
    assert [(e.code, e.state, e.severity) for e in held] == [
        ("BMS_CELL_IMBALANCE", "raised", "minor")]
    assert model.alarms.hold("BMS_CELL_IMBALANCE", t0 + 1) == []  # already raised
    samples = [model.step(t0 + 60 * n, 60) for n in range(1, 200)]  # over 3 h
    assert not [e for s in samples for e in s.alarms]
    spread = samples[-1].values["bms.cell_v_max"] - samples[-1].values["bms.cell_v_min"]
    assert spread >= 0.060 and samples[-1].values["pcs.state"] != 4  # minor: no trip


def test_the_controller_decides_the_mode():
    site = make_site(1, seed=6)
    charge = ConstantController("charge", {"power_kw": site.rated_power_kw, "soc_max": 80})
    _, samples = simulate(site, 48, dt_s=600, controller=charge)
    assert samples[0].values["pcs.p"] == -site.rated_power_kw
    assert samples[-1].values["bms.soc"] == pytest.approx(80)
    with pytest.raises(battery.BatteryModeError):
        ConstantController("turbo", {})


def test_a_controller_asking_the_impossible_leaves_the_battery_idle():
    class Broken:
        def mode_at(self, t):
            return "discharge", {"power_kw": 10}

    _, samples = simulate(make_site(1, seed=6), 5, controller=Broken())
    assert all(s.values["pcs.p"] == 0 and s.values["pcs.state"] == 1 for s in samples)


def test_telemetry_payload_matches_the_protocol():
    _, samples = simulate(make_site(1, seed=2), 2)
    payload = telemetry(7, samples)
    assert payload["seq"] == 7 and len(payload["samples"]) == 2
    first = payload["samples"][0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert all(isinstance(value, int | float) for value in first["v"].values())
