"""Interval energy read at interval boundaries, from readings rolled up by the worker's code."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.telemetry import energy, rollups
from tests.kilowatch.telemetry.helpers import (
    HOUR,
    MINUTE,
    counter,
    make_site,
    power,
    roll_up,
    store,
    store_late,
    utc,
)

T0 = utc(2026, 9, 15, 10)  # a Tuesday, long past for every test run
QUARTER = timedelta(minutes=15)
SECOND = timedelta(seconds=1)


def values(result, quantity):
    return [item.kwh.get(quantity) for item in result.intervals]


def steps(*kw_per_quarter):
    """A power profile (kW per minute) holding each value for a quarter hour from T0."""
    def profile(minute):
        index = int((minute - T0) / QUARTER)
        return kw_per_quarter[index] if 0 <= index < len(kw_per_quarter) else 0.0
    return profile


def test_counters_become_15_minute_intervals(conn):
    # 15 kW read every minute: 3.75 kWh per quarter hour, from the 09:59 baseline.
    _, site, (meter,) = make_site(conn)
    store(conn, meter, {"meter.grid.e_import": counter(lambda m: 15.0, T0 - MINUTE,
                                                       T0 + HOUR + MINUTE, MINUTE, first=100.0)})
    roll_up(conn, [meter], T0 - MINUTE, T0 + HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert values(result, "grid_import") == pytest.approx([3.75] * 4)
    assert result.methods == {"grid_import": "counter", "load": "derived"}
    assert [i.start for i in result.intervals] == [T0 + k * QUARTER for k in range(4)]
    assert not result.gap_ranges() and not result.catching_up


def test_a_reading_at_the_quarter_hour_counts_at_the_quarter_hour(conn):
    # 10 kW then 20 kW, read at 10:00, 10:15 and 10:30 sharp: 2.5 then 5.0 kWh. Dated
    # at the end of its minute bucket, each reading would move energy a minute late.
    _, site, (meter,) = make_site(conn)
    store(conn, meter, {"meter.grid.e_import": counter(steps(10, 20), T0, T0 + 31 * MINUTE,
                                                       QUARTER)})
    roll_up(conn, [meter], T0, T0 + HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 30 * MINUTE)
    assert values(result, "grid_import") == pytest.approx([2.5, 5.0])
    assert not result.gap_ranges()


def test_boundaries_are_interpolated_between_readings_on_either_side(conn):
    # A steady 12 kW read every 7 minutes from 09:58: each quarter hour holds 3 kWh,
    # although no reading falls on its boundaries.
    _, site, (meter,) = make_site(conn)
    readings = counter(lambda m: 12.0, T0 - 2 * MINUTE, T0 + 70 * MINUTE, 7 * MINUTE)
    store(conn, meter, {"meter.load.e": readings})
    roll_up(conn, [meter], T0 - 2 * MINUTE, T0 + 70 * MINUTE)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert values(result, "load") == pytest.approx([3.0] * 4)
    assert not result.gap_ranges()


def test_a_reset_counts_from_zero_and_a_first_reading_never_counts(conn):
    # The counter starts at 340,000 kWh at 10:05 (a baseline), gains 0.25 kWh a minute,
    # is reset after its 10:20 reading and counts on from zero. A replayed older
    # reading (a drop of 0.1) counts nothing; the next increase counts from it.
    # 10:00-10:15 holds only what was counted from 10:05, and says so.
    _, site, (meter,) = make_site(conn)
    before = counter(lambda m: 15.0, T0 + 5 * MINUTE, T0 + 21 * MINUTE, MINUTE, first=340_000)
    after = counter(lambda m: 15.0, T0 + 20 * MINUTE, T0 + HOUR + MINUTE, MINUTE,
                    offset=MINUTE)
    replayed = [(T0 + 40 * MINUTE + 30 * SECOND, after[19][1] - 0.1)]
    store(conn, meter, {"meter.grid.e_import": before + after + replayed})
    roll_up(conn, [meter], T0, T0 + 2 * HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert values(result, "grid_import") == pytest.approx([2.5, 3.75, 3.75 + 0.1, 3.75])
    assert result.gap_ranges("grid_import") == [(T0, T0 + QUARTER)]


def test_gaps_are_spread_and_flagged_and_the_future_is_neither(conn):
    # Readings stop from 10:15 to 10:45 (the counter kept running at 15 kW): the 7.5
    # kWh counted across the gap are spread over it and flagged. Nothing after 11:00:
    # 11:00-11:15 has no value; 11:15 onwards has not begun ("now" is 11:10).
    _, site, (meter,) = make_site(conn)
    readings = [r for r in counter(lambda m: 15.0, T0, T0 + HOUR + MINUTE, MINUTE)
                if not T0 + QUARTER < r[0] < T0 + 45 * MINUTE]
    store(conn, meter, {"meter.grid.e_import": readings})
    roll_up(conn, [meter], T0, T0 + 2 * HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 90 * MINUTE,
                                now=T0 + 70 * MINUTE)
    assert values(result, "grid_import") == pytest.approx([3.75] * 4 + [None] * 2)
    assert result.gap_ranges("grid_import") == [(T0 + QUARTER, T0 + 45 * MINUTE)]


def test_power_integrates_over_the_time_between_readings_whatever_the_period(conn):
    # PV power held per quarter hour (8, 12, 4, 0 kW), read every 5 s, 5 min and 15
    # min by three meters without a PV counter: 2, 3, 1, 0 kWh for each of them.
    _, site, meters = make_site(conn, models=("meter", "meter", "meter"))
    for meter, every in zip(meters, (5 * SECOND, 5 * MINUTE, QUARTER), strict=True):
        store(conn, meter, {"meter.pv.p": power(steps(8, 12, 4, 0), T0, T0 + 75 * MINUTE,
                                                every)})
    roll_up(conn, meters, T0, T0 + 2 * HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert values(result, "pv") == pytest.approx([6.0, 9.0, 3.0, 0.0])
    assert result.methods["pv"] == "power" and not result.gap_ranges("pv")


def test_devices_are_summed_and_the_grid_power_is_split_by_sign(conn):
    _, site, (meter, hes) = make_site(conn, models=("meter", "HES-L"))
    store(conn, hes, {"pcs.e_discharge": counter(lambda m: 6.0, T0, T0 + 31 * MINUTE, MINUTE)})
    store(conn, meter, {"meter.grid.p": power(steps(-4, 8), T0, T0 + 31 * MINUTE, MINUTE)})
    roll_up(conn, [meter, hes], T0, T0 + HOUR)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 30 * MINUTE)
    assert values(result, "battery_discharge") == pytest.approx([1.5, 1.5])
    assert values(result, "grid_import") == pytest.approx([0.0, 2.0])
    assert values(result, "grid_export") == pytest.approx([1.0, 0.0])
    # load = import − export + discharge (no PV, no charge counter)
    assert values(result, "load") == pytest.approx([0.5, 3.5])


def test_days_in_the_site_time_zone_from_hourly_rows_with_a_reset_inside_an_hour(conn):
    # Paris in September is UTC+2. 1 kWh an hour from 14 Sep 22:00 UTC; the counter is
    # reset at 16 Sep 09:30 UTC (inside an hour) and counts on from zero: every day
    # still shows 24 kWh, read from hourly rows (their rise counts the reset).
    _, site, (meter,) = make_site(conn, timezone="Europe/Paris")
    start = utc(2026, 9, 14, 22)
    reset = utc(2026, 9, 16, 9, 30)
    store(conn, meter, {"meter.grid.e_import": counter(lambda m: 1.0, start - HOUR, reset,
                                                       MINUTE, first=500.0)
                        + counter(lambda m: 1.0, reset, start + 73 * HOUR, MINUTE,
                                  offset=MINUTE)})
    roll_up(conn, [meter], start - HOUR, start + 73 * HOUR)
    result = energy.site_energy(conn, system_scope(), site, start, start + 72 * HOUR, "day")
    assert [i.start for i in result.intervals] == [start + k * 24 * HOUR for k in range(3)]
    assert values(result, "grid_import") == pytest.approx([24.0, 24.0 - 1 / 60, 24.0])


def test_a_25_hour_day_in_the_site_time_zone(conn):
    # Paris leaves summer time on Sunday 25 October 2026: that local day lasts 25 hours.
    _, site, (meter,) = make_site(conn, timezone="Europe/Paris")
    start = utc(2026, 10, 23, 22)  # 24 October, local midnight
    store(conn, meter, {"meter.grid.e_import": counter(lambda m: 1.0, start - HOUR,
                                                       start + 74 * HOUR, QUARTER)})
    roll_up(conn, [meter], start - HOUR, start + 74 * HOUR)
    result = energy.site_energy(conn, system_scope(), site, start, start + 73 * HOUR, "day")
    assert [i.end - i.start for i in result.intervals] == [24 * HOUR, 25 * HOUR, 24 * HOUR]
    assert values(result, "grid_import") == pytest.approx([24.0, 25.0, 24.0])


def test_late_data_is_read_raw_until_rolled_up_with_the_same_figures(conn):
    # An hour arrives late (below the rollups' cut) without its rollups: it is read from
    # raw rows meanwhile, and reads the same once the worker has recomputed it.
    _, site, (meter,) = make_site(conn)
    readings = counter(steps(4, 8, 12, 16), T0 - MINUTE, T0 + HOUR + MINUTE, 10 * SECOND)
    store(conn, meter, {"meter.grid.e_import": [r for r in readings if r[0] < T0]})
    roll_up(conn, [meter], T0 - HOUR, T0 + 2 * HOUR)
    store_late(conn, meter, {"meter.grid.e_import": [r for r in readings if r[0] >= T0]})
    pending = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert pending.catching_up
    assert values(pending, "grid_import") == pytest.approx([1.0, 2.0, 3.0, 4.0])
    while rollups.recompute_late_window(conn):
        pass
    done = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert not done.catching_up
    assert values(done, "grid_import") == pytest.approx([1.0, 2.0, 3.0, 4.0])


def test_other_company_cannot_read_a_site(conn):
    company, site, _ = make_site(conn)
    other, _, _ = make_site(conn)
    outsider = AccessScope(role="admin", company_id=other)
    with pytest.raises(AccessDenied):
        energy.site_energy(conn, outsider, site, T0, T0 + HOUR)
    insider = AccessScope(role="viewer", company_id=company, site_ids=frozenset({site}))
    assert energy.site_energy(conn, insider, site, T0, T0 + HOUR).intervals[0].kwh == {}


def test_bad_steps_are_refused(conn):
    _, site, _ = make_site(conn)
    with pytest.raises(ValueError, match="multiple of 15 minutes"):
        energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR, timedelta(minutes=10))
    with pytest.raises(ValueError, match="quarter hour"):
        energy.site_energy(conn, system_scope(), site, T0 + MINUTE, T0 + HOUR)
    with pytest.raises(ValueError, match="aware"):
        energy.site_energy(conn, system_scope(), site, datetime(2026, 1, 1), T0)

