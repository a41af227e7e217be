"""A dispatch plan: per-step setpoints a storage device can follow, what they cost, and why.

:func:`make_plan` solves :mod:`kilowatch.dispatch.optimizer`'s LP and turns each step
into a mode of docs/schedules.md, so a device runs it with the shared battery model
(:mod:`kilowatch.schedules.battery`) and reacts within the step to what the forecast
missed:

- no battery power: ``idle``, or under a demand charge ``peak_shaving`` at the planned
  peak that never recharges (a load above the peak is still shaved);
- the grid held at zero: ``self_consumption``;
- importing while the battery works (``follow="grid"``, the default): ``peak_shaving``
  with the planned import as its grid limit, so a load above the forecast is met
  by the battery and not by a new peak;
- otherwise ``charge`` or ``discharge`` at the planned power.

The schedule's own limits for the same hours (:func:`schedule_limits`) bound the plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from kilowatch.billing.tariffs import Tariff
from kilowatch.dispatch.optimizer import STEP, Problem, Solution, solve
from kilowatch.dispatch.rates import STEP_H, horizon_cost
from kilowatch.schedules.battery import check_mode
from kilowatch.schedules.program import mode_at

FOLLOW = ("grid", "power")
PV_QUANTILE = 0.25
_EXPORTING_MODES = ("optimized", "discharge")  # the other modes never discharge to the grid


def pv_quantile(tariff: Tariff) -> float | None:
    """The PV forecast quantile to plan on: cautious on energy, the plain forecast under demand.

    Missing PV costs more than surplus PV (energy bought at a dear hour against a
    cheap one, or a sunny surplus sold cheap), so plans count on the PV the site gets
    three times out of four. Under demand charges that caution would raise the
    planned peak, which the device then holds, so the plain forecast is used.
    """
    if tariff.demand_periods or tariff.flat_demand_periods:
        return None
    return PV_QUANTILE


def schedule_limits(schedule: dict | None,
                    starts: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return per step the reserve SoC, the SoC ceiling (%) and whether the battery may export.

    Hours the schedule gives to another mode keep that mode's ``soc_min``/``soc_max``
    and, unless it is ``discharge``, its promise never to export from the battery.
    """
    base = check_mode("optimized", {})
    soc_min, soc_max = np.full(len(starts), base["soc_min"]), np.full(len(starts), base["soc_max"])
    export = np.ones(len(starts), dtype=bool)
    if schedule is None:
        return soc_min, soc_max, export
    for index, start in enumerate(starts):
        setpoint = mode_at(schedule, start)
        soc_min[index] = setpoint.params.get("soc_min", soc_min[index])
        soc_max[index] = setpoint.params.get("soc_max", soc_max[index])
        export[index] = setpoint.mode in _EXPORTING_MODES
    return soc_min, soc_max, export


@dataclasses.dataclass(frozen=True)
class PlanStep:
    """One step: the mode to run and what the plan expects (kW: battery > 0 discharges)."""

    start: datetime
    mode: str
    params: dict[str, float]
    battery_kw: float
    soc: float
    grid_kw: float
    load_kw: float
    pv_kw: float
    cost: float


@dataclasses.dataclass(frozen=True)
class Window:
    """A run of consecutive charging or discharging steps."""

    kind: str
    start: datetime
    end: datetime
    kwh: float
    rate: float


@dataclasses.dataclass(frozen=True)
class Peak:
    """A demand charge's peak: the month's so far, without the battery and as planned (kW)."""

    label: str
    so_far_kw: float
    without_battery_kw: float
    planned_kw: float


@dataclasses.dataclass(frozen=True)
class Plan:
    """The plan of one horizon, its expected costs and the reasons for it."""

    timezone: str
    steps: tuple[PlanStep, ...]
    expected_cost: float
    cost_without_battery: float
    wear_cost: float
    peaks: tuple[Peak, ...]
    windows: tuple[Window, ...]
    solve_s: float

    @property
    def savings(self) -> float:
        """What the battery is expected to save over the horizon (bill only, before wear)."""
        return self.cost_without_battery - self.expected_cost

    def why(self) -> list[str]:
        """Say in a few lines what the plan does: the peaks it holds and its windows."""
        tz = ZoneInfo(self.timezone)
        lines = []
        for peak in self.peaks:
            lines.append(f"{peak.label}: holds the peak to {peak.planned_kw:.1f} kW "
                         f"(the month so far {peak.so_far_kw:.1f} kW, "
                         f"{peak.without_battery_kw:.1f} kW without the battery)")
        for window in self.windows:
            start, end = window.start.astimezone(tz), window.end.astimezone(tz)
            lines.append(f"{window.kind} {start:%a %H:%M}–{end:%H:%M}: {window.kwh:.1f} kWh "
                         f"at {window.rate:.4g}/kWh")
        lines.append(f"expected cost {self.expected_cost:.2f}, {self.savings:.2f} less than "
                     f"without the battery")
        return lines

    def to_json(self) -> dict[str, Any]:
        """Return the plan as plain JSON values (times in ISO 8601 UTC)."""
        return {
            "expected_cost": round(self.expected_cost, 4),
            "cost_without_battery": round(self.cost_without_battery, 4),
            "savings": round(self.savings, 4), "wear_cost": round(self.wear_cost, 4),
            "why": self.why(),
            "peaks": [dataclasses.asdict(peak) for peak in self.peaks],
            "windows": [{**dataclasses.asdict(w), "start": w.start.isoformat(),
                         "end": w.end.isoformat()} for w in self.windows],
            "steps": [{"start": s.start.isoformat(), "mode": s.mode, **s.params,
                       "battery_kw": round(s.battery_kw, 3), "soc": round(s.soc, 2),
                       "grid_kw": round(s.grid_kw, 3), "cost": round(s.cost, 5)}
                      for s in self.steps],
        }


