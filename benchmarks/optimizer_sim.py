"""The simulated sites of benchmarks/optimizer.py: weather, load, strategies and their bills.

A site's load and PV come from the simulator's physics (``simulator/physics.py``)
minute by minute; a strategy runs the shared battery model
(``kilowatch/schedules/battery.py``) minute by minute in the mode it chooses, and its
15-minute grid import and export are billed by the bill engine
(``kilowatch.billing.scenarios.compute_bills``, as the savings page bills them).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from kilowatch.billing import bills, scenarios
from kilowatch.billing.tariffs import Tariff
from kilowatch.dispatch import forecast, optimizer, plan, rates, solar
from kilowatch.dispatch.forecast import Series
from kilowatch.schedules import battery
from simulator import physics
from simulator.sites import SiteSpec

MINUTE_S = 60.0
HISTORY_DAYS = 28
SOC_MIN, SOC_MAX, START_SOC = 10.0, 95.0, 50.0
PV_QUANTILE = None  # plan on the PV the site gets three times out of four
WEAR = 0.01  # per kWh charged or discharged, in the tariff's currency


@dataclasses.dataclass
class Weather:
    """Minute-by-minute load and PV (kW) of a site from ``start`` (UTC), and 15-minute means."""

    start: datetime
    load: np.ndarray
    pv: np.ndarray

    @property
    def load15(self) -> np.ndarray:
        return self.load.reshape(-1, 15).mean(axis=1)

    @property
    def pv15(self) -> np.ndarray:
        return self.pv.reshape(-1, 15).mean(axis=1)


def weather(site: SiteSpec, start: datetime, days: int) -> Weather:
    """The site's physics sampled mid-minute over ``days`` days."""
    t0 = start.timestamp()
    times = t0 + 30 + MINUTE_S * np.arange(days * 1440)
    return Weather(start, np.array([physics.load_power_kw(site, t) for t in times]),
                   np.array([physics.pv_power_kw(site, t) for t in times]))


def pack(site: SiteSpec) -> battery.Battery:
    """The site's storage as the battery model sees it."""
    return battery.Battery(rated_power_kw=site.rated_power_kw, capacity_kwh=site.capacity_kwh)


@dataclasses.dataclass
class Run:
    """A strategy's minute-by-minute battery power (kW, > 0 discharge) over the month."""

    battery_kw: np.ndarray
    soc_end: float


def simulate(site: SiteSpec, wx: Weather, offset_min: int, minutes: int,
             mode_of: Callable[[int], tuple[str, dict]], soc: float = START_SOC) -> Run:
    """Run the battery from minute ``offset_min`` for ``minutes``; ``mode_of(minute)`` decides."""
    unit, power = pack(site), np.zeros(minutes)
    for k in range(minutes):
        mode, params = mode_of(k)
        step = battery.step(unit, soc, mode, params, load_kw=wx.load[offset_min + k],
                            pv_kw=wx.pv[offset_min + k], dt_s=MINUTE_S)
        power[k], soc = step.power_kw, step.soc
    return Run(power, soc)


def flows(wx: Weather, offset_min: int, battery_kw: np.ndarray) -> list[scenarios.Flow]:
    """15-minute metered flows (kWh) of a run, as the site's meters would count them."""
    n = len(battery_kw)
    load, pv = wx.load[offset_min:offset_min + n], wx.pv[offset_min:offset_min + n]
    grid = load - pv - battery_kw
    per = 15
    imp = np.maximum(grid, 0).reshape(-1, per).sum(axis=1) / 60
    exp = np.maximum(-grid, 0).reshape(-1, per).sum(axis=1) / 60
    load_e, pv_e = load.reshape(-1, per).sum(axis=1) / 60, pv.reshape(-1, per).sum(axis=1) / 60
    start = wx.start + timedelta(minutes=offset_min)
    return [scenarios.Flow(start + k * forecast.STEP, float(imp[k]), float(exp[k]),
                           float(load_e[k]), float(pv_e[k])) for k in range(len(imp))]


def bill_of(tariff: Tariff, period: bills.BillingPeriod, month_flows: list[scenarios.Flow],
            until: datetime) -> tuple[float, float]:
    """The bills up to ``until``: without storage (pv_only) and with it (actual), totals."""
    result = scenarios.compute_bills(tariff, month_flows, period, until=until)
    return result["pv_only"].total, result["actual"].total


