"""The LP against brute force: every discretised dispatch of a few steps, billed by the bill engine.

Each case enumerates the battery powers {−rated, −rated/2, 0, rated/2, rated} on
every step of a 5-step horizon, keeps those the SoC limits allow, and bills each
with :func:`kilowatch.billing.bills.compute_bill` (what it adds to the month's bill
so far, plus wear). The LP's plan must cost no more than the best of them, and
what the LP says its plan costs must be what the bill engine charges for it.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from kilowatch.dispatch import optimizer
from tests.kilowatch.dispatch import helpers
from tests.kilowatch.dispatch.helpers import JUNE, STEP

LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)
RATED, CAPACITY, EFFICIENCY, WEAR = 10.0, 5.0, 0.9, 0.01


def brute_force(tariff, history, first, load, pv, soc, soc_min, soc_max, export=None):
    """The cheapest discretised dispatch and its cost (bill engine + wear)."""
    best = (np.inf, None)
    for choice in itertools.product(LEVELS, repeat=len(load)):
        power = np.array(choice) * RATED
        level, ok = soc, True
        for k, kw in enumerate(power):
            stored = -kw * 0.25 * EFFICIENCY if kw < 0 else -kw * 0.25 / EFFICIENCY
            level += stored / CAPACITY * 100
            ok &= min(soc_min, soc) - 1e-9 <= level <= max(soc_max, soc) + 1e-9
            if export is not None and not export[k]:
                ok &= kw <= max(load[k] - pv[k], 0.0) + 1e-9
        if not ok:
            continue
        cost = helpers.oracle(tariff, history, first, load, pv, power)
        cost += WEAR * 0.25 * float(np.abs(power).sum())
        if cost < best[0]:
            best = (cost, power)
    return best


CASES = {
    "time-of-use, interval net billing": dict(tariff=helpers.tariff()),
    "net metering": dict(tariff=helpers.tariff(compensation="net_metering", export_rate=0.03)),
    "hourly net billing, this hour begun": dict(
        tariff=helpers.tariff(netting="hourly", export_rate=0.02), history_steps=2),
    "hourly net billing, this hour exported so far": dict(
        tariff=helpers.tariff(netting="hourly", export_rate=0.02), history_steps=2,
        history_kw=-20.0),
    "buy all, sell all": dict(tariff=helpers.tariff(compensation="buy_all_sell_all",
                                                    export_rate=0.07)),
    "flat and time-of-use demand": dict(tariff=helpers.tariff(flat_kw=2.0, tou_kw=3.0)),
    "demand above a peak so far": dict(tariff=helpers.tariff(flat_kw=4.0), history_steps=3,
                                       history_kw=9.0),
    "selling above buying (binary)": dict(tariff=helpers.tariff(sells=(0.2, 0.1))),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [1, 2])
def test_lp_matches_brute_force(name, seed):
    case = CASES[name]
    tariff = case["tariff"]
    rng = random.Random(f"{name}:{seed}")
    steps = case.get("history_steps", 0)
    history_kw = case.get("history_kw", 5.0)
    history = []
    for k in range(steps):
        kwh = abs(history_kw) * 0.25 * rng.uniform(0.5, 1.0)
        flows = (kwh, 0.0) if history_kw > 0 else (0.0, kwh)  # a negative history_kw exports
        history.append(helpers.Interval(JUNE + k * STEP, *flows))
    first = JUNE + steps * STEP
    load = [rng.uniform(2, 14) for _ in range(5)]
    pv = [rng.uniform(0, 10) for _ in range(5)]
    soc = rng.uniform(20, 80)
    so_far = helpers.month_so_far(tariff, history, first)
    problem = helpers.problem(tariff, load, pv, first=first, soc=soc, rated=RATED,
                              capacity=CAPACITY, wear=WEAR, so_far=so_far, efficiency=EFFICIENCY)
    solution = optimizer.solve(problem)
    claimed = solution.bill_cost + solution.wear_cost
    billed = helpers.oracle(tariff, history, first, load, pv, solution.battery_kw)
    billed += solution.wear_cost
    best, best_power = brute_force(tariff, history, first, load, pv, soc, 10.0, 95.0)
    assert claimed == pytest.approx(billed, abs=1e-6)
    assert claimed == pytest.approx(solution.objective, abs=1e-6)
    assert claimed <= best + 1e-6, f"brute force found {best_power} at {best} < {claimed}"


def test_no_export_hours_against_brute_force():
    tariff = helpers.tariff(sells=(0.3, 0.3), rates_kwh=(0.2, 0.2))
    load, pv = [4.0, 3.0, 6.0, 2.0, 5.0], [0.0, 0.0, 1.0, 0.0, 0.0]
    export = [True, False, False, True, False]
    problem = helpers.problem(tariff, load, pv, soc=90.0, rated=RATED, capacity=CAPACITY,
                              export=export, wear=WEAR, efficiency=EFFICIENCY)
    solution = optimizer.solve(problem)
    best, _ = brute_force(tariff, [], JUNE, load, pv, 90.0, 10.0, 95.0, export)
    assert solution.bill_cost + solution.wear_cost <= best + 1e-6
    grid = np.array(load) - np.array(pv) - solution.battery_kw
    closed = ~np.array(export)
    assert np.all(grid[closed] >= -1e-6)  # the battery never pushes these steps into export
    assert grid[~closed].min() < -1  # where allowed, selling at 0.30 above buying 0.20 pays
