"""What each 15-minute step of a plan costs under a tariff, as the bill engine bills it (pure).

The optimiser prices energy exactly as :func:`kilowatch.billing.bills.compute_bill`
does, through the tariff's own look-ups (:meth:`Tariff.energy_period`,
:meth:`Tariff.demand_period`, :meth:`Tariff.sell_rate`) on each step's local month,
hour and day type (Saturday and Sunday are weekend days):

- interval net billing and buy-all-sell-all: every step's import at the buy rate,
  its export at the sell rate (buy-all-sell-all also sells all PV, a constant);
- hourly net billing: each local clock hour's net, bought or sold; net metering:
  each energy period's net over the month; both start from what the month (or the
  hour) already holds, so only the change the horizon makes is counted;
- demand: the highest 15-minute average import of each demand group (the flat
  monthly charge, each time-of-use demand period), charged only above the peak the
  month already has, tier by tier.

Tiered energy rates use the rate of the tier the month's usage is in. The state
of the month so far is a :class:`MonthToDate`, built from the bill engine's own
:class:`~kilowatch.billing.bills.Interval` values.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from kilowatch.billing.bills import Interval
from kilowatch.billing.tariffs import Tariff, Tier

STEP_H = 0.25  # hours in a 15-minute step


@dataclasses.dataclass(frozen=True)
class _Local:
    month: tuple[int, int]
    hour: tuple[datetime, float]  # local clock hour and its UTC offset (DST-safe key)
    energy_period: int
    demand_period: int | None
    flat_period: int | None


def _local(tariff: Tariff, tz: ZoneInfo, start: datetime) -> _Local:
    """Classify one step as the bill engine does (its local month, hour and day type)."""
    local = start.astimezone(tz)
    weekend = local.weekday() >= 5
    flat = (tariff.flat_demand_months or (None,) * 12)[local.month - 1]
    return _Local((local.year, local.month),
                  (local.replace(minute=0, second=0, microsecond=0),
                   local.utcoffset().total_seconds()),
                  tariff.energy_period(local.month, local.hour, weekend),
                  tariff.demand_period(local.month, local.hour, weekend),
                  flat if tariff.flat_demand_periods else None)


@dataclasses.dataclass
class MonthToDate:
    """What the current billing month already holds: energy per period, peaks, this hour's net."""

    month: tuple[int, int]
    import_kwh: dict[int, float] = dataclasses.field(default_factory=dict)
    export_kwh: dict[int, float] = dataclasses.field(default_factory=dict)
    peaks_kw: dict[tuple[str, int], float] = dataclasses.field(default_factory=dict)
    hour: tuple[datetime, float] | None = None
    hour_net_kwh: float = 0.0

    def add(self, tariff: Tariff, tz: ZoneInfo, interval: Interval) -> MonthToDate:
        """Count one metered interval; a new local month starts an empty one (returned)."""
        where = _local(tariff, tz, interval.start)
        state = self if where.month == self.month else MonthToDate(where.month)
        period = where.energy_period
        state.import_kwh[period] = state.import_kwh.get(period, 0.0) + interval.import_kwh
        state.export_kwh[period] = state.export_kwh.get(period, 0.0) + interval.export_kwh
        kw = interval.import_kwh / STEP_H
        for key in _demand_keys(where):
            state.peaks_kw[key] = max(state.peaks_kw.get(key, 0.0), kw)
        if where.hour != state.hour:
            state.hour, state.hour_net_kwh = where.hour, 0.0
        state.hour_net_kwh += interval.import_kwh - interval.export_kwh
        return state


def month_to_date(tariff: Tariff, timezone: str, now: datetime,
                  intervals: Iterable[Interval]) -> MonthToDate:
    """Return the month so far at ``now`` from the month's metered intervals before it."""
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    month = (local.year, local.month)
    state = MonthToDate(month)
    for interval in sorted(intervals, key=lambda item: item.start):
        if interval.start < now:
            state = state.add(tariff, tz, interval)
    return state if state.month == month else MonthToDate(month)