def local_hours(period: bills.BillingPeriod, minutes: int) -> tuple[np.ndarray, np.ndarray]:
    """Local hour and weekend flag of every minute of the month."""
    index = pd.date_range(period.start, periods=minutes, freq="1min").tz_convert(period.timezone)
    return np.asarray(index.hour), np.asarray(index.day_of_week >= 5)


def fixed_schedules(site: SiteSpec, tariff: Tariff, period: bills.BillingPeriod, wx: Weather,
                    offset: int, minutes: int, until: datetime) -> tuple[float, str]:
    """The best fixed time-of-use schedule: the lowest bill among a grid of them."""
    hours, weekend = local_hours(period, minutes)
    rate = np.array([tariff.energy_periods[tariff.energy_period(period.month, h, False)]
                     .tiers[0].rate for h in range(24)])
    cheap, dear = rate <= rate.min() + 1e-9, rate >= rate.max() - 1e-9
    rated = site.rated_power_kw
    net = np.maximum(wx.load15 - wx.pv15, 0)[offset // 15:(offset + minutes) // 15]
    dear_modes = [("discharge", {"power_kw": f * rated, "soc_min": SOC_MIN}) for f in (0.5, 1.0)]
    dear_modes += [("peak_shaving", {"grid_limit_kw": round(float(q), 1), "soc_min": SOC_MIN})
                   for q in np.quantile(net, (0.6, 0.8, 0.95))]
    best = (np.inf, "")
    for charge_f in (0.0, 0.25, 0.5, 1.0):
        for dear_mode in dear_modes:
            for rest in ("self_consumption", "idle"):
                rest_mode = (rest, {"soc_min": SOC_MIN, "soc_max": SOC_MAX}
                             if rest != "idle" else {})

                def mode_of(k, charge_f=charge_f, dear_mode=dear_mode, rest_mode=rest_mode):
                    if weekend[k]:
                        return rest_mode
                    if dear[hours[k]]:
                        return dear_mode
                    if cheap[hours[k]] and charge_f:
                        return "charge", {"power_kw": charge_f * rated, "soc_max": SOC_MAX}
                    return rest_mode

                run = simulate(site, wx, offset, minutes, mode_of)
                _, total = bill_of(tariff, period, flows(wx, offset, run.battery_kw), until)
                if total < best[0]:
                    best = (total, f"charge {charge_f:g}×P in cheap hours, {dear_mode[0]} "
                                   f"{dear_mode[1]} in dear hours, {rest} otherwise")
    return best


def perfect_foresight(site: SiteSpec, tariff: Tariff, period: bills.BillingPeriod, wx: Weather,
                      offset: int, steps: int, until: datetime) -> tuple[float, float]:
    """The LP over the whole month with the real 15-minute load and PV: (bill, solve s)."""
    first = offset // 15
    load, pv = wx.load15[first:first + steps], wx.pv15[first:first + steps]
    problem = optimizer.Problem(
        tariff=tariff, timezone=site.timezone, starts=forecast.step_starts(period.start, steps),
        load_kw=load, pv_kw=pv, battery=pack(site), soc=START_SOC,
        soc_min=np.full(steps, SOC_MIN), soc_max=np.full(steps, SOC_MAX),
        export_allowed=np.ones(steps, bool), wear_cost_per_kwh=WEAR, time_limit_s=900)
    solution = optimizer.solve(problem)
    grid = load - pv - solution.battery_kw
    month_flows = [scenarios.Flow(start, max(g, 0) * 0.25, max(-g, 0) * 0.25, lo * 0.25,
                                  p * 0.25)
                   for start, g, lo, p in zip(problem.starts, grid, load, pv, strict=True)]
    return bill_of(tariff, period, month_flows, until)[1], solution.solve_s


@dataclasses.dataclass
class Receding:
    """The optimiser's month: its battery power, and the time each re-plan took."""

    battery_kw: np.ndarray
    plan_s: list[float]
    plan_cpu_s: list[float]
    solve_s: list[float]
    failures: int
    load_mae: list[float]
    pv_mae: list[float]
    trace: list[tuple]  # per step: start, mode, params, SoC before, planned and metered import


def receding_horizon(site: SiteSpec, tariff: Tariff, period: bills.BillingPeriod, wx: Weather,
                     offset: int, steps: int, follow: str, oracle: bool = False) -> Receding:
    """Re-plan every 15 minutes from forecasts, run the first step's mode, measure the bill.

    ``oracle`` plans on the real load and PV instead (what forecast errors cost).
    """
    first, soc = offset // 15, START_SOC
    load15, pv15 = wx.load15, wx.pv15
    so_far = rates.MonthToDate((period.year, period.month))
    tz = period.tz
    power, plan_s, plan_cpu_s, solve_s = np.zeros(steps * 15), [], [], []
    failures, load_mae, pv_mae = 0, [], []
    model, trace = None, []
    for k in range(steps):
        now = period.start + k * forecast.STEP
        index = first + k
        history_load = Series(wx.start, load15[:index])
        history_pv = Series(wx.start, pv15[:index])
        began, began_cpu = time.perf_counter(), time.process_time()
        if k % 96 == 0:  # the PV model is refitted once a day
            model = solar.fit_pv(Series(wx.start + (index - 14 * 96) * forecast.STEP,
                                        pv15[index - 14 * 96:index]), site.latitude,
                                 site.longitude)
        load_f = forecast.forecast_load(history_load, site.timezone, now)
        pv_planned = solar.forecast_pv(model, history_pv, now, forecast.HORIZON_STEPS,
                                       quantile=plan.pv_quantile(tariff))
        if oracle:
            load_f = load15[index:index + forecast.HORIZON_STEPS]
            pv_planned = pv15[index:index + forecast.HORIZON_STEPS]
        problem = optimizer.Problem(
            tariff=tariff, timezone=site.timezone,
            starts=forecast.step_starts(now, forecast.HORIZON_STEPS), load_kw=load_f,
            pv_kw=pv_planned, battery=pack(site), soc=soc,
            soc_min=np.full(forecast.HORIZON_STEPS, SOC_MIN),
            soc_max=np.full(forecast.HORIZON_STEPS, SOC_MAX),
            export_allowed=np.ones(forecast.HORIZON_STEPS, bool), wear_cost_per_kwh=WEAR,
            so_far=so_far, time_limit_s=5.0)
        planned = None
        try:
            made = plan.make_plan(problem, follow=follow)
            mode, params = made.steps[0].mode, made.steps[0].params
            solve_s.append(made.solve_s)
            planned = made.steps[0].grid_kw
        except optimizer.DispatchError:
            failures += 1
            mode, params = "self_consumption", {"soc_min": SOC_MIN, "soc_max": SOC_MAX}
        plan_s.append(time.perf_counter() - began)
        plan_cpu_s.append(time.process_time() - began_cpu)
        if k % 16 == 0:  # the accuracy of the plain forecasts, not the quantile planned on
            actual = slice(index, index + forecast.HORIZON_STEPS)
            pv_f = solar.forecast_pv(model, history_pv, now, forecast.HORIZON_STEPS)
            load_mae.append(float(np.mean(np.abs(load_f - load15[actual]))))
            pv_mae.append(float(np.mean(np.abs(pv_f - pv15[actual]))))
        soc_before = soc
        run = simulate(site, wx, offset + k * 15, 15, lambda _m, m=mode, p=params: (m, p), soc)
        power[k * 15:(k + 1) * 15], soc = run.battery_kw, run.soc_end
        metered = flows(wx, offset + k * 15, run.battery_kw)[0]
        trace.append((now, mode, params, soc_before, planned, metered.grid_import * 4))
        so_far = so_far.add(tariff, tz, _interval(metered, tariff))
    return Receding(power, plan_s, plan_cpu_s, solve_s, failures, load_mae, pv_mae, trace)


def _interval(flow: scenarios.Flow, tariff: Tariff) -> bills.Interval:
    [interval] = scenarios.scenario_intervals([flow], "actual", tariff.export_compensation)
    return interval


def month_offset(period: bills.BillingPeriod, wx: Weather) -> int:
    """Minutes from the weather's start to the month's start."""
    return round((period.start - wx.start.astimezone(UTC)).total_seconds() / 60)
