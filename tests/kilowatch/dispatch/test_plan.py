"""Plans: the schedule's limits, the modes a device runs, and what a plan says about itself."""

from __future__ import annotations

import numpy as np
import pytest

from kilowatch.dispatch import plan as plans
from kilowatch.schedules import battery
from tests.kilowatch.dispatch import helpers
from tests.kilowatch.dispatch.test_constraints import HOURS, TOU, N, day

SCHEDULE = {
    "timezone": "UTC", "default_mode": "optimized", "default_params": {},
    "periods": [{"days": ["mon"], "start": "06:00", "end": "09:00", "mode": "self_consumption",
                 "soc_min": 40, "soc_max": 80},
                {"days": ["mon"], "start": "18:00", "end": "20:00", "mode": "discharge",
                 "power_kw": 20, "soc_min": 25}],
    "exceptions": [],
}


def test_schedule_limits_follow_the_weekly_schedule_hour_by_hour():
    starts = helpers.starts(N)  # Monday 1 June 2026, UTC
    soc_min, soc_max, export = plans.schedule_limits(SCHEDULE, starts)
    morning, evening = (HOURS >= 6) & (HOURS < 9), (HOURS >= 18) & (HOURS < 20)
    assert set(soc_min[morning]) == {40} and set(soc_max[morning]) == {80}
    assert not export[morning].any()  # self-consumption never exports from the battery
    assert set(soc_min[evening]) == {25} and export[evening].all()
    rest = ~morning & ~evening
    assert set(soc_min[rest]) == {10} and set(soc_max[rest]) == {95} and export[rest].all()
    assert [a.tolist() for a in plans.schedule_limits(None, starts[:2])] == [
        [10, 10], [95, 95], [True, True]]


def make(follow="grid", **changes):
    load, pv = day()
    values = dict(rated=30.0, capacity=120.0, wear=0.005, soc=50.0)
    values.update(changes)
    problem = helpers.problem(values.pop("tariff", TOU), load, pv, **values)
    return problem, plans.make_plan(problem, follow=follow)


@pytest.mark.parametrize("follow", plans.FOLLOW)
def test_a_device_running_the_modes_on_the_forecast_ends_where_the_plan_says(follow):
    problem, plan = make(follow, tariff=helpers.tariff((0.1, 0.4), expensive=range(17, 21),
                                                       flat_kw=8.0))
    pack = battery.Battery(rated_power_kw=30.0, capacity_kwh=120.0, charge_efficiency=0.9,
                           discharge_efficiency=0.9)
    soc = problem.soc
    for step in plan.steps:
        result = battery.step(pack, soc, step.mode, step.params, load_kw=step.load_kw,
                              pv_kw=step.pv_kw, dt_s=900)
        assert result.power_kw == pytest.approx(step.battery_kw, abs=0.05), step
        soc = result.soc
        assert soc == pytest.approx(step.soc, abs=0.05)
    modes = {step.mode for step in plan.steps}
    assert "self_consumption" in modes  # PV surplus soaked up at zero grid
    # Grid following holds every import; power following runs fixed powers off the peak.
    assert ({"charge", "discharge"} & modes) == (set() if follow == "grid" else {"charge",
                                                                                 "discharge"})


def test_plan_costs_savings_and_reasons():
    tariff = helpers.tariff((0.1, 0.4), expensive=range(17, 21), flat_kw=8.0)
    problem, plan = make(tariff=tariff)
    assert plan.savings > 0
    assert plan.expected_cost == pytest.approx(
        helpers.oracle(tariff, [], helpers.JUNE, problem.load_kw, problem.pv_kw,
                       [s.battery_kw for s in plan.steps]), abs=1e-6)
    assert plan.cost_without_battery == pytest.approx(
        helpers.oracle(tariff, [], helpers.JUNE, problem.load_kw, problem.pv_kw, np.zeros(N)),
        abs=1e-6)
    [peak] = plan.peaks
    load_net = np.maximum(problem.load_kw - problem.pv_kw, 0)
    assert peak.without_battery_kw == pytest.approx(load_net.max())
    assert peak.planned_kw < peak.without_battery_kw
    why = plan.why()
    assert why[0].startswith(f"monthly demand 2026-06: holds the peak to "
                             f"{peak.planned_kw:.1f} kW")
    evening = [w for w in plan.windows if w.kind == "discharge" and w.start.hour <= 17
               and w.end.hour >= 21]  # the expensive hours 17:00-21:00
    assert len(evening) == 1 and evening[0].rate > 0.3
    assert f"{evening[0].start:%H:%M}–21:00: {evening[0].kwh:.1f} kWh" in "\n".join(why)
    assert any(line.startswith("charge Mon ") for line in why)
    body = plan.to_json()
    assert len(body["steps"]) == N and body["savings"] == pytest.approx(plan.savings, abs=1e-4)
    assert body["steps"][0]["start"] == "2026-06-01T00:00:00+00:00"


def test_follow_must_be_known():
    with pytest.raises(ValueError, match="follow must be one of grid, power"):
        make("soc")
