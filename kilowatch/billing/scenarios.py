"""The three scenario bills of a site's month and the savings they show (pure, no I/O).

From a site's 15-minute energy flows, :func:`compute_bills` bills the month three ways
with :func:`kilowatch.billing.bills.compute_bill`: ``without_system`` (the load bought
from the grid, as if there were neither PV nor storage), ``pv_only`` (the load net of
PV, as if there were no storage) and ``actual`` (the metered grid import and export).
:func:`savings` compares them: the system's savings (1 − 3) and the storage's (2 − 3).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal

from kilowatch.billing.bills import PARTS, Bill, BillingPeriod, Interval, compute_bill
from kilowatch.billing.tariffs import Tariff

SCENARIOS = ("without_system", "pv_only", "actual")


@dataclasses.dataclass(frozen=True)
class Flow:
    """One 15-minute interval of a site's energy flows (kWh; None = no data).

    ``pv`` is 0 for a site without PV. ``estimated`` names the quantities whose
    value was spread across a data gap.
    """

    start: datetime
    grid_import: float | None
    grid_export: float | None
    load: float | None
    pv: float | None
    estimated: frozenset[str] = frozenset()


_NEEDS = {
    "without_system": ("load",),
    "pv_only": ("load", "pv"),
    "actual": ("grid_import", "grid_export"),
}


def _scenario_energy(flow: Flow, scenario: str, compensation: str) -> tuple[float, float]:
    if scenario == "without_system":
        return flow.load, 0.0
    if scenario == "pv_only":
        if compensation == "buy_all_sell_all":
            return flow.load, flow.pv
        return max(flow.load - flow.pv, 0.0), max(flow.pv - flow.load, 0.0)
    if compensation == "buy_all_sell_all":
        # All PV is sold; the site buys what it consumes behind the meter (load and battery).
        behind = flow.grid_import - flow.grid_export + flow.pv
        return max(behind, 0.0), flow.pv + max(-behind, 0.0)
    return flow.grid_import, flow.grid_export


def scenario_intervals(flows: Iterable[Flow], scenario: str, compensation: str) -> list[Interval]:
    """Turn site flows into the grid intervals of a scenario, leaving out intervals without data."""
    needs = _NEEDS[scenario]
    if scenario == "actual" and compensation == "buy_all_sell_all":
        needs = (*needs, "pv")
    result = []
    for flow in flows:
        if any(getattr(flow, name) is None for name in needs):
            continue
        imported, exported = _scenario_energy(flow, scenario, compensation)
        result.append(Interval(flow.start, max(imported, 0.0), max(exported, 0.0),
                               estimated=bool(flow.estimated & set(needs))))
    return result


def compute_bills(tariff: Tariff, flows: Iterable[Flow], period: BillingPeriod, *,
                  until: datetime | None = None) -> dict[str, Bill]:
    """Compute the three scenario bills of a period from the site's flows."""
    flows = list(flows)
    return {
        scenario: compute_bill(
            tariff, scenario_intervals(flows, scenario, tariff.export_compensation), period,
            until=until)
        for scenario in SCENARIOS
    }


def savings(bills: Mapping[str, Bill | Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Return the savings of the system (1 − 3) and of the storage (2 − 3), part by part.

    The export credit part is the extra credit earned (3 − 1, 3 − 2), so that the
    parts add up to the total.
    """

    def amount(scenario: str, part: str) -> Decimal:
        bill = bills[scenario]
        value = getattr(bill, part) if isinstance(bill, Bill) else bill[part]
        return Decimal(str(value))

    result = {}
    for name, baseline in (("system", "without_system"), ("storage", "pv_only")):
        result[name] = {
            part: float(amount("actual", part) - amount(baseline, part))
            if part == "export_credit" else float(amount(baseline, part) - amount("actual", part))
            for part in PARTS
        }
    return result
