"""Golden bills worked out by hand: every expected figure is derived in the comments.

June 2026 has 30 days (2,880 intervals of 15 minutes); its weekend days are the
6th, 7th, 13th, 14th, 20th, 21st, 27th and 28th (8 days), so it has 22 weekdays.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from kilowatch.billing import bills, scenarios, tariffs
from kilowatch.billing.bills import BillingPeriod, Interval
from kilowatch.billing.scenarios import Flow


def table(default: int, *, hours: range = range(0), value: int = 1) -> list[list[int]]:
    """A 12×24 schedule of ``default`` with ``value`` in ``hours`` of every month."""
    return [[value if hour in hours else default for hour in range(24)] for _ in range(12)]


def make_tariff(rates, *, weekday=None, weekend=None, demand=None, flat=None, fixed=0.0,
                fixed_per="month", compensation="net_billing", export_rate=0.0,
                netting="interval", tiers=None):
    """Build a validated tariff from a few arguments (rates: one $/kWh per energy period)."""
    periods = [{"tiers": [{"rate": rate}]} for rate in rates]
    if tiers is not None:
        periods[0]["tiers"] = tiers
    structure = {
        "currency": "USD",
        "energy": {"periods": periods, "weekday": weekday or table(0),
                   "weekend": weekend or weekday or table(0)},
        "demand": demand,
        "flat_demand": flat,
        "fixed_charge": {"amount": fixed, "per": fixed_per},
        "export": {"compensation": compensation, "rate": export_rate, "netting": netting},
    }
    return tariffs.parse(structure)


def local(tz: str, text: str) -> datetime:
    """An aware datetime from a local wall-clock time."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))


def month(period: BillingPeriod, kwh) -> list[Interval]:
    """Every interval of the period; ``kwh(local_start)`` gives (import, export) or import."""
    result = []
    for start in period.slots():
        value = kwh(start.astimezone(period.tz))
        imported, exported = value if isinstance(value, tuple) else (value, 0.0)
        result.append(Interval(start, imported, exported))
    return result


JUNE_UTC = BillingPeriod("UTC", 2026, 6)


def test_flat_energy_rate_with_fixed_charge():
    # 1 kW all month: 0.25 kWh × 2,880 intervals = 720 kWh; 720 × 0.20 = 144.00.
    # Fixed charge 12.50 per month. Total 156.50.
    tariff = make_tariff([0.20], fixed=12.50)
    bill = bills.compute_bill(tariff, month(JUNE_UTC, lambda t: 0.25), JUNE_UTC)
    assert bill.breakdown() == {"energy": 144.00, "demand": 0.0, "fixed": 12.50,
                                "export_credit": 0.0, "total": 156.50}
    assert bill.details["import_kwh"] == 720
    assert bill.quality["complete"] and bill.quality["expected_intervals"] == 2880


def test_tiered_energy_and_daily_fixed_charge():
    # 720 kWh: the first 500 kWh at 0.10 = 50.00, the other 220 kWh at 0.15 = 33.00;
    # energy 83.00. Fixed 0.50 per day × 30 days = 15.00. Total 98.00.
    tariff = make_tariff([0], tiers=[{"rate": 0.10, "max_kwh": 500}, {"rate": 0.15}],
                         fixed=0.50, fixed_per="day")
    bill = bills.compute_bill(tariff, month(JUNE_UTC, lambda t: 0.25), JUNE_UTC)
    assert (bill.energy, bill.fixed, bill.total) == (83.00, 15.00, 98.00)
    assert [t["quantity"] for t in bill.details["energy"][0]["tiers"]] == [500, 220]


def test_tou_energy_weekday_and_weekend_in_local_time():
    # New York, June (EDT). Weekdays 17:00-21:00 local are peak (period 1, 0.30);
    # everything else, weekends included, is off-peak (period 0, 0.10).
    # The site draws 2 kWh per interval from 17:00 to 21:00 local, 1 kWh otherwise.
    # Peak: 22 weekdays × 4 h × 4 intervals × 2 kWh = 704 kWh × 0.30 = 211.20.
    # Off-peak: weekend evenings 8 days × 16 intervals × 2 kWh = 256 kWh, plus
    # 30 days × 20 h × 4 intervals × 1 kWh = 2,400 kWh: 2,656 kWh × 0.10 = 265.60.
    # Energy 476.80. (Priced in UTC hours, the evening peak would fall elsewhere.)
    period = BillingPeriod("America/New_York", 2026, 6)
    tariff = make_tariff([0.10, 0.30], weekday=table(0, hours=range(17, 21)), weekend=table(0))
    bill = bills.compute_bill(
        tariff, month(period, lambda t: 2.0 if 17 <= t.hour < 21 else 1.0), period)
    by_period = {row["period"]: row for row in bill.details["energy"]}
    assert by_period[1]["import_kwh"] == 704 and by_period[0]["import_kwh"] == 2656
    assert bill.energy == 476.80 and bill.total == 476.80