def make_plan(problem: Problem, *, follow: str = "grid") -> Plan:
    """Solve the problem and return the plan (raises the optimizer's DispatchError)."""
    if follow not in FOLLOW:
        raise ValueError(f"follow must be one of {', '.join(FOLLOW)}")
    solution = solve(problem)
    prices = solution.prices
    billed = problem.load_kw - (0.0 if prices.sell_all_pv else problem.pv_kw)
    without = horizon_cost(prices, np.maximum(billed, 0.0), np.maximum(-billed, 0.0),
                           problem.pv_kw)
    caps = _caps(solution)
    grid = problem.load_kw - problem.pv_kw - solution.battery_kw
    step_cost = (prices.buy * solution.import_kw - prices.sell * solution.export_kw) * STEP_H
    steps = []
    for t, start in enumerate(problem.starts):
        mode, params = _setpoint(problem, solution, t, grid[t], caps[t], follow)
        steps.append(PlanStep(start, mode, params, float(solution.battery_kw[t]),
                              float(solution.soc[t]), float(grid[t]), float(problem.load_kw[t]),
                              float(problem.pv_kw[t]), float(step_cost[t])))
    peaks = tuple(
        Peak(group.label, group.prior_kw, float(np.max(np.maximum(billed, 0)[group.steps])),
             max(group.prior_kw, float(np.max(solution.import_kw[group.steps]))))
        for group in prices.demand_groups)
    return Plan(problem.timezone, tuple(steps), solution.bill_cost, without, solution.wear_cost,
                peaks, _windows(problem, solution), solution.solve_s)


def _caps(solution: Solution) -> np.ndarray:
    """The lowest planned demand peak each step must stay under (inf where none)."""
    caps = np.full(len(solution.import_kw), np.inf)
    for group in solution.prices.demand_groups:
        planned = max(group.prior_kw, float(np.max(solution.import_kw[group.steps])))
        caps[group.steps] = np.minimum(caps[group.steps], planned)
    return caps


def _setpoint(problem: Problem, solution: Solution, t: int, grid_kw: float, cap: float,
              follow: str) -> tuple[str, dict[str, float]]:
    power = float(solution.battery_kw[t])
    soc_min, soc_max = float(problem.soc_min[t]), float(problem.soc_max[t])
    quiet = 1e-3 * problem.battery.rated_power_kw
    if abs(power) < quiet:
        if np.isfinite(cap) and not solution.prices.sell_all_pv:
            # Resting under a demand peak: shave a load above it, but never recharge.
            soc = float(solution.soc[t - 1]) if t else problem.soc
            return "peak_shaving", {"grid_limit_kw": round(cap, 3), "soc_min": min(soc_min, soc),
                                    "soc_max": soc}
        return "idle", {}
    if abs(grid_kw) < quiet:
        return "self_consumption", {"soc_min": soc_min, "soc_max": soc_max}
    holding = grid_kw > 0 and not solution.prices.sell_all_pv and (
        follow == "grid" or grid_kw >= cap - quiet or not problem.export_allowed[t])
    if holding:
        return "peak_shaving", {"grid_limit_kw": round(grid_kw, 3), "soc_min": soc_min,
                                "soc_max": soc_max}
    if power > 0:
        return "discharge", {"power_kw": round(power, 3), "soc_min": soc_min}
    return "charge", {"power_kw": round(-power, 3), "soc_max": soc_max}


def _windows(problem: Problem, solution: Solution) -> tuple[Window, ...]:
    quiet = 1e-3 * problem.battery.rated_power_kw
    kinds = np.where(solution.battery_kw > quiet, 1, np.where(solution.battery_kw < -quiet, -1, 0))
    windows, t = [], 0
    while t < len(kinds):
        if kinds[t] == 0:
            t += 1
            continue
        end = t
        while end + 1 < len(kinds) and kinds[end + 1] == kinds[t]:
            end += 1
        span = slice(t, end + 1)
        energy = np.abs(solution.battery_kw[span]) * STEP_H
        rate = float(np.average(solution.prices.buy[span], weights=energy))
        windows.append(Window("charge" if kinds[t] < 0 else "discharge", problem.starts[t],
                              problem.starts[end] + STEP, float(energy.sum()), rate))
        t = end + 1
    return tuple(windows)
