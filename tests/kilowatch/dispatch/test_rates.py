"""Pricing steps as the bill engine bills them: the month so far, tiers and month boundaries."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import numpy as np
import pytest

from kilowatch.billing import bills, tariffs
from kilowatch.dispatch import rates
from tests.kilowatch.dispatch import helpers
from tests.kilowatch.dispatch.helpers import JUNE, STEP


def random_month_start(tariff, count, seed):
    rng = random.Random(seed)
    return [helpers.Interval(JUNE + k * STEP, rng.uniform(0, 10), rng.uniform(0, 3))
            for k in range(count)]


def test_month_to_date_holds_what_the_bill_engine_counts():
    tariff = helpers.tariff(expensive=range(8, 20), flat_kw=5.0, tou_kw=7.0)
    history = random_month_start(tariff, 300, 1)
    now = JUNE + 300 * STEP
    so_far = rates.month_to_date(tariff, "UTC", now, history)
    bill = bills.compute_bill(tariff, history, bills.BillingPeriod("UTC", 2026, 6), until=now)
    for part in bill.details["energy"]:
        assert so_far.import_kwh[part["period"]] == pytest.approx(part["import_kwh"], abs=1e-6)
        assert so_far.export_kwh[part["period"]] == pytest.approx(part["export_kwh"], abs=1e-6)
    for charge in bill.details["demand"]["charges"]:
        assert so_far.peaks_kw[(charge["kind"], charge["period"])] == pytest.approx(
            charge["peak_kw"], abs=1e-6)
    last_hour = history[-4:]  # 300 steps end on an hour boundary: the hour just ended
    assert so_far.hour_net_kwh == pytest.approx(
        sum(i.import_kwh - i.export_kwh for i in last_hour))


def test_a_new_local_month_starts_empty():
    tariff = helpers.tariff(flat_kw=5.0)
    history = [helpers.Interval(datetime(2026, 5, 31, 21, 45, tzinfo=UTC), 9.0)]
    # 23:45 UTC on 31 May is already June in Paris (UTC+2): the May peak does not count.
    so_far = rates.month_to_date(tariff, "Europe/Paris", JUNE - 2 * STEP * 4, history)
    assert so_far.month == (2026, 6)
    assert so_far.peaks_kw == {}
    may = rates.month_to_date(tariff, "UTC", JUNE - STEP, history)
    assert may.peaks_kw == {("flat", 0): 36.0}
    assert rates.pricing(tariff, "UTC", helpers.starts(2), may).demand_groups[0].prior_kw == 0.0


def test_demand_periods_without_a_charge_hold_no_peak_and_groups_are_named():
    # Time-of-use demand: hours 1-2 charge 7/kW, the others (period 0) nothing.
    tariff = helpers.tariff(flat_kw=5.0, tou_kw=7.0)
    groups = rates.pricing(tariff, "UTC", helpers.starts(8), None).demand_groups
    assert [g.label for g in groups] == ["monthly demand 2026-06", "demand period 2 2026-06"]
    assert [g.steps.tolist() for g in groups] == [list(range(8)), [4, 5, 6, 7]]


@pytest.mark.parametrize("compensation, netting", [("net_billing", "interval"),
                                                   ("net_billing", "hourly"),
                                                   ("net_metering", "interval"),
                                                   ("buy_all_sell_all", "interval")])
def test_horizon_cost_across_a_month_end_is_the_two_months_bills(compensation, netting):
    tariff = helpers.tariff(compensation=compensation, netting=netting, flat_kw=6.0, tou_kw=4.0,
                            expensive=range(22, 24), export_rate=0.04)
    first = datetime(2026, 6, 30, 20, 0, tzinfo=UTC)
    rng = np.random.default_rng(3)
    load, pv, power = rng.uniform(2, 12, 24), rng.uniform(0, 9, 24), rng.uniform(-5, 5, 24)
    prices = rates.pricing(tariff, "UTC", helpers.starts(24, first))
    items = helpers.intervals(tariff, first, load, pv, power)
    billed = load - (0 if compensation == "buy_all_sell_all" else pv) - power
    cost = rates.horizon_cost(prices, np.maximum(billed, 0), np.maximum(-billed, 0), pv)
    june = [i for i in items if i.start.month == 6]
    july = [i for i in items if i.start.month == 7]
    assert cost == pytest.approx(helpers.bill_raw(tariff, june) + helpers.bill_raw(tariff, july),
                                 abs=1e-6)


def test_tiered_energy_is_priced_at_the_tier_the_month_is_in():
    structure = helpers.tariff().to_dict()
    structure["energy"]["periods"][0]["tiers"] = [{"rate": 0.10, "max_kwh": 100},
                                                  {"rate": 0.25, "max_kwh": None}]
    tiered = tariffs.parse(structure)
    below = rates.pricing(tiered, "UTC", helpers.starts(1, JUNE + STEP * 10),
                          rates.MonthToDate((2026, 6), import_kwh={0: 99.0}))
    above = rates.pricing(tiered, "UTC", helpers.starts(1, JUNE + STEP * 10),
                          rates.MonthToDate((2026, 6), import_kwh={0: 100.0}))
    assert (below.buy[0], above.buy[0]) == (0.10, 0.25)
    assert rates.marginal_rate(tiered.energy_periods[0].tiers, 3.0, scale=30) == 0.10


def test_demand_tiers_above_the_peak_so_far():
    group = rates.DemandGroup("d", np.arange(2), 30.0, rates._demand_segments(
        (tariffs.Tier(5.0, 50.0), tariffs.Tier(9.0, None)), 30.0))
    assert group.segments == ((20.0, 5.0), (np.inf, 9.0))
    assert group.cost(25.0) == 0.0
    assert group.cost(60.0) == pytest.approx(20 * 5.0 + 10 * 9.0)