def test_demand_on_the_15_minute_peak_straddling_two_hours():
    # Paris, June. A base load of 0.5 kWh per interval (2 kW). On Wednesday 3 June
    # the site draws 100 kW from 10:45 to 11:15 local: 25 kWh in the 10:45 interval
    # and 25 kWh in the 11:00 one. Hourly averages would only be
    # (3 × 0.5 + 25) kWh / 1 h = 26.5 kW; the 15-minute peak is 25 × 4 = 100 kW.
    # On Thursday 4 June, 24 kWh in the 11:30 interval (96 kW) is lower.
    # Flat demand, tiered: 50 kW × 10 = 500 + 50 kW × 8 = 400; demand 900.00.
    # Energy: base 2,880 × 0.5 = 1,440 kWh, plus the extra (25 - 0.5) × 2 + (24 - 0.5)
    # = 72.5 kWh: 1,512.5 kWh × 0.10 = 151.25. Total 1,051.25.
    period = BillingPeriod("Europe/Paris", 2026, 6)
    spikes = {local("Europe/Paris", "2026-06-03 10:45"): 25.0,
              local("Europe/Paris", "2026-06-03 11:00"): 25.0,
              local("Europe/Paris", "2026-06-04 11:30"): 24.0}
    flat = {"periods": [{"tiers": [{"rate": 10, "max_kw": 50}, {"rate": 8}]}], "months": [0] * 12}
    tariff = make_tariff([0.10], flat=flat)
    bill = bills.compute_bill(tariff, month(period, lambda t: spikes.get(t, 0.5)), period)
    assert bill.demand == 900.00 and bill.energy == 151.25 and bill.total == 1051.25
    assert bill.details["demand"]["peak_kw"] == 100
    # The first of the two equal intervals is reported: 10:45 local = 08:45 UTC.
    assert bill.details["demand"]["peak_at"] == "2026-06-03T08:45:00+00:00"


def test_demand_per_time_of_use_period_and_flat_months():
    # Paris, June. Demand period 1 (weekdays 12:00-18:00 local) at 12 $/kW, period 0
    # (all other times, weekends included) at 2 $/kW. Base 1 kWh per interval (4 kW).
    # Wednesday 03:00: 15 kWh (60 kW, off-peak). Wednesday 15:15: 10 kWh (40 kW,
    # on-peak). Saturday 6 June 15:00: 20 kWh (80 kW, a weekend afternoon: off-peak).
    # Off-peak peak 80 kW × 2 = 160.00; on-peak peak 40 kW × 12 = 480.00.
    # The flat demand charge (5 $/kW) applies in December only: not in June.
    # Demand 640.00.
    period = BillingPeriod("Europe/Paris", 2026, 6)
    spikes = {local("Europe/Paris", "2026-06-03 03:00"): 15.0,
              local("Europe/Paris", "2026-06-03 15:15"): 10.0,
              local("Europe/Paris", "2026-06-06 15:00"): 20.0}
    demand = {"periods": [{"tiers": [{"rate": 2}]}, {"tiers": [{"rate": 12}]}],
              "weekday": table(0, hours=range(12, 18)), "weekend": table(0)}
    flat = {"periods": [{"tiers": [{"rate": 5}]}], "months": [None] * 11 + [0]}
    tariff = make_tariff([0.0], demand=demand, flat=flat)
    bill = bills.compute_bill(tariff, month(period, lambda t: spikes.get(t, 1.0)), period)
    charges = {(c["kind"], c["period"]): (c["peak_kw"], c["charge"])
               for c in bill.details["demand"]["charges"]}
    assert charges == {("tou", 0): (80, 160), ("tou", 1): (40, 480)}
    assert bill.demand == 640.00
    assert bill.details["demand"]["peak_at"] == "2026-06-06T13:00:00+00:00"

    # The same data in December would add the flat charge: 80 kW × 5 = 400.
    december = BillingPeriod("Europe/Paris", 2026, 12)
    bill = bills.compute_bill(tariff, month(december, lambda t: 1.0), december)
    # December base load only: 4 kW everywhere; off-peak 4 × 2 = 8, on-peak 4 × 12 = 48,
    # flat 4 × 5 = 20: demand 76.00.
    assert bill.demand == 76.00


