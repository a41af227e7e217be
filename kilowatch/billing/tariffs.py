"""Utility tariffs: the model and its validation.

A tariff follows the structure of the Utility Rate Database (URDB), so that a
published rate imports as it is:

- energy: weekday and weekend 12×24 tables (month × local hour) of period
  numbers; each period has a rate per kWh, optionally in tiers of monthly kWh
  (or daily kWh × days in the month), and optionally its own export ``sell`` rate;
- demand: time-of-use demand periods with their own 12×24 tables and a rate per
  kW (optionally tiered by kW), plus flat monthly demand periods and the period
  each month uses (``None``: no flat demand that month);
- a fixed charge per month (or per day, or per year, as URDB allows);
- export compensation: ``net_metering``, ``net_billing`` (netted per interval or
  per hour) or ``buy_all_sell_all``, with an export rate used where a period has
  no ``sell`` rate of its own.

:func:`parse` validates a normalised dict (as stored in ``tariffs.structure``)
and :func:`kilowatch.billing.urdb.import_urdb` converts a URDB document; both raise
:class:`TariffError` whose message starts with the faulty field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kilowatch.errors import UserFacingError

COMPENSATIONS = ("net_metering", "net_billing", "buy_all_sell_all")
NETTINGS = ("interval", "hourly")
TIER_BASES = ("monthly", "daily")
FIXED_UNITS = ("month", "day", "year")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class TariffError(UserFacingError, ValueError):
    """A tariff (or a URDB document) that cannot be used; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Tier:
    """One block of a tiered rate: ``rate`` up to ``max`` (kWh or kW); None = no limit."""

    rate: float
    max: float | None = None


@dataclasses.dataclass(frozen=True)
class EnergyPeriod:
    """An energy time-of-use period: its tiers, its tier basis and its own export rate."""

    tiers: tuple[Tier, ...]
    tier_basis: str = "monthly"
    sell: float | None = None
    label: str | None = None


@dataclasses.dataclass(frozen=True)
class DemandPeriod:
    """A demand period (time-of-use or flat): its tiers of $/kW."""

    tiers: tuple[Tier, ...]
    label: str | None = None


Schedule = tuple[tuple[int, ...], ...]  # 12 months × 24 hours of period numbers


@dataclasses.dataclass(frozen=True)
class Tariff:
    """A validated tariff, ready for :func:`kilowatch.billing.bills.compute_bill`."""

    currency: str
    energy_periods: tuple[EnergyPeriod, ...]
    energy_weekday: Schedule
    energy_weekend: Schedule
    demand_periods: tuple[DemandPeriod, ...] = ()
    demand_weekday: Schedule | None = None
    demand_weekend: Schedule | None = None
    flat_demand_periods: tuple[DemandPeriod, ...] = ()
    flat_demand_months: tuple[int | None, ...] | None = None
    fixed_charge: float = 0.0
    fixed_charge_unit: str = "month"
    export_compensation: str = "net_billing"
    export_rate: float = 0.0
    netting: str = "interval"

    def energy_period(self, month: int, hour: int, weekend: bool) -> int:
        """Return the energy period of a local month (1-12), hour (0-23) and day type."""
        table = self.energy_weekend if weekend else self.energy_weekday
        return table[month - 1][hour]

    def demand_period(self, month: int, hour: int, weekend: bool) -> int | None:
        """Return the time-of-use demand period, or None when the tariff has none."""
        table = self.demand_weekend if weekend else self.demand_weekday
        return None if table is None else table[month - 1][hour]

    def sell_rate(self, period: int) -> float:
        """Return the export rate of an energy period (its own, else the tariff's)."""
        sell = self.energy_periods[period].sell
        return self.export_rate if sell is None else sell

    def to_dict(self) -> dict[str, Any]:
        """Return the normalised JSON form stored in ``tariffs.structure``."""
        return _to_plain(self)


