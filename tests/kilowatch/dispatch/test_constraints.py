"""Each constraint of the dispatch LP on its own: the plan keeps it, and without it would not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kilowatch.dispatch import optimizer, rates
from tests.kilowatch.dispatch import helpers

N = 96  # one day
HOURS = np.arange(N) / 4


def day(load_peak=40.0, pv_peak=60.0):
    """A day of load (busy 8-18 h) and PV (a bell 6-18 h)."""
    load = 10 + load_peak * ((HOURS >= 8) & (HOURS < 18)) + 3 * np.sin(HOURS)
    pv = np.clip(pv_peak * np.sin((HOURS - 6) / 12 * np.pi), 0, None)
    return load, pv


TOU = helpers.tariff((0.10, 0.45), expensive=range(17, 21), export_rate=0.02)


def solve(**changes):
    load, pv = day()
    values = dict(load=load, pv=pv, rated=30.0, capacity=120.0, wear=0.005)
    values.update(changes)
    limit = values.pop("time_limit_s", 10.0)
    problem = helpers.problem(values.pop("tariff", TOU), values.pop("load"), values.pop("pv"),
                              **values)
    return optimizer.solve(dataclasses.replace(problem, time_limit_s=limit))


def replay_soc(solution, start_soc, capacity=120.0, efficiency=0.9):
    """The SoC after each step, integrated from the plan's battery power."""
    soc, result = start_soc, []
    for kw in solution.battery_kw:
        stored = -kw * 0.25 * efficiency if kw < 0 else -kw * 0.25 / efficiency
        soc += stored / capacity * 100
        result.append(soc)
    return np.array(result)


def test_soc_stays_within_per_step_limits_and_follows_the_power():
    soc_min = np.where((HOURS >= 12) & (HOURS < 14), 70.0, 20.0)
    soc_max = np.where(HOURS < 6, 60.0, 90.0)
    solution = solve(soc=50.0, soc_min=soc_min, soc_max=soc_max)
    assert np.all(solution.soc >= soc_min - 1e-6)
    assert np.all(solution.soc <= soc_max + 1e-6)
    assert solution.soc == pytest.approx(replay_soc(solution, 50.0), abs=1e-6)
    # The limits bind: without them the plan leaves these bands.
    free = solve(soc=50.0, soc_min=0.0, soc_max=100.0)
    assert free.soc.min() < 20 - 1 or free.soc.max() > 90 + 1


def test_a_soc_already_outside_its_limits_is_not_an_infeasible_plan():
    solution = solve(soc=5.0, soc_min=10.0)
    assert solution.soc.min() >= 5.0 - 1e-6


def test_power_never_exceeds_the_rating():
    solution = solve(rated=12.0)
    assert np.all(np.abs(solution.battery_kw) <= 12.0 + 1e-6)
    assert np.all(solution.charge_kw + solution.discharge_kw <= 12.0 + 1e-6)
    assert np.abs(solve(rated=60.0).battery_kw).max() > 12.0 + 1


def test_grid_limit_holds_import_and_export():
    load, pv = day(load_peak=60, pv_peak=90)
    free = solve(load=load, pv=pv)
    grid = load - pv - free.battery_kw
    assert grid.max() > 35 + 3  # without the limit the grid goes further
    held = solve(load=load, pv=pv, grid_limit=35.0)
    grid = load - pv - held.battery_kw
    assert grid.max() <= 35 + 1e-6 and grid.min() >= -35 - 1e-6


def test_grid_limit_beyond_the_batterys_reach_is_infeasible_with_a_reason():
    load, pv = day(load_peak=60)
    with pytest.raises(optimizer.DispatchInfeasible, match="grid limit 20 kW cannot be held"):
        solve(load=load, pv=pv * 0, grid_limit=20.0)