def _demand_keys(where: _Local) -> list[tuple[str, int]]:
    keys = []
    if where.flat_period is not None:
        keys.append(("flat", where.flat_period))
    if where.demand_period is not None:
        keys.append(("tou", where.demand_period))
    return keys


@dataclasses.dataclass(frozen=True)
class NetGroup:
    """Steps whose net energy is billed together: cost = f(prior + net) − f(prior).

    ``f(n) = buy × max(n, 0) − sell × max(−n, 0)``; needs ``sell <= buy`` to be convex.
    """

    steps: np.ndarray
    prior_kwh: float
    buy: float
    sell: float

    def cost(self, net_kwh: float) -> float:
        """Return the bill change when the group's horizon net is ``net_kwh``."""
        return _net_value(self.prior_kwh + net_kwh, self) - _net_value(self.prior_kwh, self)


def _net_value(net: float, group: NetGroup) -> float:
    return group.buy * max(net, 0.0) - group.sell * max(-net, 0.0)


@dataclasses.dataclass(frozen=True)
class DemandGroup:
    """Steps sharing one demand charge: the peak above ``prior_kw`` priced by ``segments``."""

    label: str
    steps: np.ndarray
    prior_kw: float
    segments: tuple[tuple[float, float], ...]  # (width kW or inf, rate per kW), in order

    def cost(self, peak_kw: float) -> float:
        """Return the demand charge added when the group's horizon peak is ``peak_kw``."""
        rise, total = max(peak_kw - self.prior_kw, 0.0), 0.0
        for width, rate in self.segments:
            used = min(rise, width)
            total += used * rate
            rise -= used
        return total


@dataclasses.dataclass(frozen=True)
class Pricing:
    """The horizon's prices: per step buy and sell rates, netting groups, demand groups."""

    buy: np.ndarray
    sell: np.ndarray
    net_groups: tuple[NetGroup, ...]
    demand_groups: tuple[DemandGroup, ...]
    sell_all_pv: bool
    energy_period: np.ndarray


def marginal_rate(tiers: Sequence[Tier], used: float, scale: float = 1.0) -> float:
    """Return the rate of the tier that the next unit falls in after ``used`` units."""
    for tier in tiers:
        if tier.max is None or used < tier.max * scale:
            return tier.rate
    return tiers[-1].rate


def _demand_segments(tiers: Sequence[Tier], prior: float) -> tuple[tuple[float, float], ...]:
    """Tier widths above ``prior``; tiers whose rate falls are priced at the current tier."""
    rates = [tier.rate for tier in tiers]
    if rates != sorted(rates):  # not convex: an LP cannot order them, keep the marginal rate
        return ((math.inf, marginal_rate(tiers, prior)),)
    segments, lower = [], 0.0
    for tier in tiers:
        upper = math.inf if tier.max is None else tier.max
        if upper > prior:
            segments.append((upper - max(lower, prior), tier.rate))
        lower = upper
    return tuple(segments)


def pricing(tariff: Tariff, timezone: str, starts: Sequence[datetime],
            so_far: MonthToDate | None = None) -> Pricing:
    """Price the steps starting at ``starts`` (UTC, 15 minutes apart) after ``so_far``."""
    tz = ZoneInfo(timezone)
    places = [_local(tariff, tz, start) for start in starts]
    first = places[0].month if places else None
    if so_far is None or so_far.month != first:
        so_far = MonthToDate(first)
    buy = np.empty(len(places))
    sell = np.empty(len(places))
    for index, where in enumerate(places):
        buy[index] = _buy_rate(tariff, where, so_far)
        sell[index] = tariff.sell_rate(where.energy_period)
    return Pricing(buy, sell, _net_groups(tariff, places, so_far, buy, sell),
                   _demand_groups(tariff, places, so_far),
                   tariff.export_compensation == "buy_all_sell_all",
                   np.array([where.energy_period for where in places], dtype=int))