def _export_day(t: datetime):
    """Night 0.25 kWh per interval; 10:00-15:00 one import then three exports per hour;
    15:00-16:00 imports 1 kWh per interval."""
    if 10 <= t.hour < 15:
        return (1.0, 0.0) if t.minute == 0 else (0.0, 2.0)
    if t.hour == 15:
        return (1.0, 0.0)
    if t.hour < 10 or t.hour >= 16:
        return (0.25, 0.0)
    raise AssertionError


def _export_tariff(compensation, netting="interval"):
    # Period 1 (10:00-16:00 every day) at 0.25, period 0 at 0.10; exports at 0.04.
    day = table(0, hours=range(10, 16))
    return make_tariff([0.10, 0.25], weekday=day, weekend=day, fixed=10.0,
                       compensation=compensation, export_rate=0.04, netting=netting)


# Per day: period 0 (18 hours): 72 intervals × 0.25 = 18 kWh imported.
# Period 1: 10:00-15:00 five hours of (1 kWh import, 3 × 2 kWh export) = 5 kWh import
# and 30 kWh export; 15:00-16:00 4 × 1 kWh = 4 kWh import. So 9 kWh import, 30 export.
# June: period 0 imports 540 kWh; period 1 imports 270 kWh and exports 900 kWh.
# Exports (900) exceed imports (810): a surplus month.


def test_net_metering_with_a_surplus_month():
    # Period 0: 540 kWh × 0.10 = 54.00. Period 1: net 270 - 900 = -630 kWh: nothing
    # to pay, the 630 kWh surplus credited at 0.04 = 25.20. Fixed 10.00.
    # Total 54.00 + 10.00 - 25.20 = 38.80.
    bill = bills.compute_bill(_export_tariff("net_metering"), month(JUNE_UTC, _export_day),
                              JUNE_UTC)
    assert bill.breakdown() == {"energy": 54.00, "demand": 0.0, "fixed": 10.00,
                                "export_credit": 25.20, "total": 38.80}
    period_1 = next(row for row in bill.details["energy"] if row["period"] == 1)
    assert (period_1["billed_kwh"], period_1["credited_kwh"]) == (0, 630)


def test_net_billing_per_interval():
    # Every import bought: 540 × 0.10 + 270 × 0.25 = 54.00 + 67.50 = 121.50.
    # Every export sold: 900 × 0.04 = 36.00. Total 121.50 + 10.00 - 36.00 = 95.50.
    bill = bills.compute_bill(_export_tariff("net_billing"), month(JUNE_UTC, _export_day),
                              JUNE_UTC)
    assert bill.breakdown() == {"energy": 121.50, "demand": 0.0, "fixed": 10.00,
                                "export_credit": 36.00, "total": 95.50}


def test_net_billing_hourly_nets_within_each_hour():
    # 10:00-15:00: each hour nets 1 - 6 = 5 kWh export: 5 h × 5 × 30 days = 750 kWh
    # × 0.04 = 30.00. 15:00-16:00 nets 4 kWh import × 30 = 120 kWh × 0.25 = 30.00.
    # Energy 54.00 + 30.00 = 84.00. Total 84.00 + 10.00 - 30.00 = 64.00.
    bill = bills.compute_bill(_export_tariff("net_billing", "hourly"),
                              month(JUNE_UTC, _export_day), JUNE_UTC)
    assert (bill.energy, bill.export_credit, bill.total) == (84.00, 30.00, 64.00)


