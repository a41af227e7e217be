"""Import of OpenEI Utility Rate Database (URDB) rate JSON into a validated tariff.

:func:`import_urdb` converts a URDB rate as the API publishes it into the normalised
form of :mod:`kilowatch.billing.tariffs` and validates it there; a faulty field is
reported with its URDB name (``energyratestructure[0][1].rate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The field checks of the normalised form are shared, so a URDB field fails the same way.
from kilowatch.billing.tariffs import (
    Tariff,
    TariffError,
    _fail,
    _label,
    _list,
    _mapping,
    _number,
    parse,
)

DGRULES = {
    "net metering": ("net_metering", "interval"),
    "net billing instantaneous": ("net_billing", "interval"),
    "net billing hourly": ("net_billing", "hourly"),
    "buy all sell all": ("buy_all_sell_all", "interval"),
}


def select_urdb_rate(document: Any, label: str | None = None) -> Mapping:
    """Return the rate object of a URDB document (a rate, or the API's ``{"items": [...]}``)."""
    document = _mapping(document, "document")
    if "items" not in document:
        if label is not None and document.get("label") != label:
            raise _fail("label", f"the document is rate {document.get('label')!r}, not {label!r}")
        return document
    items = _list(document["items"], "items", min_length=1)
    if label is None:
        return _mapping(items[0], "items[0]")
    for index, item in enumerate(items):
        if _mapping(item, f"items[{index}]").get("label") == label:
            return item
    raise _fail("items", f"no rate with label {label!r}")


def import_urdb(document: Any, *, label: str | None = None, currency: str = "USD",
                export_rate: float = 0.0) -> Tariff:
    """Convert a URDB rate JSON (as the API publishes it) into a validated :class:`Tariff`.

    URDB rates carry export prices only as ``sell`` on energy tiers; ``export_rate``
    is used for the periods without one (and for a net-metering surplus).
    """
    rate = select_urdb_rate(document, label)
    if "energyratestructure" not in rate:
        raise _fail("energyratestructure", "missing: a URDB rate needs its energy rate structure")
    periods = _urdb_energy_periods(rate["energyratestructure"])
    structure: dict[str, Any] = {
        "currency": currency,
        "energy": {
            "periods": periods,
            "weekday": _urdb_schedule(rate, "energyweekdayschedule"),
            "weekend": _urdb_schedule(rate, "energyweekendschedule"),
        },
        "demand": _urdb_demand(rate),
        "flat_demand": _urdb_flat_demand(rate),
        "fixed_charge": _urdb_fixed_charge(rate),
        "export": {**_urdb_export(rate), "rate": export_rate},
    }
    try:
        return parse(structure)
    except TariffError as error:
        raise TariffError(_urdb_field_name(str(error))) from None


_URDB_NAMES = (
    ("energy.periods", "energyratestructure"),
    ("energy.weekday", "energyweekdayschedule"),
    ("energy.weekend", "energyweekendschedule"),
    ("demand.periods", "demandratestructure"),
    ("demand.weekday", "demandweekdayschedule"),
    ("demand.weekend", "demandweekendschedule"),
    ("flat_demand.periods", "flatdemandstructure"),
    ("flat_demand.months", "flatdemandmonths"),
)


def _urdb_field_name(message: str) -> str:
    """Translate a normalised field path in an error back into the URDB field name."""
    for ours, theirs in _URDB_NAMES:
        if message.startswith(ours):
            rest = message[len(ours):].replace(".tiers", "")
            return theirs + rest.replace("max_kwh", "max").replace("max_kw", "max")
    return message


def _urdb_tier(raw: Any, field: str) -> dict[str, Any]:
    raw = _mapping(raw, field)
    if raw.get("rate") is None and raw.get("adj") is None:
        raise _fail(field, "a tier needs a rate")
    rate = _number(raw.get("rate", 0), f"{field}.rate") + _number(raw.get("adj", 0), f"{field}.adj")
    limit = raw.get("max")
    return {"rate": round(rate, 10),
            "max": None if limit is None else _number(limit, f"{field}.max", positive=True)}


def _urdb_energy_periods(raw: Any) -> list[dict[str, Any]]:
    periods = []
    for p, tiers in enumerate(_list(raw, "energyratestructure", min_length=1)):
        tiers = _list(tiers, f"energyratestructure[{p}]", min_length=1)
        units = {_mapping(t, f"energyratestructure[{p}][{i}]").get("unit", "kWh")
                 for i, t in enumerate(tiers)}
        if not units <= {"kWh", "kWh daily"} or len(units) > 1:
            raise _fail(f"energyratestructure[{p}][0].unit",
                        f"tier unit {sorted(units)} is not supported (kWh or kWh daily)")
        converted = [_urdb_tier(t, f"energyratestructure[{p}][{i}]") for i, t in enumerate(tiers)]
        sell = _mapping(tiers[0], f"energyratestructure[{p}][0]").get("sell")
        if sell is not None:
            sell = _number(sell, f"energyratestructure[{p}][0].sell")
        periods.append({
            "tiers": [{"rate": t["rate"], "max_kwh": t["max"]} for t in converted],
            "tier_basis": "daily" if units == {"kWh daily"} else "monthly",
            "sell": sell,
            "label": _label(tiers[0].get("label"), f"energyratestructure[{p}][0].label"),
        })
    return periods


def _urdb_schedule(rate: Mapping, field: str) -> Any:
    if field not in rate:
        raise _fail(field, "missing: a 12×24 table of period numbers is required")
    return rate[field]


def _urdb_demand_periods(raw: Any, field: str) -> list[dict[str, Any]]:
    periods = []
    for p, tiers in enumerate(_list(raw, field, min_length=1)):
        tiers = _list(tiers, f"{field}[{p}]", min_length=1)
        converted = [_urdb_tier(t, f"{field}[{p}][{i}]") for i, t in enumerate(tiers)]
        periods.append({"tiers": [{"rate": t["rate"], "max_kw": t["max"]} for t in converted]})
    return periods


def _check_demand_unit(rate: Mapping, field: str) -> None:
    unit = rate.get(field, "kW")
    if unit not in ("kW", None, ""):
        raise _fail(field, f"demand unit {unit!r} is not supported (kW only)")


def _urdb_demand(rate: Mapping) -> dict[str, Any] | None:
    if "demandratestructure" not in rate:
        return None
    _check_demand_unit(rate, "demandrateunit")
    return {
        "periods": _urdb_demand_periods(rate["demandratestructure"], "demandratestructure"),
        "weekday": _urdb_schedule(rate, "demandweekdayschedule"),
        "weekend": _urdb_schedule(rate, "demandweekendschedule"),
    }


def _urdb_flat_demand(rate: Mapping) -> dict[str, Any] | None:
    if "flatdemandstructure" not in rate:
        return None
    _check_demand_unit(rate, "flatdemandunit")
    if "flatdemandmonths" not in rate:
        raise _fail("flatdemandmonths", "missing: 12 flat demand period numbers are required")
    return {
        "periods": _urdb_demand_periods(rate["flatdemandstructure"], "flatdemandstructure"),
        "months": rate["flatdemandmonths"],
    }


def _urdb_fixed_charge(rate: Mapping) -> dict[str, Any]:
    if rate.get("fixedchargefirstmeter") is not None:
        units = rate.get("fixedchargeunits", "$/month")
        per = {"$/month": "month", "$/day": "day", "$/year": "year"}.get(units)
        if per is None:
            raise _fail("fixedchargeunits", f"expected $/month, $/day or $/year, got {units!r}")
        return {"amount": _number(rate["fixedchargefirstmeter"], "fixedchargefirstmeter"),
                "per": per}
    if rate.get("fixedmonthlycharge") is not None:
        return {"amount": _number(rate["fixedmonthlycharge"], "fixedmonthlycharge"),
                "per": "month"}
    return {"amount": 0.0, "per": "month"}


def _urdb_export(rate: Mapping) -> dict[str, Any]:
    rule = rate.get("dgrules")
    if rule in (None, ""):
        compensation, netting = "net_billing", "interval"
    else:
        if not isinstance(rule, str) or rule.strip().lower() not in DGRULES:
            raise _fail("dgrules", f"{rule!r} is not supported (Net Metering, Net Billing "
                                   "Instantaneous, Net Billing Hourly, Buy All Sell All)")
        compensation, netting = DGRULES[rule.strip().lower()]
    return {"compensation": compensation, "netting": netting}