def test_grid_limit_needing_more_energy_than_stored_is_infeasible():
    load = np.full(N, 40.0)
    with pytest.raises(optimizer.DispatchInfeasible, match="no dispatch"):
        solve(load=load, pv=np.zeros(N), grid_limit=25.0, soc=30.0)


def test_reserve_soc_hours_are_kept():
    reserve = np.where(HOURS >= 17, 60.0, 10.0)  # a backup reserve over the expensive evening
    held = solve(soc=90.0, soc_min=reserve)
    assert np.all(held.soc[HOURS >= 17] >= 60 - 1e-6)
    assert solve(soc=90.0).soc[HOURS >= 17].min() < 60 - 1


def test_no_export_hours_keep_the_battery_off_the_grid():
    selling = helpers.tariff((0.10, 0.10), sells=(0.30, 0.30))  # exporting pays more than buying
    afternoon = slice(48, 80)  # 12:00-20:00: selling above buying is mixed-integer, keep it short
    load, pv = (values[afternoon] for values in day())
    closed = HOURS[afternoon] >= 16
    held = solve(tariff=selling, load=load, pv=pv, soc=90.0, export=~closed)
    from_battery = held.battery_kw[closed]
    assert np.all(from_battery <= np.maximum(load - pv, 0)[closed] + 1e-6)
    free = solve(tariff=selling, load=load, pv=pv, soc=90.0)
    assert np.any(free.battery_kw[closed] > np.maximum(load - pv, 0)[closed] + 1)


def peak_of(solution):
    return float(solution.import_kw.max())


DEMAND = helpers.tariff((0.10, 0.10), flat_kw=12.0)


def test_demand_charge_shaves_the_peak_from_an_empty_month():
    load, _ = day()
    solution = solve(tariff=DEMAND, load=load, pv=np.zeros(N), soc=90.0)
    assert peak_of(solution) < load.max() - 10
    demand = solution.prices.demand_groups[0]
    assert demand.prior_kw == 0.0
    assert demand.cost(peak_of(solution)) == pytest.approx(12.0 * peak_of(solution))


def test_demand_is_charged_only_above_the_months_peak_so_far():
    load, _ = day()
    so_far = rates.MonthToDate((2026, 6), peaks_kw={("flat", 0): 80.0})  # above any import
    high = solve(tariff=DEMAND, load=load, pv=np.zeros(N), soc=90.0, so_far=so_far)
    energy_only = solve(tariff=helpers.tariff((0.10, 0.10)), load=load, pv=np.zeros(N), soc=90.0)
    assert high.bill_cost == pytest.approx(energy_only.bill_cost, abs=1e-6)  # no demand part
    so_far = rates.MonthToDate((2026, 6), peaks_kw={("flat", 0): 45.0})
    middle = solve(tariff=DEMAND, load=load, pv=np.zeros(N), soc=90.0, so_far=so_far)
    # It shaves down to the month's peak and not below: lower would cost wear for nothing.
    assert peak_of(middle) == pytest.approx(45.0, abs=1e-6)


def test_missing_forecast_values_and_bad_steps_are_data_errors():
    load, _ = day()
    load[10] = np.nan
    with pytest.raises(optimizer.DispatchDataMissing, match="load_kw has missing values"):
        solve(load=load)
    problem = helpers.problem(TOU, *day(), rated=30.0, capacity=120.0)
    starts = list(problem.starts)
    starts[5] = starts[4]
    with pytest.raises(optimizer.DispatchDataMissing, match="15 minutes apart"):
        optimizer.solve(dataclasses.replace(problem, starts=starts))


def test_a_solver_out_of_time_is_a_timeout():
    load, pv = (np.tile(values, 31) for values in day())
    problem = helpers.problem(DEMAND, load, pv, rated=30.0, capacity=120.0,
                              first=helpers.JUNE)
    with pytest.raises(optimizer.DispatchTimeout, match="no optimal plan"):
        optimizer.solve(dataclasses.replace(problem, time_limit_s=1e-4))
