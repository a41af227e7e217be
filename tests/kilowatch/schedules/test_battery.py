"""The battery model: modes, power and SoC limits, efficiency and energy bookkeeping."""

from __future__ import annotations

import random

import pytest

from kilowatch.schedules import battery

PACK = battery.Battery(rated_power_kw=50, capacity_kwh=100, charge_efficiency=0.95,
                       discharge_efficiency=0.9)
HOUR = 3600.0


def run(mode, params, soc=50.0, load_kw=0.0, pv_kw=0.0, dt_s=HOUR):
    """One step of the test pack."""
    return battery.step(PACK, soc, mode, params, load_kw=load_kw, pv_kw=pv_kw, dt_s=dt_s)


def test_idle_holds_power_and_soc():
    result = run("idle", {}, soc=42.0, load_kw=30, pv_kw=10)
    assert result == battery.BatteryStep(0.0, 42.0)


def test_charge_stores_energy_times_charge_efficiency():
    result = run("charge", {"power_kw": 20, "soc_max": 90}, dt_s=1800)
    assert result.power_kw == -20
    assert result.soc == pytest.approx(50 + 20 * 0.5 * 0.95)


def test_discharge_takes_energy_divided_by_discharge_efficiency():
    result = run("discharge", {"power_kw": 18, "soc_min": 10}, dt_s=1800)
    assert result.power_kw == 18
    assert result.soc == pytest.approx(50 - 18 * 0.5 / 0.9)


@pytest.mark.parametrize(("mode", "params", "expected_kw"), [
    ("charge", {"power_kw": 500, "soc_max": 100}, -50),
    ("discharge", {"power_kw": 500, "soc_min": 0}, 50),
])
def test_power_is_limited_to_the_rating(mode, params, expected_kw):
    assert run(mode, params, dt_s=60).power_kw == expected_kw


def test_charge_stops_exactly_at_soc_max_with_a_partial_step():
    result = run("charge", {"power_kw": 50, "soc_max": 60}, soc=58.0)
    assert result.soc == 60.0
    assert result.power_kw == pytest.approx(-2.0 / 0.95)
    assert run("charge", {"power_kw": 50, "soc_max": 60}, soc=60.0).power_kw == 0


def test_discharge_stops_exactly_at_soc_min():
    result = run("discharge", {"power_kw": 50, "soc_min": 20}, soc=21.0)
    assert result.soc == 20.0
    assert result.power_kw == pytest.approx(1.0 * 0.9)


def test_discharge_below_soc_min_neither_discharges_nor_charges():
    assert run("discharge", {"power_kw": 30, "soc_min": 20}, soc=15.0) == battery.BatteryStep(
        0.0, 15.0)


def test_self_consumption_covers_load_and_stores_pv_surplus():
    params = {"soc_min": 10, "soc_max": 95}
    assert run("self_consumption", params, load_kw=30, pv_kw=12, dt_s=60).power_kw == 18
    assert run("self_consumption", params, load_kw=10, pv_kw=35, dt_s=60).power_kw == -25
    full = run("self_consumption", params, soc=95.0, load_kw=10, pv_kw=35, dt_s=60)
    assert full == battery.BatteryStep(0.0, 95.0)


def test_peak_shaving_discharges_above_the_limit_and_recharges_below_it():
    params = {"grid_limit_kw": 40, "soc_min": 20}
    assert run("peak_shaving", params, load_kw=65, dt_s=60).power_kw == 25
    assert run("peak_shaving", params, load_kw=30, dt_s=60).power_kw == -10
    assert run("peak_shaving", {**params, "soc_max": 50}, load_kw=30, dt_s=60).power_kw == 0
    assert run("peak_shaving", params, soc=20.0, load_kw=65, dt_s=60).power_kw == 0


def test_optimized_without_a_plan_behaves_as_self_consumption():
    optimized = run("optimized", {}, load_kw=30, pv_kw=12, dt_s=60)
    assert optimized == run("self_consumption", {"soc_min": 10, "soc_max": 95}, load_kw=30,
                            pv_kw=12, dt_s=60)


@pytest.mark.parametrize(("mode", "params", "message"), [
    ("boost", {}, "unknown mode"),
    ("charge", {"power_kw": 10}, "needs soc_max"),
    ("discharge", {"soc_min": 10}, "needs power_kw"),
    ("peak_shaving", {"soc_min": 10}, "needs grid_limit_kw"),
    ("self_consumption", {"soc_min": 80, "soc_max": 20}, "soc_min must not be above"),
    ("charge", {"power_kw": -5, "soc_max": 90}, "must not be negative"),
    ("charge", {"power_kw": 5, "soc_max": 120}, "between 0 and 100"),
    ("discharge", {"power_kw": "fast", "soc_min": 10}, "must be a number"),
    ("discharge", {"power_kw": float("nan"), "soc_min": 10}, "must be a number"),
])
def test_bad_modes_and_parameters_are_refused_with_a_reason(mode, params, message):
    with pytest.raises(battery.BatteryModeError, match=message):
        run(mode, params)


def test_random_operation_keeps_soc_in_bounds_and_energy_balanced():
    rng = random.Random(7)
    soc, charged, discharged = 50.0, 0.0, 0.0
    start = soc
    modes = [("charge", {"power_kw": 60, "soc_max": 90}),
             ("discharge", {"power_kw": 60, "soc_min": 15}),
             ("self_consumption", {"soc_min": 15, "soc_max": 90}),
             ("peak_shaving", {"grid_limit_kw": 20, "soc_min": 15, "soc_max": 90}),
             ("idle", {})]
    for _ in range(5000):
        mode, params = rng.choice(modes)
        dt_s = rng.uniform(1, 900)
        result = run(mode, params, soc=soc, load_kw=rng.uniform(0, 80),
                     pv_kw=rng.uniform(0, 80), dt_s=dt_s)
        assert -PACK.rated_power_kw <= result.power_kw <= PACK.rated_power_kw
        assert 15 - 1e-9 <= result.soc <= 90 + 1e-9
        assert result.soc - soc == pytest.approx(
            battery.soc_change(PACK, result.power_kw, dt_s), abs=1e-9)
        charged += max(-result.power_kw, 0) * dt_s / HOUR
        discharged += max(result.power_kw, 0) * dt_s / HOUR
        soc = result.soc
    stored_kwh = charged * 0.95 - discharged / 0.9
    assert (soc - start) / 100 * PACK.capacity_kwh == pytest.approx(stored_kwh, abs=1e-6)
    assert charged > 100 and discharged > 100


def test_ratings_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        battery.Battery(rated_power_kw=0, capacity_kwh=10)
    with pytest.raises(ValueError, match="efficiencies"):
        battery.Battery(rated_power_kw=5, capacity_kwh=10, charge_efficiency=1.2)