def test_period_sell_rate_overrides_the_export_rate():
    # Net billing, period 1 sells at 0.07 instead of 0.04: 900 × 0.07 = 63.00.
    structure = _export_tariff("net_billing").to_dict()
    structure["energy"]["periods"][1]["sell"] = 0.07
    bill = bills.compute_bill(tariffs.parse(structure), month(JUNE_UTC, _export_day), JUNE_UTC)
    assert bill.export_credit == 63.00


@pytest.mark.parametrize(("month_number", "intervals", "energy", "tou_energy"), [
    # March 2026: clocks go 02:00 -> 03:00 on Sunday the 29th: 31 × 24 - 1 = 743 hours,
    # 2,972 intervals of 1 kWh. Flat 0.20: 594.40. TOU with local hour 02:00-03:00 at
    # 0.50: that hour exists on 30 days: 120 kWh × 0.50 = 60.00, and 2,852 kWh × 0.10
    # = 285.20; 345.20.
    (3, 2972, 594.40, 345.20),
    # October 2026: clocks go 03:00 -> 02:00 on Sunday the 25th: 745 hours, 2,980
    # intervals. Flat: 596.00. Hour 02:00 happens 32 times (twice on the 25th): 128 kWh
    # × 0.50 = 64.00, plus 2,852 × 0.10 = 285.20; 349.20.
    (10, 2980, 596.00, 349.20),
])
def test_dst_month_has_23_and_25_hour_days(month_number, intervals, energy, tou_energy):
    period = BillingPeriod("Europe/Paris", 2026, month_number)
    data = month(period, lambda t: 1.0)
    assert len(data) == intervals
    bill = bills.compute_bill(make_tariff([0.20]), data, period)
    assert bill.energy == energy
    assert bill.quality["expected_intervals"] == intervals and bill.quality["complete"]
    night = table(0, hours=range(2, 3))
    tou = make_tariff([0.10, 0.50], weekday=night, weekend=night)
    assert bills.compute_bill(tou, data, period).energy == tou_energy


def test_dst_hourly_netting_keeps_the_repeated_hour_apart():
    # 25 October, Paris: 02:00-03:00 happens twice. The first 02:00 hour imports 4 kWh
    # (4 × 1), the second exports 4 kWh (4 × 1). Netted together they would cancel;
    # netted per clock hour, 4 kWh are bought at 0.10 (0.40) and 4 kWh sold at 0.05
    # (0.20).
    period = BillingPeriod("Europe/Paris", 2026, 10)
    first = local("Europe/Paris", "2026-10-25 02:00").astimezone(UTC)  # fold 0: 00:00 UTC
    data = [Interval(first + i * bills.INTERVAL, 1.0, 0.0) for i in range(4)]
    data += [Interval(first + (4 + i) * bills.INTERVAL, 0.0, 1.0) for i in range(4)]
    tariff = make_tariff([0.10], compensation="net_billing", netting="hourly", export_rate=0.05)
    bill = bills.compute_bill(tariff, data, period)
    assert (bill.energy, bill.export_credit) == (0.40, 0.20)


def test_month_with_a_data_gap_is_flagged_not_zero():
    # 10 June 00:00-06:00 has no data (24 intervals), and 20 June 12:00-13:00 was
    # estimated across a gap (4 intervals). Energy: (2,880 - 24) × 1 kWh × 0.20 = 571.20.
    gap = {datetime(2026, 6, 10, h, m, tzinfo=UTC) for h in range(6) for m in (0, 15, 30, 45)}
    estimated = {datetime(2026, 6, 20, 12, m, tzinfo=UTC) for m in (0, 15, 30, 45)}
    data = [Interval(s, 1.0, estimated=s in estimated) for s in JUNE_UTC.slots() if s not in gap]
    bill = bills.compute_bill(make_tariff([0.20]), data, JUNE_UTC)
    assert bill.energy == 571.20
    assert bill.quality["complete"] is False
    assert bill.quality["missing_intervals"] == 24
    assert bill.quality["missing"] == [["2026-06-10T00:00:00+00:00", "2026-06-10T06:00:00+00:00"]]
    assert bill.quality["estimated"] == [["2026-06-20T12:00:00+00:00",
                                          "2026-06-20T13:00:00+00:00"]]


