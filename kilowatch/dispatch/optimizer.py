"""The dispatch linear program: the battery power per 15-minute step that minimises the bill.

Variables per step ``t`` (powers are the step's average kW, AC at the inverter):
charge ``c``, discharge ``d``, grid import ``i``, grid export ``e`` and the state
of charge ``s`` (kWh at the end of the step). Constraints:

- balance: ``i − e = load − pv + c − d`` (buy-all-sell-all: PV is all sold, so the
  billed flows are ``load + c − d`` and the grid limit applies to the real net);
- storage: ``s_t = s_{t−1} + ¼ h × (η_c c − d / η_d)``, ``c + d <= rated power``,
  ``s`` within the step's SoC limits (a SoC already outside them may stay where it is);
- the site's grid limit on import and export; where the schedule forbids export,
  the battery only discharges what the site consumes: ``d − c <= max(load − pv, 0)``.

The objective is what the flows add to the bill (:mod:`kilowatch.dispatch.rates`,
the bill engine's rules) plus a wear cost per kWh charged or discharged. It is a
pure LP; binaries appear only on steps whose sell rate is above the buy rate,
where importing and exporting at once would otherwise pay.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

import highspy
import numpy as np
from scipy import sparse

from kilowatch.billing.tariffs import Tariff
from kilowatch.dispatch.rates import STEP_H, MonthToDate, Pricing, horizon_cost, pricing
from kilowatch.errors import UserFacingError
from kilowatch.schedules.battery import Battery

STEP = timedelta(minutes=15)
_INF = highspy.kHighsInf


class DispatchError(UserFacingError):
    """A plan could not be made; the message says why in one line."""


class DispatchInfeasible(DispatchError):
    """No battery dispatch satisfies the limits (grid limit, SoC, reserve)."""


class DispatchTimeout(DispatchError):
    """The solver ran out of time before it found the optimal plan."""


class DispatchDataMissing(DispatchError):
    """The plan lacks an input: a tariff, a forecast, a storage rating."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
    """One site's dispatch problem over a horizon of 15-minute steps starting at ``starts``."""

    tariff: Tariff
    timezone: str
    starts: Sequence[datetime]
    load_kw: np.ndarray
    pv_kw: np.ndarray
    battery: Battery
    soc: float
    soc_min: np.ndarray
    soc_max: np.ndarray
    export_allowed: np.ndarray
    grid_limit_kw: float | None = None
    wear_cost_per_kwh: float = 0.0
    so_far: MonthToDate | None = None
    time_limit_s: float = 10.0


@dataclasses.dataclass(frozen=True)
class Solution:
    """The optimal flows per step (kW), SoC after each step (%), and the horizon's costs."""

    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    import_kw: np.ndarray
    export_kw: np.ndarray
    soc: np.ndarray
    bill_cost: float
    wear_cost: float
    objective: float  # the solver's optimum: bill_cost + wear_cost up to its tolerance
    prices: Pricing
    solve_s: float

    @property
    def battery_kw(self) -> np.ndarray:
        """Battery AC power per step, > 0 discharge."""
        return self.discharge_kw - self.charge_kw


def check(problem: Problem) -> None:
    """Raise DispatchDataMissing or DispatchInfeasible for inputs no plan can serve."""
    n = len(problem.starts)
    if n == 0:
        raise DispatchDataMissing("the horizon has no steps")
    for name in ("load_kw", "pv_kw", "soc_min", "soc_max", "export_allowed"):
        values = np.asarray(getattr(problem, name))
        if values.shape != (n,):
            raise DispatchDataMissing(f"{name} has {values.size} values for {n} steps")
        if values.dtype != bool and not np.all(np.isfinite(values)):
            raise DispatchDataMissing(f"{name} has missing values")
    for a, b in zip(problem.starts, problem.starts[1:], strict=False):
        if b - a != STEP:
            raise DispatchDataMissing(f"steps must be 15 minutes apart ({a} then {b})")
    if not 0 <= problem.soc <= 100:
        raise DispatchDataMissing(f"state of charge {problem.soc} % is not within 0-100 %")
    limit = problem.grid_limit_kw
    if limit is not None:
        net = problem.load_kw - problem.pv_kw
        rated = problem.battery.rated_power_kw
        for index in np.flatnonzero((net - rated > limit + 1e-9) | (-net - rated > limit + 1e-9)):
            raise DispatchInfeasible(
                f"grid limit {limit:g} kW cannot be held at {problem.starts[index].isoformat()}: "
                f"the site's net load is {net[index]:.1f} kW and the battery's rating "
                f"{rated:g} kW")