def _to_plain(tariff: Tariff) -> dict[str, Any]:
    def tiers(items: Sequence[Tier], unit: str) -> list[dict]:
        return [{"rate": t.rate, f"max_{unit}": t.max} for t in items]

    def demand(periods: Sequence[DemandPeriod]) -> list[dict]:
        return [{"label": p.label, "tiers": tiers(p.tiers, "kw")} for p in periods]

    out: dict[str, Any] = {
        "currency": tariff.currency,
        "energy": {
            "periods": [
                {"label": p.label, "tiers": tiers(p.tiers, "kwh"), "tier_basis": p.tier_basis,
                 "sell": p.sell}
                for p in tariff.energy_periods
            ],
            "weekday": [list(row) for row in tariff.energy_weekday],
            "weekend": [list(row) for row in tariff.energy_weekend],
        },
        "demand": None,
        "flat_demand": None,
        "fixed_charge": {"amount": tariff.fixed_charge, "per": tariff.fixed_charge_unit},
        "export": {"compensation": tariff.export_compensation, "rate": tariff.export_rate,
                   "netting": tariff.netting},
    }
    if tariff.demand_periods:
        out["demand"] = {
            "periods": demand(tariff.demand_periods),
            "weekday": [list(row) for row in tariff.demand_weekday or ()],
            "weekend": [list(row) for row in tariff.demand_weekend or ()],
        }
    if tariff.flat_demand_periods:
        out["flat_demand"] = {"periods": demand(tariff.flat_demand_periods),
                              "months": list(tariff.flat_demand_months or ())}
    return out


# --- validation of the normalised form -------------------------------------------------


def _fail(field: str, message: str) -> TariffError:
    return TariffError(f"{field}: {message}")