def _buy_rate(tariff: Tariff, where: _Local, so_far: MonthToDate) -> float:
    period = tariff.energy_periods[where.energy_period]
    used = 0.0
    if where.month == so_far.month:
        used = so_far.import_kwh.get(where.energy_period, 0.0)
        if tariff.export_compensation == "net_metering":
            used = max(used - so_far.export_kwh.get(where.energy_period, 0.0), 0.0)
    scale = calendar.monthrange(*where.month)[1] if period.tier_basis == "daily" else 1.0
    return marginal_rate(period.tiers, used, scale)


def _net_groups(tariff: Tariff, places: list[_Local], so_far: MonthToDate, buy: np.ndarray,
                sell: np.ndarray) -> tuple[NetGroup, ...]:
    """Steps netted together: per hour (hourly net billing), per period (net metering)."""
    if tariff.export_compensation == "net_metering":
        def key(where):
            return (where.month, where.energy_period)

        def prior(group_key):
            month, period = group_key
            if month != so_far.month:
                return 0.0
            return so_far.import_kwh.get(period, 0.0) - so_far.export_kwh.get(period, 0.0)
    elif tariff.export_compensation == "net_billing" and tariff.netting == "hourly":
        def key(where):
            return where.hour

        def prior(group_key):
            return so_far.hour_net_kwh if group_key == so_far.hour else 0.0
    else:
        return ()
    members: dict[tuple, list[int]] = defaultdict(list)
    for index, where in enumerate(places):
        members[key(where)].append(index)
    groups = []
    for group_key, steps in members.items():
        first = steps[0]
        groups.append(NetGroup(np.array(steps), prior(group_key), float(buy[first]),
                               float(sell[first])))
    return tuple(groups)


def _demand_groups(tariff: Tariff, places: list[_Local],
                   so_far: MonthToDate) -> tuple[DemandGroup, ...]:
    members: dict[tuple, list[int]] = defaultdict(list)
    for index, where in enumerate(places):
        for kind, number in _demand_keys(where):
            members[(where.month, kind, number)].append(index)
    groups = []
    for (month, kind, number), steps in members.items():
        periods = tariff.flat_demand_periods if kind == "flat" else tariff.demand_periods
        prior = so_far.peaks_kw.get((kind, number), 0.0) if month == so_far.month else 0.0
        if all(tier.rate == 0 for tier in periods[number].tiers):
            continue  # a period without a charge (the off-peak hours of a time-of-use demand)
        label = periods[number].label or (
            "monthly demand" if kind == "flat" else f"demand period {number + 1}")
        groups.append(DemandGroup(f"{label} {month[0]:04d}-{month[1]:02d}", np.array(steps),
                                  prior, _demand_segments(periods[number].tiers, prior)))
    return tuple(groups)


def horizon_cost(prices: Pricing, import_kw: np.ndarray, export_kw: np.ndarray,
                 pv_kw: np.ndarray) -> float:
    """Return what the grid flows of the horizon add to the bills (energy, credit, demand)."""
    import_kwh, export_kwh = import_kw * STEP_H, export_kw * STEP_H
    netted = np.zeros(len(import_kwh), dtype=bool)
    total = 0.0
    for group in prices.net_groups:
        if group.sell <= group.buy:
            netted[group.steps] = True
            total += group.cost(float(np.sum(import_kwh[group.steps] - export_kwh[group.steps])))
    total += float(np.sum((prices.buy * import_kwh - prices.sell * export_kwh)[~netted]))
    for group in prices.demand_groups:
        total += group.cost(float(np.max(import_kw[group.steps])))
    if prices.sell_all_pv:
        total -= float(np.sum(prices.sell * pv_kw * STEP_H))
    return total
