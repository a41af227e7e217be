"""URDB import of a realistic rate document, and validation messages naming the faulty field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from kilowatch.billing import tariffs, urdb
from kilowatch.billing.tariffs import TariffError

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture
def document():
    """The API response (``{"items": [...]}``) with a commercial and a residential rate."""
    return json.loads((DATA / "urdb_sunridge.json").read_text())


def test_urdb_commercial_rate_imports_as_published(document):
    tariff = urdb.import_urdb(document)  # the first item
    assert tariff.currency == "USD"
    # rate + adj per period; the summer off-peak period has two tiers.
    assert [p.tiers[0].rate for p in tariff.energy_periods] == [0.0857, 0.1468, 0.0966, 0.2256]
    assert tariff.energy_periods[2].tiers == (tariffs.Tier(0.0966, 10000), tariffs.Tier(0.1079))
    assert [p.sell for p in tariff.energy_periods] == [0.035, 0.035, 0.041, 0.041]
    # Schedules: July (7) weekday 15:00 is summer on-peak (3), weekend summer off-peak (2);
    # January weekday 08:00 winter on-peak (1), 03:00 off-peak (0).
    assert tariff.energy_period(7, 15, weekend=False) == 3
    assert tariff.energy_period(7, 15, weekend=True) == 2
    assert tariff.energy_period(1, 8, weekend=False) == 1
    assert tariff.energy_period(1, 3, weekend=False) == 0
    # Demand: summer on-peak 14.2 + 0.3 adj; flat demand summer tiered, winter 4.75.
    assert [p.tiers[0].rate for p in tariff.demand_periods] == [0, 6.85, 14.5]
    assert tariff.demand_period(8, 16, weekend=False) == 2
    assert tariff.demand_period(8, 16, weekend=True) == 0
    assert tariff.flat_demand_months == (0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0)
    assert tariff.flat_demand_periods[1].tiers == (tariffs.Tier(5.9, 500), tariffs.Tier(4.1))
    assert (tariff.fixed_charge, tariff.fixed_charge_unit) == (42.5, "month")
    assert (tariff.export_compensation, tariff.netting) == ("net_billing", "interval")


def test_label_picks_an_item_and_residential_rules_apply(document):
    tariff = urdb.import_urdb(document, label="67a1c0ffee5a1b2c3d4e5f61", export_rate=0.03)
    assert tariff.export_compensation == "net_metering"
    assert tariff.energy_periods[0].tier_basis == "daily"
    assert tariff.energy_periods[0].tiers == (tariffs.Tier(0.1102, 20), tariffs.Tier(0.1387))
    assert (tariff.fixed_charge, tariff.export_rate) == (9.95, 0.03)
    with pytest.raises(TariffError, match="^items: no rate with label 'nope'"):
        urdb.import_urdb(document, label="nope")


def test_a_single_rate_object_is_accepted_and_round_trips(document):
    tariff = urdb.import_urdb(document["items"][0])
    assert tariffs.parse(tariff.to_dict()) == tariff
    assert urdb.import_urdb(document) == tariff


@pytest.mark.parametrize("dgrules, expected", [
    ("Net Metering", ("net_metering", "interval")),
    ("Net Billing Instantaneous", ("net_billing", "interval")),
    ("Net Billing Hourly", ("net_billing", "hourly")),
    ("Buy All Sell All", ("buy_all_sell_all", "interval")),
])
def test_dgrules_map_to_export_compensation(document, dgrules, expected):
    document["items"][0]["dgrules"] = dgrules
    tariff = urdb.import_urdb(document)
    assert (tariff.export_compensation, tariff.netting) == expected


def _set(path, value):
    def change(rate):
        target = rate
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return change


_DELETE = object()


@pytest.mark.parametrize("change, message", [
    (_set(["energyweekdayschedule"], _DELETE), "^energyweekdayschedule: missing"),
    (_set(["energyweekdayschedule", 3, 17], 9),
     r"^energyweekdayschedule\[3\]\[17\]: period 9 does not exist \(there are 4\)"),
    (_set(["energyweekendschedule", 2], [0] * 23),
     r"^energyweekendschedule\[2\]: expected 24 entries, got 23"),
    (_set(["energyratestructure", 1, 0, "rate"], "cheap"),
     r"^energyratestructure\[1\]\[0\]\.rate: expected a number, got 'cheap'"),
    (_set(["energyratestructure", 2, 1, "max"], 5000),
     r"^energyratestructure\[2\]\[1\]: tier maxima must increase"),
    (_set(["energyratestructure", 0, 0, "unit"], "kWh/kW"),
     r"^energyratestructure\[0\]\[0\]\.unit: tier unit"),
    (_set(["energyratestructure", 3], []), r"^energyratestructure\[3\]: must not be empty"),
    (_set(["energyratestructure"], _DELETE), "^energyratestructure: missing"),
    (_set(["dgrules"], "Feed-in Tariff"), "^dgrules: 'Feed-in Tariff' is not supported"),
    (_set(["flatdemandmonths"], [0] * 11), "^flatdemandmonths: expected 12 entries"),
    (_set(["flatdemandmonths", 4], 7), r"^flatdemandmonths\[4\]: expected a flat demand period"),
    (_set(["flatdemandunit"], "kVA"), "^flatdemandunit: demand unit 'kVA' is not supported"),
    (_set(["demandweekendschedule"], _DELETE), "^demandweekendschedule: missing"),
    (_set(["demandratestructure", 1, 0], {"max": 3}), r"^demandratestructure\[1\]\[0\]: a tier"),
    (_set(["fixedchargeunits"], "$/week"), "^fixedchargeunits: expected"),
    (_set(["fixedchargefirstmeter"], "free"), "^fixedchargefirstmeter: expected a number"),
])
def test_faulty_urdb_fields_are_named(document, change, message):
    rate = copy.deepcopy(document["items"][0])
    change(rate)
    with pytest.raises(TariffError, match=message):
        urdb.import_urdb(rate)


@pytest.mark.parametrize("document, message", [
    ([], "^document: expected an object, got list"),
    ({"items": []}, "^items: must not be empty"),
    ({"items": "x"}, "^items: expected a list"),
])
def test_malformed_documents_are_named(document, message):
    with pytest.raises(TariffError, match=message):
        urdb.import_urdb(document)


@pytest.mark.parametrize("path, value, message", [
    (["currency"], "usd", "^currency: expected a three-letter ISO code"),
    (["export", "compensation"], "feed_in", "^export.compensation: expected one of"),
    (["export", "netting"], "daily", "^export.netting: expected one of"),
    (["fixed_charge", "per"], "week", "^fixed_charge.per: expected one of"),
    (["energy", "periods", 0, "tiers", 0, "rate"], float("nan"),
     r"^energy.periods\[0\]\.tiers\[0\]\.rate: expected a finite number"),
    (["energy", "weekday", 0, 0], True, r"^energy.weekday\[0\]\[0\]: expected a period number"),
])
def test_faulty_normalised_fields_are_named(document, path, value, message):
    structure = urdb.import_urdb(document).to_dict()
    _set(path, value)(structure)
    with pytest.raises(TariffError, match=message):
        tariffs.parse(structure)