def _number(value: Any, field: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise _fail(field, "expected a finite number")
    if positive and value <= 0:
        raise _fail(field, "must be greater than 0")
    return float(value)


def _list(value: Any, field: str, *, length: int | None = None, min_length: int = 0) -> list:
    if not isinstance(value, list):
        raise _fail(field, f"expected a list, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise _fail(field, f"expected {length} entries, got {len(value)}")
    if len(value) < min_length:
        raise _fail(field, "must not be empty")
    return value


def _mapping(value: Any, field: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _fail(field, f"expected an object, got {type(value).__name__}")
    return value


def _choice(value: Any, field: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise _fail(field, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _label(value: Any, field: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _fail(field, "expected text")


def _check_tiers(tiers: list[Tier], field: str) -> tuple[Tier, ...]:
    previous = 0.0
    for index, tier in enumerate(tiers):
        last = index == len(tiers) - 1
        if tier.max is None and not last:
            raise _fail(f"{field}[{index}]", "only the last tier may have no maximum")
        if tier.max is not None and tier.max <= previous:
            raise _fail(f"{field}[{index}]", "tier maxima must increase")
        if tier.max is not None and last:
            tiers[index] = Tier(tier.rate, None)  # usage above the last maximum stays billed
        previous = tier.max or previous
    return tuple(tiers)


def _parse_tiers(raw: Any, field: str, unit: str) -> tuple[Tier, ...]:
    items = _list(raw, field, min_length=1)
    tiers = []
    for index, item in enumerate(items):
        item = _mapping(item, f"{field}[{index}]")
        limit = item.get(f"max_{unit}")
        tiers.append(Tier(
            _number(item.get("rate"), f"{field}[{index}].rate"),
            None if limit is None else _number(limit, f"{field}[{index}].max_{unit}",
                                               positive=True),
        ))
    return _check_tiers(tiers, field)


def _parse_schedule(raw: Any, field: str, periods: int) -> Schedule:
    rows = _list(raw, field, length=12)
    table = []
    for month, row in enumerate(rows):
        row = _list(row, f"{field}[{month}]", length=24)
        for hour, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(f"{field}[{month}][{hour}]", f"expected a period number, got {value!r}")
            if not 0 <= value < periods:
                raise _fail(f"{field}[{month}][{hour}]",
                            f"period {value} does not exist (there are {periods})")
        table.append(tuple(row))
    return tuple(table)


def _parse_demand_periods(raw: Any, field: str) -> tuple[DemandPeriod, ...]:
    return tuple(
        DemandPeriod(_parse_tiers(_mapping(p, f"{field}[{i}]").get("tiers"),
                                  f"{field}[{i}].tiers", "kw"),
                     _label(p.get("label"), f"{field}[{i}].label"))
        for i, p in enumerate(_list(raw, field, min_length=1))
    )


def parse(structure: Mapping[str, Any]) -> Tariff:
    """Validate a normalised tariff dict and return the :class:`Tariff`."""
    structure = _mapping(structure, "tariff")
    currency = structure.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise _fail("currency", f"expected a three-letter ISO code such as USD, got {currency!r}")
    energy = _mapping(structure.get("energy"), "energy")
    energy_periods = []
    for i, raw in enumerate(_list(energy.get("periods"), "energy.periods", min_length=1)):
        raw = _mapping(raw, f"energy.periods[{i}]")
        sell = raw.get("sell")
        energy_periods.append(EnergyPeriod(
            _parse_tiers(raw.get("tiers"), f"energy.periods[{i}].tiers", "kwh"),
            _choice(raw.get("tier_basis", "monthly"), f"energy.periods[{i}].tier_basis",
                    TIER_BASES),
            None if sell is None else _number(sell, f"energy.periods[{i}].sell"),
            _label(raw.get("label"), f"energy.periods[{i}].label"),
        ))
    count = len(energy_periods)
    values: dict[str, Any] = {
        "currency": currency,
        "energy_periods": tuple(energy_periods),
        "energy_weekday": _parse_schedule(energy.get("weekday"), "energy.weekday", count),
        "energy_weekend": _parse_schedule(energy.get("weekend"), "energy.weekend", count),
    }
    values.update(_parse_demand(structure))
    values.update(_parse_flat_demand(structure))
    values.update(_parse_fixed(structure))
    values.update(_parse_export(structure))
    return Tariff(**values)


def _parse_demand(structure: Mapping) -> dict[str, Any]:
    demand = structure.get("demand")
    if demand is None:
        return {}
    demand = _mapping(demand, "demand")
    periods = _parse_demand_periods(demand.get("periods"), "demand.periods")
    return {
        "demand_periods": periods,
        "demand_weekday": _parse_schedule(demand.get("weekday"), "demand.weekday", len(periods)),
        "demand_weekend": _parse_schedule(demand.get("weekend"), "demand.weekend", len(periods)),
    }


def _parse_flat_demand(structure: Mapping) -> dict[str, Any]:
    flat = structure.get("flat_demand")
    if flat is None:
        return {}
    flat = _mapping(flat, "flat_demand")
    periods = _parse_demand_periods(flat.get("periods"), "flat_demand.periods")
    months = _list(flat.get("months"), "flat_demand.months", length=12)
    for month, value in enumerate(months):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(periods):
            raise _fail(f"flat_demand.months[{month}]",
                        f"expected a flat demand period number or null, got {value!r}")
    return {"flat_demand_periods": periods, "flat_demand_months": tuple(months)}


def _parse_fixed(structure: Mapping) -> dict[str, Any]:
    fixed = structure.get("fixed_charge")
    if fixed is None:
        return {}
    fixed = _mapping(fixed, "fixed_charge")
    return {
        "fixed_charge": _number(fixed.get("amount", 0), "fixed_charge.amount"),
        "fixed_charge_unit": _choice(fixed.get("per", "month"), "fixed_charge.per", FIXED_UNITS),
    }


def _parse_export(structure: Mapping) -> dict[str, Any]:
    export = structure.get("export")
    if export is None:
        return {}
    export = _mapping(export, "export")
    return {
        "export_compensation": _choice(export.get("compensation", "net_billing"),
                                       "export.compensation", COMPENSATIONS),
        "export_rate": _number(export.get("rate", 0), "export.rate"),
        "netting": _choice(export.get("netting", "interval"), "export.netting", NETTINGS),
    }


def describe(tariff: Tariff) -> str:
    """Return a one-line summary of a tariff (periods, demand, fixed charge, export rule)."""
    parts = [f"{len(tariff.energy_periods)} energy period(s)"]
    if tariff.demand_periods:
        parts.append(f"{len(tariff.demand_periods)} demand period(s)")
    if tariff.flat_demand_periods:
        parts.append("flat demand")
    if tariff.fixed_charge:
        parts.append(f"fixed {tariff.fixed_charge:g} {tariff.currency}/{tariff.fixed_charge_unit}")
    parts.append(tariff.export_compensation.replace("_", " "))
    return ", ".join(parts)
