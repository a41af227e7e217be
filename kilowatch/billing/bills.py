"""Compute one billing period's utility bill from 15-minute interval energy (pure, no I/O).

A billing period is a calendar month in the site's time zone. The bill is the sum
of four parts, each rounded half-up to the cent:

- energy: every interval's kWh priced by the energy period of its local month,
  hour and day type (Saturday and Sunday are weekend days), tiers applied to the
  month's kWh of each period (daily tiers: the limit times the days of the month);
- demand: the highest 15-minute average import (kW = kWh × 4) of the month for
  the flat monthly demand charge, and of each time-of-use demand period for its
  own charge; tiers apply to the kW;
- fixed: the fixed charge of the month (a per-day charge times the days of the
  month, a per-year charge divided by twelve);
- export credit (subtracted): ``net_billing`` sells every interval's export (or,
  with hourly netting, every hour's net export) at the period's sell rate while
  imports are bought at the retail rate; ``net_metering`` nets exports against
  imports within each energy period over the month and credits a period's
  surplus at its sell rate; ``buy_all_sell_all`` bills like interval net billing,
  the scenarios having routed all PV production to export.

Intervals missing from the input are gaps: they are never treated as zero, and
they, and intervals estimated across a gap, are reported in ``Bill.quality``.
The three scenario bills of a site's month are in :mod:`kilowatch.billing.scenarios`.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from kilowatch.billing.tariffs import DemandPeriod, Tariff, Tier

INTERVAL = timedelta(minutes=15)
PARTS = ("energy", "demand", "fixed", "export_credit", "total")
_CENT = Decimal("0.01")


@dataclasses.dataclass(frozen=True)
class BillingPeriod:
    """A calendar month in a time zone."""

    timezone: str
    year: int
    month: int

    @property
    def tz(self) -> ZoneInfo:
        """The period's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def start(self) -> datetime:
        """The first instant of the month (local midnight), as an aware UTC datetime."""
        return datetime(self.year, self.month, 1, tzinfo=self.tz).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the month, as an aware UTC datetime."""
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return datetime(year, month, 1, tzinfo=self.tz).astimezone(UTC)

    @property
    def days(self) -> int:
        """Number of days in the month."""
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def label(self) -> str:
        """The period as ``YYYY-MM``."""
        return f"{self.year:04d}-{self.month:02d}"

    def slots(self, until: datetime | None = None) -> list[datetime]:
        """Return the UTC starts of the period's 15-minute intervals (up to ``until``)."""
        end = self.end if until is None else min(self.end, until)
        count = max(0, (end - self.start) // INTERVAL)
        return [self.start + i * INTERVAL for i in range(count)]


def billing_period(timezone: str, label: str) -> BillingPeriod:
    """Parse ``YYYY-MM`` into a :class:`BillingPeriod` of the given time zone."""
    try:
        year, month = (int(part) for part in label.split("-"))
        if not 1 <= month <= 12 or not 1970 <= year <= 9999 or len(label) != 7:
            raise ValueError
    except ValueError:
        raise ValueError(f"{label!r} is not a month like 2026-03") from None
    return BillingPeriod(timezone, year, month)


@dataclasses.dataclass(frozen=True)
class Interval:
    """Grid energy of one 15-minute interval starting at ``start`` (aware)."""

    start: datetime
    import_kwh: float
    export_kwh: float = 0.0
    estimated: bool = False


@dataclasses.dataclass(frozen=True)
class Bill:
    """A bill's breakdown (rounded to the cent), its details and its data quality."""

    currency: str
    energy: float
    demand: float
    fixed: float
    export_credit: float
    total: float
    details: dict[str, Any]
    quality: dict[str, Any]

    def breakdown(self) -> dict[str, float]:
        """Return the five amounts by name."""
        return {part: getattr(self, part) for part in PARTS}


def _cents(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


def _tiered(quantity: float, tiers: Iterable[Tier], scale: float = 1.0) -> tuple[float, list]:
    """Price ``quantity`` through the tiers; return the charge and each tier's share."""
    charge, lower, parts = 0.0, 0.0, []
    for tier in tiers:
        upper = math.inf if tier.max is None else tier.max * scale
        amount = max(0.0, min(quantity, upper) - lower)
        if amount or not parts:
            parts.append({"quantity": round(amount, 6), "rate": tier.rate,
                          "charge": round(amount * tier.rate, 6)})
        charge += amount * tier.rate
        lower = upper
        if quantity <= upper:
            break
    return charge, parts


@dataclasses.dataclass(frozen=True)
class _Slot:
    interval: Interval
    local: datetime
    energy_period: int
    demand_period: int | None


def _classify(tariff: Tariff, intervals: list[Interval], tz: ZoneInfo) -> list[_Slot]:
    slots = []
    for item in intervals:
        local = item.start.astimezone(tz)
        weekend = local.weekday() >= 5
        slots.append(_Slot(item, local,
                           tariff.energy_period(local.month, local.hour, weekend),
                           tariff.demand_period(local.month, local.hour, weekend)))
    return slots


def _check_intervals(intervals: Iterable[Interval], period: BillingPeriod,
                     expected: list[datetime]) -> list[Interval]:
    wanted = set(expected)
    seen: dict[datetime, Interval] = {}
    for item in intervals:
        start = item.start.astimezone(UTC)
        if start not in wanted:
            raise ValueError(f"interval {item.start.isoformat()} is not a 15-minute interval "
                             f"of {period.label} up to the data end")
        if start in seen:
            raise ValueError(f"interval {item.start.isoformat()} is given twice")
        for name in ("import_kwh", "export_kwh"):
            value = getattr(item, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"interval {item.start.isoformat()}: {name} must be >= 0")
        seen[start] = item
    return [seen[start] for start in expected if start in seen]


def _ranges(starts: list[datetime]) -> list[list[str]]:
    """Merge 15-minute interval starts into [start, end) ranges (ISO strings)."""
    merged: list[list[datetime]] = []
    for start in sorted(starts):
        if merged and merged[-1][1] == start:
            merged[-1][1] = start + INTERVAL
        else:
            merged.append([start, start + INTERVAL])
    return [[a.isoformat(), b.isoformat()] for a, b in merged]


def _quality(expected: list[datetime], present: list[Interval]) -> dict[str, Any]:
    have = {item.start.astimezone(UTC) for item in present}
    missing = [start for start in expected if start not in have]
    estimated = [item.start.astimezone(UTC) for item in present if item.estimated]
    return {
        "expected_intervals": len(expected),
        "missing_intervals": len(missing),
        "estimated_intervals": len(estimated),
        "missing": _ranges(missing),
        "estimated": _ranges(estimated),
        "complete": not missing and not estimated,
    }


def _hourly_net(slots: list[_Slot]) -> list[tuple[int, float, float]]:
    """Net imports against exports within each local clock hour (net billing hourly)."""
    # The offset is part of the key: the repeated hour of a DST change is two hours.
    hours: dict[tuple, list[float]] = defaultdict(list)
    period_of: dict[tuple, int] = {}
    for slot in slots:
        key = (slot.local.replace(minute=0, second=0, microsecond=0), slot.local.utcoffset())
        hours[key].append(slot.interval.import_kwh - slot.interval.export_kwh)
        period_of.setdefault(key, slot.energy_period)
    nets = {key: math.fsum(values) for key, values in hours.items()}
    return [(period_of[key], max(net, 0.0), max(-net, 0.0)) for key, net in nets.items()]


def _energy(tariff: Tariff, slots: list[_Slot], period: BillingPeriod) -> tuple[float, float, list]:
    """Return the energy charge, the export credit and the per-period details."""
    if tariff.export_compensation == "net_billing" and tariff.netting == "hourly":
        flows = _hourly_net(slots)
    else:
        flows = [(s.energy_period, s.interval.import_kwh, s.interval.export_kwh) for s in slots]
    imports: dict[int, list[float]] = defaultdict(list)
    exports: dict[int, list[float]] = defaultdict(list)
    for number, imported, exported in flows:
        imports[number].append(imported)
        exports[number].append(exported)
    charge_total, credit_total, details = 0.0, 0.0, []
    for number in sorted(set(imports) | set(exports)):
        imported, exported = math.fsum(imports[number]), math.fsum(exports[number])
        billed, sold = imported, exported
        if tariff.export_compensation == "net_metering":
            billed, sold = max(imported - exported, 0.0), max(exported - imported, 0.0)
        energy_period = tariff.energy_periods[number]
        scale = period.days if energy_period.tier_basis == "daily" else 1.0
        charge, tiers = _tiered(billed, energy_period.tiers, scale)
        credit = sold * tariff.sell_rate(number)
        charge_total += charge
        credit_total += credit
        details.append({
            "period": number, "label": energy_period.label,
            "import_kwh": round(imported, 6), "export_kwh": round(exported, 6),
            "billed_kwh": round(billed, 6), "charge": round(charge, 6), "tiers": tiers,
            "credited_kwh": round(sold, 6), "sell_rate": tariff.sell_rate(number),
            "credit": round(credit, 6),
        })
    return charge_total, credit_total, details


def _peak(slots: list[_Slot]) -> tuple[float, str | None]:
    best: _Slot | None = None
    for slot in slots:
        if best is None or slot.interval.import_kwh > best.interval.import_kwh:
            best = slot
    if best is None:
        return 0.0, None
    return best.interval.import_kwh * 4, best.interval.start.astimezone(UTC).isoformat()


def _demand_charge(periods: tuple[DemandPeriod, ...], number: int, slots: list[_Slot],
                   kind: str) -> dict[str, Any]:
    peak_kw, at = _peak(slots)
    charge, tiers = _tiered(peak_kw, periods[number].tiers)
    return {"kind": kind, "period": number, "label": periods[number].label,
            "peak_kw": round(peak_kw, 6), "peak_at": at, "charge": round(charge, 6),
            "tiers": tiers}


def _demand(tariff: Tariff, slots: list[_Slot], period: BillingPeriod) -> tuple[float, dict]:
    """Return the demand charge and its details (peaks and when they happened)."""
    peak_kw, at = _peak(slots)
    charges = []
    flat_number = (tariff.flat_demand_months or [None] * 12)[period.month - 1]
    if tariff.flat_demand_periods and flat_number is not None:
        charges.append(_demand_charge(tariff.flat_demand_periods, flat_number, slots, "flat"))
    by_period: dict[int, list[_Slot]] = defaultdict(list)
    for slot in slots:
        if slot.demand_period is not None:
            by_period[slot.demand_period].append(slot)
    for number in sorted(by_period):
        charges.append(_demand_charge(tariff.demand_periods, number, by_period[number], "tou"))
    total = math.fsum(item["charge"] for item in charges)
    return total, {"peak_kw": round(peak_kw, 6), "peak_at": at, "charges": charges}


def _fixed(tariff: Tariff, period: BillingPeriod) -> float:
    if tariff.fixed_charge_unit == "day":
        return tariff.fixed_charge * period.days
    if tariff.fixed_charge_unit == "year":
        return tariff.fixed_charge / 12
    return tariff.fixed_charge


def compute_bill(tariff: Tariff, intervals: Iterable[Interval], period: BillingPeriod, *,
                 until: datetime | None = None) -> Bill:
    """Compute the bill of ``period`` from its 15-minute intervals (data up to ``until``)."""
    expected = period.slots(until)
    present = _check_intervals(intervals, period, expected)
    slots = _classify(tariff, present, period.tz)
    energy, credit, energy_details = _energy(tariff, slots, period)
    demand, demand_details = _demand(tariff, slots, period)
    parts = {"energy": _cents(energy), "demand": _cents(demand),
             "fixed": _cents(_fixed(tariff, period)), "export_credit": _cents(credit)}
    total = parts["energy"] + parts["demand"] + parts["fixed"] - parts["export_credit"]
    details = {
        "period": period.label,
        "data_until": (expected[-1] + INTERVAL).isoformat() if expected else None,
        "import_kwh": round(math.fsum(s.interval.import_kwh for s in slots), 6),
        "export_kwh": round(math.fsum(s.interval.export_kwh for s in slots), 6),
        "compensation": tariff.export_compensation,
        "energy": energy_details,
        "demand": demand_details,
        "fixed": {"amount": tariff.fixed_charge, "per": tariff.fixed_charge_unit},
    }
    return Bill(tariff.currency, *(float(parts[p]) for p in PARTS[:4]), float(total),
                details, _quality(expected, present))