def _columns(problem: Problem, n: int) -> dict[str, np.ndarray]:
    battery = problem.battery
    capacity = battery.capacity_kwh
    lower = np.minimum(problem.soc_min, problem.soc) * capacity / 100
    upper = np.maximum(problem.soc_max, problem.soc) * capacity / 100
    grid = _INF if problem.grid_limit_kw is None or problem.tariff.export_compensation == \
        "buy_all_sell_all" else problem.grid_limit_kw
    zeros = np.zeros(n)
    return {
        "lower": np.concatenate([zeros, zeros, zeros, zeros, lower]),
        "upper": np.concatenate([np.full(2 * n, battery.rated_power_kw), np.full(2 * n, grid),
                                 upper]),
    }


class _Builder:
    """Rows and extra columns of the LP, gathered as sparse triplets."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.rows = 0
        self.coo: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.row_lower: list[np.ndarray] = []
        self.row_upper: list[np.ndarray] = []
        self.extra_cost: list[np.ndarray] = []
        self.extra_lower: list[np.ndarray] = []
        self.extra_upper: list[np.ndarray] = []
        self.integer: list[int] = []

    def add_columns(self, count: int, cost, lower, upper) -> np.ndarray:
        """Add ``count`` columns after the step variables and return their indexes."""
        for values, into in ((cost, self.extra_cost), (lower, self.extra_lower),
                             (upper, self.extra_upper)):
            into.append(np.broadcast_to(np.asarray(values, float), (count,)))
        self.columns += count
        return np.arange(self.columns - count, self.columns)

    def add_column(self, cost: float, lower: float, upper: float) -> int:
        """Add one column after the step variables and return its index."""
        return int(self.add_columns(1, cost, lower, upper)[0])

    def add_rows(self, count: int, terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 lower, upper) -> None:
        """Add ``count`` rows; each term is (row offsets, columns, coefficients)."""
        for offsets, cols, values in terms:
            offsets = np.broadcast_to(offsets, np.shape(cols))
            self.coo.append((self.rows + offsets, np.asarray(cols),
                             np.broadcast_to(values, np.shape(cols)).astype(float)))
        self.row_lower.append(np.broadcast_to(np.asarray(lower, float), (count,)))
        self.row_upper.append(np.broadcast_to(np.asarray(upper, float), (count,)))
        self.rows += count


def _storage_rows(problem: Problem, out: _Builder, columns: tuple[np.ndarray, ...],
                  net: np.ndarray) -> None:
    """Balance, SoC integration and rating rows of one set of step columns."""
    col_c, col_d, col_i, col_e, col_s = columns
    n, battery = len(net), problem.battery
    steps = np.arange(n)
    out.add_rows(n, [(steps, col_i, 1.0), (steps, col_e, -1.0), (steps, col_c, -1.0),
                     (steps, col_d, 1.0)], net, net)
    start = np.r_[problem.soc / 100 * battery.capacity_kwh, np.zeros(n - 1)]
    out.add_rows(n, [(steps, col_s, 1.0), (steps[1:], col_s[:-1], -1.0),
                     (steps, col_c, -STEP_H * battery.charge_efficiency),
                     (steps, col_d, STEP_H / battery.discharge_efficiency)], start, start)
    out.add_rows(n, [(steps, col_c, 1.0), (steps, col_d, 1.0)], -_INF, battery.rated_power_kw)


def _build(problem: Problem, prices: Pricing) -> tuple[highspy.HighsLp, float]:
    """Return the LP and the objective's constant."""
    n = len(problem.starts)
    steps = np.arange(n)
    col_c, col_d, col_i, col_e, col_s = (steps + k * n for k in range(5))
    sell_all = prices.sell_all_pv
    net = problem.load_kw - (0.0 if sell_all else problem.pv_kw)
    out = _Builder(5 * n)
    offset = 0.0
    wear = problem.wear_cost_per_kwh * STEP_H
    cost = np.concatenate([np.full(2 * n, wear), prices.buy * STEP_H, -prices.sell * STEP_H,
                           np.zeros(n)])
    _storage_rows(problem, out, (col_c, col_d, col_i, col_e, col_s), net)
    physical = problem.load_kw - problem.pv_kw
    closed = np.flatnonzero(~np.asarray(problem.export_allowed, dtype=bool))
    if closed.size:
        rows = np.arange(closed.size)
        out.add_rows(closed.size, [(rows, col_d[closed], 1.0), (rows, col_c[closed], -1.0)],
                     -_INF, np.maximum(physical[closed], 0.0))
    if sell_all and problem.grid_limit_kw is not None:
        limit = problem.grid_limit_kw
        out.add_rows(n, [(steps, col_c, 1.0), (steps, col_d, -1.0)],
                     -limit - physical, limit - physical)
    for group in prices.net_groups:
        if group.sell > group.buy:
            continue
        members = group.steps
        cost[col_i[members]] = group.sell * STEP_H
        cost[col_e[members]] = -group.sell * STEP_H
        column = out.add_column(group.buy - group.sell, 0.0, _INF)
        out.add_rows(1, [(np.zeros(1, int), np.array([column]), 1.0),
                         (np.zeros(members.size, int), col_i[members], -STEP_H),
                         (np.zeros(members.size, int), col_e[members], STEP_H)],
                     group.prior_kwh, _INF)
        offset -= (group.buy - group.sell) * max(group.prior_kwh, 0.0)
    peaks = [out.add_columns(len(group.segments), [rate for _, rate in group.segments], 0.0,
                             [min(width, _INF) for width, _ in group.segments])
             for group in prices.demand_groups]
    _demand_rows(prices, out, col_i, peaks)
    _exclusive_flows(problem, prices, cost, col_i, col_e, out)
    if sell_all:
        offset -= float(np.sum(prices.sell * problem.pv_kw * STEP_H))
    return _assemble(problem, cost, out), offset


