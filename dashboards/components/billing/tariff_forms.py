"""The tariff editor's forms: rate tables and settings to and from a normalised tariff.

The editor shows a tariff (:func:`kilowatch.billing.tariffs.Tariff.to_dict` form) as:

- rate tables, one row per tier: energy (period, label, rate, max kWh, basis,
  sell), time-of-use demand and flat demand (period, label, rate, max kW);
- the flat demand period of each month (blank: no flat demand that month);
- the four 12×24 schedules (see :mod:`dashboards.components.billing.tariff_grid`);
- currency, export compensation, netting, export rate and fixed charge.

:func:`build_structure` turns what the browser sends back into a normalised
dict for :func:`kilowatch.billing.tariffs.parse`, which names the faulty field. Values
that are not numbers are passed on as they are so that the message says what
was typed. Pure functions, unit-tested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dashboards.components.billing.tariff_grid import MONTHS, SCHEDULES, blank
from kilowatch.billing.tariffs import TariffError

ENERGY_COLUMNS = ("period", "label", "rate", "max_kwh", "tier_basis", "sell")
DEMAND_COLUMNS = ("period", "label", "rate", "max_kw")
MONTH_KEYS = tuple(m.lower() for m in MONTHS)
MAX_ROWS = 200


def default_structure(currency: str = "USD") -> dict[str, Any]:
    """Return a simple starting tariff: one flat energy rate, nothing else."""
    return {
        "currency": currency,
        "energy": {"periods": [{"label": "All hours", "tiers": [{"rate": 0.2, "max_kwh": None}],
                                "tier_basis": "monthly", "sell": None}],
                   "weekday": blank(), "weekend": blank()},
        "demand": None, "flat_demand": None,
        "fixed_charge": {"amount": 0.0, "per": "month"},
        "export": {"compensation": "net_billing", "rate": 0.0, "netting": "interval"},
    }


def energy_rows(structure: Mapping) -> list[dict]:
    """Return the energy rate table rows (one per tier) of a normalised tariff."""
    rows = []
    for number, period in enumerate(structure["energy"]["periods"]):
        for index, tier in enumerate(period["tiers"]):
            first = index == 0
            rows.append({"period": number, "label": period.get("label") if first else None,
                         "rate": tier["rate"], "max_kwh": tier.get("max_kwh"),
                         "tier_basis": period.get("tier_basis", "monthly") if first else None,
                         "sell": period.get("sell") if first else None})
    return rows


def demand_rows(structure: Mapping, key: str) -> list[dict]:
    """Return the demand rate rows (``key``: "demand" or "flat_demand"), one per tier."""
    demand = structure.get(key)
    if not demand:
        return []
    return [{"period": number, "label": period.get("label") if index == 0 else None,
             "rate": tier["rate"], "max_kw": tier.get("max_kw")}
            for number, period in enumerate(demand["periods"])
            for index, tier in enumerate(period["tiers"])]


def flat_months_row(structure: Mapping) -> dict:
    """Return the flat demand period of each month as one table row (None: none)."""
    flat = structure.get("flat_demand")
    months = flat["months"] if flat else [None] * 12
    return dict(zip(MONTH_KEYS, months, strict=True))


def schedules(structure: Mapping) -> dict[str, list[list[int]]]:
    """Return the four 12×24 schedules (demand ones all period 0 when there is no demand)."""
    demand = structure.get("demand") or {}
    return {"energy_weekday": structure["energy"]["weekday"],
            "energy_weekend": structure["energy"]["weekend"],
            "demand_weekday": demand.get("weekday") or blank(),
            "demand_weekend": demand.get("weekend") or blank()}


def period_labels(rows: Sequence[Mapping]) -> dict[int, str]:
    """Return period number → label from rate table rows (first label of each period)."""
    labels: dict[int, str] = {}
    for row in rows or ():
        if not isinstance(row, Mapping):
            continue  # a forged row; the save names the faulty row
        number = _whole(row.get("period"))
        if isinstance(number, int) and number not in labels:
            labels[number] = row.get("label") or ""
        elif isinstance(number, int) and row.get("label") and not labels[number]:
            labels[number] = row["label"]
    return dict(sorted(labels.items()))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def number(value: Any) -> Any:
    """Return a typed-in number as a float; blanks as None; anything else unchanged."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", "."))
        except ValueError:
            return value
    return value


def _whole(value: Any) -> Any:
    parsed = number(value)
    if isinstance(parsed, float) and parsed.is_integer():
        return int(parsed)
    return parsed