def test_month_to_date_expects_intervals_up_to_until():
    # Until 15 June 00:00: 14 days × 96 = 1,344 intervals; 1,344 kWh × 0.20 = 268.80.
    until = datetime(2026, 6, 15, tzinfo=UTC)
    data = [Interval(s, 1.0) for s in JUNE_UTC.slots(until)]
    bill = bills.compute_bill(make_tariff([0.20]), data, JUNE_UTC, until=until)
    assert bill.energy == 268.80 and bill.quality["expected_intervals"] == 1344
    assert bill.quality["complete"]
    with pytest.raises(ValueError, match="not a 15-minute interval"):
        bills.compute_bill(make_tariff([0.20]), [Interval(until, 1.0)], JUNE_UTC, until=until)


def test_three_scenarios_and_savings():
    # Every interval the site consumes 1 kWh. From 10:00 to 14:00 PV makes 1.5 kWh per
    # interval and the battery charges 0.5 kWh (grid 1 - 1.5 + 0.5 = 0); from 18:00 to
    # 22:00 the battery discharges 0.5 kWh (grid import 0.5). Flat 0.20, exports 0.05.
    # 1 without system: 2,880 kWh × 0.20 = 576.00.
    # 2 PV only: 16 intervals a day import nothing and export 0.5 kWh: 8 kWh a day,
    #   240 kWh × 0.05 = 12.00 credit; 80 intervals import 1 kWh: 2,400 × 0.20 = 480.00.
    #   Total 468.00.
    # 3 actual: 16 × 0.5 + 64 × 1 = 72 kWh a day, 2,160 × 0.20 = 432.00.
    # System saves 576.00 - 432.00 = 144.00; storage 468.00 - 432.00 = 36.00
    # (48.00 of energy, minus the 12.00 export credit PV alone would have earned).
    def flow(start):
        hour = start.hour
        pv = 1.5 if 10 <= hour < 14 else 0.0
        grid = 0.0 if 10 <= hour < 14 else 0.5 if 18 <= hour < 22 else 1.0
        return Flow(start, grid, 0.0, 1.0, pv)

    tariff = make_tariff([0.20], export_rate=0.05)
    result = scenarios.compute_bills(tariff, [flow(s) for s in JUNE_UTC.slots()], JUNE_UTC)
    assert [result[s].total for s in scenarios.SCENARIOS] == [576.00, 468.00, 432.00]
    saved = scenarios.savings(result)
    assert saved["system"]["total"] == 144.00
    assert saved["storage"] == {"energy": 48.00, "demand": 0.0, "fixed": 0.0,
                                "export_credit": -12.00, "total": 36.00}


def test_scenarios_leave_out_intervals_without_data():
    # The load is unknown for one interval: the two load-based bills miss it, actual does not.
    slots = JUNE_UTC.slots()
    flows = [Flow(s, 1.0, 0.0, None if i == 5 else 1.0, 0.0) for i, s in enumerate(slots)]
    result = scenarios.compute_bills(make_tariff([0.20]), flows, JUNE_UTC)
    assert result["without_system"].quality["missing_intervals"] == 1
    assert result["pv_only"].quality["missing_intervals"] == 1
    assert result["actual"].quality["complete"]


def test_buy_all_sell_all_sells_all_pv():
    # Buy all, sell all at 0.05: PV only buys the whole load (576.00) and sells all
    # PV, 16 intervals × 1.5 kWh × 30 days = 720 kWh × 0.05 = 36.00; total 540.00.
    tariff = make_tariff([0.20], export_rate=0.05, compensation="buy_all_sell_all")
    flows = [Flow(s, 0.0 if 10 <= s.hour < 14 else 1.0, 0.5 if 10 <= s.hour < 14 else 0.0,
                  1.0, 1.5 if 10 <= s.hour < 14 else 0.0) for s in JUNE_UTC.slots()]
    result = scenarios.compute_bills(tariff, flows, JUNE_UTC)
    assert result["pv_only"].total == 540.00
    # Actual (no battery: grid = load - PV) is the same bill.
    assert result["actual"].total == 540.00


def test_billing_period_parses_months():
    period = bills.billing_period("Europe/Paris", "2026-03")
    assert period.start == datetime(2026, 2, 28, 23, tzinfo=UTC)
    assert period.end == datetime(2026, 3, 31, 22, tzinfo=UTC)
    for bad in ("2026-13", "26-03", "March"):
        with pytest.raises(ValueError, match="not a month"):
            bills.billing_period("UTC", bad)