def _demand_rows(prices: Pricing, out: _Builder, col_i: np.ndarray,
                 peaks: list[np.ndarray]) -> None:
    """Each step's import stays under its demand groups' peaks (the month's so far + rises)."""
    for group, segments in zip(prices.demand_groups, peaks, strict=True):
        members, rows = group.steps, np.arange(group.steps.size)
        terms = [(rows, col_i[members], 1.0)]
        terms += [(rows, np.full(members.size, column), -1.0) for column in segments]
        out.add_rows(members.size, terms, -_INF, group.prior_kw)


def _exclusive_flows(problem: Problem, prices: Pricing, cost: np.ndarray, col_i: np.ndarray,
                     col_e: np.ndarray, out: _Builder) -> None:
    """Where selling pays more than buying, a binary keeps import and export apart."""
    paying = np.flatnonzero(cost[col_e] + cost[col_i] < -1e-12)
    if not paying.size:
        return
    rated = problem.battery.rated_power_kw
    billed = problem.load_kw - (0.0 if prices.sell_all_pv else problem.pv_kw)
    zero = np.zeros(1, int)
    for step in paying:
        # The tightest bounds on each flow keep the branch and bound short.
        most_import, most_export = billed[step] + rated, rated - billed[step]
        if most_import <= 0 or most_export <= 0:  # the step can only export (or only import)
            column = col_i[step] if most_import <= 0 else col_e[step]
            out.add_rows(1, [(zero, np.array([column]), 1.0)], -_INF, 0.0)
            continue
        flag = out.add_column(0.0, 0.0, 1.0)
        out.integer.append(flag)
        out.add_rows(1, [(zero, np.array([col_i[step]]), 1.0),
                         (zero, np.array([flag]), -most_import)], -_INF, 0.0)
        out.add_rows(1, [(zero, np.array([col_e[step]]), 1.0),
                         (zero, np.array([flag]), most_export)], -_INF, most_export)