def _group(rows: Sequence[Any], table: str) -> list[list[Mapping]]:
    """Group rate rows by period number; periods must be 0, 1, 2 … without holes."""
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise TariffError(f"{table}: expected a list of at most {MAX_ROWS} rows")
    periods: dict[int, list[Mapping]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TariffError(f"{table}, row {index + 1}: not a table row")
        if all(_blank(row.get(c)) for c in ("period", "rate")):
            continue  # an empty line left in the table
        period = _whole(row.get("period"))
        if not isinstance(period, int) or isinstance(period, bool) or not 0 <= period < 100:
            raise TariffError(f"{table}, row {index + 1}, period: expected a whole number "
                              f"from 0, got {row.get('period')!r}")
        periods.setdefault(period, []).append(row)
    for expected, found in enumerate(sorted(periods)):
        if found != expected:
            raise TariffError(f"{table}: period {expected} has no rate (periods are numbered "
                              "0, 1, 2 … without gaps)")
    return [periods[n] for n in sorted(periods)]


def _tiers(rows: Sequence[Mapping], unit: str) -> list[dict]:
    return [{"rate": number(row.get("rate")), f"max_{unit}": number(row.get(f"max_{unit}"))}
            for row in rows]


def _label(rows: Sequence[Mapping]) -> str | None:
    return next((str(row["label"]) for row in rows if not _blank(row.get("label"))), None)


def _energy_periods(rows: Sequence[Any]) -> list[dict]:
    periods = []
    for tiers in _group(rows, "energy rates"):
        first = tiers[0]
        periods.append({"label": _label(tiers), "tiers": _tiers(tiers, "kwh"),
                        "tier_basis": first.get("tier_basis") or "monthly",
                        "sell": number(first.get("sell"))})
    return periods


def _demand_periods(rows: Sequence[Any], table: str) -> list[dict]:
    return [{"label": _label(tiers), "tiers": _tiers(tiers, "kw")}
            for tiers in _group(rows, table)]


def _months(row: Any) -> list[Any]:
    row = row if isinstance(row, Mapping) else {}
    return [_whole(row.get(key)) for key in MONTH_KEYS]


def _table(value: Any, name: str) -> list[list[Any]]:
    if not isinstance(value, list):
        raise TariffError(f"{name}: the grid is missing; reload the page")
    return value


def build_structure(settings: Mapping, energy: Any, demand: Any, flat: Any, flat_months: Any,
                    grids: Any) -> dict[str, Any]:
    """Assemble the normalised tariff dict from the editor's fields (see module doc)."""
    grids = grids if isinstance(grids, Mapping) else {}
    structure: dict[str, Any] = {
        "currency": (settings.get("currency") or "").strip().upper()
        if isinstance(settings.get("currency"), str) else settings.get("currency"),
        "energy": {"periods": _energy_periods(energy),
                   "weekday": _table(grids.get("energy_weekday"), "energy.weekday"),
                   "weekend": _table(grids.get("energy_weekend"), "energy.weekend")},
        "demand": None, "flat_demand": None,
        "fixed_charge": {"amount": number(settings.get("fixed_amount")) or 0.0,
                         "per": settings.get("fixed_per") or "month"},
        "export": {"compensation": settings.get("compensation") or "net_billing",
                   "rate": number(settings.get("export_rate")) or 0.0,
                   "netting": settings.get("netting") or "interval"},
    }
    demand_periods = _demand_periods(demand or [], "demand rates")
    if demand_periods:
        structure["demand"] = {"periods": demand_periods,
                               "weekday": _table(grids.get("demand_weekday"), "demand.weekday"),
                               "weekend": _table(grids.get("demand_weekend"), "demand.weekend")}
    flat_periods = _demand_periods(flat or [], "flat demand rates")
    if flat_periods:
        months = flat_months[0] if isinstance(flat_months, list) and flat_months else None
        structure["flat_demand"] = {"periods": flat_periods, "months": _months(months)}
    return structure


def settings_of(structure: Mapping) -> dict[str, Any]:
    """Return the editor's settings fields of a normalised tariff."""
    return {"currency": structure["currency"],
            "compensation": structure["export"]["compensation"],
            "netting": structure["export"].get("netting", "interval"),
            "export_rate": structure["export"]["rate"],
            "fixed_amount": structure["fixed_charge"]["amount"],
            "fixed_per": structure["fixed_charge"]["per"]}


__all__ = ["DEMAND_COLUMNS", "ENERGY_COLUMNS", "MONTH_KEYS", "SCHEDULES", "build_structure",
           "default_structure", "demand_rows", "energy_rows", "flat_months_row", "number",
           "period_labels", "schedules", "settings_of"]
