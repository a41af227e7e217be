"""Tariffs, problems and the bill-engine oracle shared by the dispatch tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from kilowatch.billing import bills, tariffs
from kilowatch.billing.bills import BillingPeriod, Interval
from kilowatch.dispatch import optimizer, rates
from kilowatch.schedules.battery import Battery

JUNE = datetime(2026, 6, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)


def table(default: int, hours=range(0), value: int = 1) -> list[list[int]]:
    """A 12×24 schedule of ``default`` with ``value`` in ``hours``."""
    return [[value if hour in hours else default for hour in range(24)] for _ in range(12)]


def tariff(rates_kwh=(0.10, 0.40), *, expensive=range(1, 2), compensation="net_billing",
           export_rate=0.05, netting="interval", flat_kw=None, tou_kw=None, sells=None):
    """A tariff: period 0 all day except ``expensive`` hours (period 1), optional demand."""
    periods = [{"tiers": [{"rate": rate}]} for rate in rates_kwh]
    for period, sell in zip(periods, sells or (), strict=False):
        period["sell"] = sell
    structure = {
        "currency": "USD",
        "energy": {"periods": periods, "weekday": table(0, expensive),
                   "weekend": table(0, expensive)},
        "export": {"compensation": compensation, "rate": export_rate, "netting": netting},
    }
    if flat_kw is not None:
        structure["flat_demand"] = {"periods": [{"tiers": [{"rate": flat_kw}]}], "months": [0] * 12}
    if tou_kw is not None:
        structure["demand"] = {
            "periods": [{"tiers": [{"rate": 0.0}]}, {"tiers": [{"rate": tou_kw}]}],
            "weekday": table(0, expensive), "weekend": table(0, expensive)}
    return tariffs.parse(structure)


def starts(count: int, first: datetime = JUNE) -> list[datetime]:
    """``count`` step starts from ``first``."""
    return [first + k * STEP for k in range(count)]


def problem(tariff_, load, pv, *, first=JUNE, soc=50.0, rated=10.0, capacity=5.0, soc_min=10.0,
            soc_max=95.0, export=True, grid_limit=None, wear=0.0, so_far=None, efficiency=0.9):
    """A dispatch problem in UTC with per-step limits given as scalars or arrays."""
    n = len(load)
    return optimizer.Problem(
        tariff=tariff_, timezone="UTC", starts=starts(n, first), load_kw=np.asarray(load, float),
        pv_kw=np.asarray(pv, float),
        battery=Battery(rated_power_kw=rated, capacity_kwh=capacity,
                        charge_efficiency=efficiency, discharge_efficiency=efficiency),
        soc=soc, soc_min=np.broadcast_to(np.asarray(soc_min, float), (n,)).copy(),
        soc_max=np.broadcast_to(np.asarray(soc_max, float), (n,)).copy(),
        export_allowed=np.broadcast_to(np.asarray(export, bool), (n,)).copy(),
        grid_limit_kw=grid_limit, wear_cost_per_kwh=wear, so_far=so_far)


def intervals(tariff_, first, load, pv, battery_kw) -> list[Interval]:
    """The bill engine's intervals of these flows (as scenarios.Flow would meter them)."""
    result = []
    for k, (l_kw, p_kw, b_kw) in enumerate(zip(load, pv, battery_kw, strict=True)):
        grid = (l_kw - p_kw - b_kw) * 0.25
        if tariff_.export_compensation == "buy_all_sell_all":
            behind = grid + p_kw * 0.25
            result.append(Interval(first + k * STEP, max(behind, 0.0),
                                   p_kw * 0.25 + max(-behind, 0.0)))
        else:
            result.append(Interval(first + k * STEP, max(grid, 0.0), max(-grid, 0.0)))
    return result


def bill_raw(tariff_, items: list[Interval]) -> float:
    """The bill without rounding or fixed charge: energy + demand − credit, from its details."""
    period = BillingPeriod("UTC", items[0].start.year, items[0].start.month)
    until = max(item.start for item in items) + STEP
    bill = bills.compute_bill(tariff_, items, period, until=until)
    energy = sum(part["charge"] - part["credit"] for part in bill.details["energy"])
    return energy + sum(charge["charge"] for charge in bill.details["demand"]["charges"])


def oracle(tariff_, history: list[Interval], first, load, pv, battery_kw) -> float:
    """What the horizon adds to the month's bill, by the bill engine itself."""
    after = bill_raw(tariff_, history + intervals(tariff_, first, load, pv, battery_kw))
    return after - (bill_raw(tariff_, history) if history else 0.0)


def month_so_far(tariff_, history: list[Interval], now: datetime) -> rates.MonthToDate:
    """The MonthToDate of ``history`` at ``now``."""
    return rates.month_to_date(tariff_, "UTC", now, history)