def _assemble(problem: Problem, cost: np.ndarray, out: _Builder) -> highspy.HighsLp:
    bounds = _columns(problem, len(problem.starts))
    rows = np.concatenate([r for r, _, _ in out.coo])
    cols = np.concatenate([c for _, c, _ in out.coo])
    values = np.concatenate([v for _, _, v in out.coo])
    matrix = sparse.csc_matrix((values, (rows, cols)), shape=(out.rows, out.columns))
    lp = highspy.HighsLp()
    lp.num_col_ = out.columns
    lp.num_row_ = out.rows
    lp.col_cost_ = np.concatenate([cost, *out.extra_cost])
    lp.col_lower_ = np.concatenate([bounds["lower"], *out.extra_lower])
    lp.col_upper_ = np.concatenate([bounds["upper"], *out.extra_upper])
    lp.row_lower_ = np.concatenate(out.row_lower)
    lp.row_upper_ = np.concatenate(out.row_upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    if out.integer:
        integrality = [highspy.HighsVarType.kContinuous] * out.columns
        for column in out.integer:
            integrality[column] = highspy.HighsVarType.kInteger
        lp.integrality_ = integrality
    return lp


def solve(problem: Problem) -> Solution:
    """Solve the dispatch LP; raise DispatchInfeasible, DispatchTimeout or DispatchDataMissing."""
    check(problem)
    began = time.perf_counter()
    prices = pricing(problem.tariff, problem.timezone, problem.starts, problem.so_far)
    lp, offset = _build(problem, prices)
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("threads", 1)
    highs.setOptionValue("time_limit", float(problem.time_limit_s))
    highs.passModel(lp)
    highs.run()
    status = highs.getModelStatus()
    if status in (highspy.HighsModelStatus.kInfeasible,
                  highspy.HighsModelStatus.kUnboundedOrInfeasible):
        raise DispatchInfeasible("no dispatch keeps the SoC, power and grid limits over the "
                                 f"horizon starting {problem.starts[0].isoformat()}")
    info = highs.getInfo()
    # A mixed-integer search out of time keeps its best plan so far; an LP has none.
    incumbent = bool(lp.integrality_) and info.primal_solution_status == 2
    if status == highspy.HighsModelStatus.kTimeLimit and not incumbent:
        raise DispatchTimeout(f"the solver found no optimal plan in {problem.time_limit_s:g} s")
    if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit):
        raise DispatchError(f"the solver stopped with {highs.modelStatusToString(status)}")
    values = np.asarray(highs.getSolution().col_value)
    objective = info.objective_function_value + offset
    return _solution(problem, prices, values, objective, time.perf_counter() - began)


def _solution(problem: Problem, prices: Pricing, values: np.ndarray, objective: float,
              seconds: float) -> Solution:
    n = len(problem.starts)
    charge, discharge = np.clip(values[:n], 0, None), np.clip(values[n:2 * n], 0, None)
    # Recompute the grid from the balance so that solver tolerances never show as flows.
    billed = problem.load_kw - (0.0 if prices.sell_all_pv else problem.pv_kw) + charge - discharge
    imported, exported = np.maximum(billed, 0.0), np.maximum(-billed, 0.0)
    soc = np.clip(values[4 * n:5 * n] / problem.battery.capacity_kwh * 100, 0.0, 100.0)
    wear = problem.wear_cost_per_kwh * STEP_H * float(np.sum(charge + discharge))
    bill = horizon_cost(prices, imported, exported, problem.pv_kw)
    return Solution(charge, discharge, imported, exported, soc, bill, wear, objective, prices,
                    seconds)
