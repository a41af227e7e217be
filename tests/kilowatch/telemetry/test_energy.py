"""Interval energy from cumulative counters, against real TimescaleDB rollup and raw tables."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.telemetry import energy

T0 = datetime(2026, 9, 15, 10, 0, tzinfo=UTC)  # a Tuesday, long past for every test run
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def make_site(conn, timezone="UTC", models=("meter",)):
    """Create a company, a site and its devices; return (company id, site id, device ids)."""
    scope = system_scope()
    company = fleet.create_company(conn, scope, f"Energy {secrets.token_hex(4)}")
    site = fleet.create_site(conn, scope, company_id=company, name="Plant", timezone=timezone)
    devices = [fleet.register_device(conn, scope, site_id=site, serial=f"E-{secrets.token_hex(5)}",
                                     model=model) for model in models]
    return company, site, devices


def point_id(conn, name):
    return conn.execute("SELECT id FROM points WHERE name = %s", (name,)).fetchone()["id"]


def put_minutes(conn, device, point, rows, table="telemetry_1m"):
    """Store rollup rows: (bucket, last) or (bucket, last, avg)."""
    pid = point_id(conn, point)
    with conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 1)",
            [(row[0], device, pid, row[2] if len(row) > 2 else row[1], row[1], row[1], row[1])
             for row in rows])


def put_raw(conn, device, point, rows):
    """Store raw samples (time, value), ignoring ones already stored (at-least-once delivery)."""
    pid = point_id(conn, point)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO telemetry (time, device_id, point_id, value) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT DO NOTHING", [(t, device, pid, v) for t, v in rows])


def ramp(start, minutes, first_value, per_minute):
    """Counter readings of a steady flow: the bucket at start + i ends at first + (i+1) × rate."""
    return [(start + i * MINUTE, first_value + (i + 1) * per_minute) for i in range(minutes)]


def quarter_values(result, quantity):
    return [item.kwh[quantity] for item in result.intervals]


def test_counters_become_15_minute_intervals(conn):
    # 0.25 kWh per minute = 15 kW: 3.75 kWh per quarter hour. The reading of the
    # 09:59 bucket (100.0) is the baseline before the range.
    _, site, (meter,) = make_site(conn)
    put_minutes(conn, meter, "meter.grid.e_import", [(T0 - MINUTE, 100.0)])
    put_minutes(conn, meter, "meter.grid.e_import", ramp(T0, 60, 100.0, 0.25))
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert quarter_values(result, "grid_import") == pytest.approx([3.75] * 4)
    assert result.methods == {"grid_import": "counter", "load": "derived"}
    assert [i.start for i in result.intervals] == [T0 + k * timedelta(minutes=15) for k in range(4)]
    assert not result.gap_ranges()


def test_counter_reset_counts_the_new_value_from_zero(conn):
    # The counter reads 105.0 at the end of 10:19, restarts from zero and reads 0.25 at
    # the end of 10:20: that minute counts 0.25 kWh, not -104.75. Totals stay 3.75.
    _, site, (meter,) = make_site(conn)
    readings = [(T0 - MINUTE, 100.0), *ramp(T0, 20, 100.0, 0.25)]
    readings += ramp(T0 + 20 * MINUTE, 40, 0.0, 0.25)
    put_minutes(conn, meter, "meter.grid.e_import", readings)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert quarter_values(result, "grid_import") == pytest.approx([3.75] * 4)


def test_rollup_and_raw_overlap_is_not_counted_twice(conn):
    # A 15 kW flow sampled raw every 20 s from 09:59 to 10:59:40 (delivered twice).
    # Minutes 09:59-10:29 are also rolled up (last = the minute's 40 s sample);
    # 10:30-11:00 is raw only (not rolled up yet). Every quarter hour is 3.75 kWh.
    _, site, (meter,) = make_site(conn)

    def counter(t):
        return 50.0 + 0.25 * (t - (T0 - MINUTE)).total_seconds() / 60

    raw = [(T0 - MINUTE + i * timedelta(seconds=20),) for i in range(3 * 61)]
    raw = [(t, counter(t)) for (t,) in raw]
    put_raw(conn, meter, "meter.load.e", raw)
    put_raw(conn, meter, "meter.load.e", raw)  # delivered again: stored once
    minutes = [T0 - MINUTE + k * MINUTE for k in range(31)]
    put_minutes(conn, meter, "meter.load.e",
                [(m, counter(m + timedelta(seconds=40))) for m in minutes])
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR)
    assert quarter_values(result, "load") == pytest.approx([3.75] * 4)
    assert result.total("load") == pytest.approx(15.0)
    assert not result.gap_ranges()


def test_gaps_are_reported_and_spread_not_zero(conn):
    # Minutes 10:15-10:45 are missing; the counter kept running (15 kW). The 7.75 kWh
    # between the readings of 10:15 and 10:46 are spread over those 31 minutes:
    # 3.75 in each missing quarter hour, which are flagged. After 11:00 nothing
    # arrives: the 11:00-11:15 interval has no value at all.
    _, site, (meter,) = make_site(conn)
    readings = [(T0 - MINUTE, 0.0), *ramp(T0, 60, 0.0, 0.25)]
    readings = [r for r in readings if not T0 + 15 * MINUTE <= r[0] < T0 + 45 * MINUTE]
    put_minutes(conn, meter, "meter.grid.e_import", readings)
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 75 * MINUTE)
    assert quarter_values(result, "grid_import")[:4] == pytest.approx([3.75] * 4)
    assert quarter_values(result, "grid_import")[4] is None
    assert [sorted(i.gaps) for i in result.intervals] == [
        [], ["grid_import", "load"], ["grid_import", "load"], [], ["grid_import", "load"]]
    assert result.gap_ranges("grid_import") == [
        (T0 + 15 * MINUTE, T0 + 45 * MINUTE), (T0 + HOUR, T0 + 75 * MINUTE)]


def test_devices_are_summed_and_power_is_the_fallback(conn):
    # Two storage systems discharge 0.1 and 0.2 kWh per minute (counters): 4.5 kWh per
    # quarter hour together. The meter has no PV counter, only PV power of 12 kW:
    # 12 × 0.25 h = 3 kWh per quarter hour, integrated from the minute averages.
    _, site, (meter, hes_a, hes_b) = make_site(conn, models=("meter", "HES-L", "HES-L"))
    put_minutes(conn, hes_a, "pcs.e_discharge", [(T0 - MINUTE, 10.0), *ramp(T0, 30, 10.0, 0.1)])
    put_minutes(conn, hes_b, "pcs.e_discharge", [(T0 - MINUTE, 20.0), *ramp(T0, 30, 20.0, 0.2)])
    put_minutes(conn, meter, "meter.pv.p", [(T0 + i * MINUTE, 12.0, 12.0) for i in range(30)])
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 30 * MINUTE)
    assert quarter_values(result, "battery_discharge") == pytest.approx([4.5, 4.5])
    assert quarter_values(result, "pv") == pytest.approx([3.0, 3.0])
    assert result.methods["pv"] == "power" and result.methods["battery_discharge"] == "counter"


def test_load_is_derived_from_the_balance_without_a_load_meter(conn):
    # Grid import 2 kWh, PV 1.5 kWh, battery discharge 0.5 kWh per quarter hour:
    # load = 2 - 0 + 1.5 + 0.5 - 0 = 4 kWh.
    _, site, (meter, hes) = make_site(conn, models=("meter", "HES-L"))
    put_minutes(conn, meter, "meter.grid.e_import", [(T0 - MINUTE, 0.0), *ramp(T0, 15, 0, 2 / 15)])
    put_minutes(conn, meter, "meter.grid.e_export", [(T0 - MINUTE, 0.0), *ramp(T0, 15, 0, 0)])
    put_minutes(conn, meter, "meter.pv.e", [(T0 - MINUTE, 0.0), *ramp(T0, 15, 0, 0.1)])
    put_minutes(conn, hes, "pcs.e_discharge", [(T0 - MINUTE, 0.0), *ramp(T0, 15, 0, 0.5 / 15)])
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + 15 * MINUTE)
    assert result.intervals[0].kwh["load"] == pytest.approx(4.0)
    assert result.methods["load"] == "derived"


def test_days_in_the_site_time_zone_from_hourly_rollups(conn):
    # Paris in September is UTC+2: the local day 16 September runs from 15 Sep 22:00 to
    # 16 Sep 22:00 UTC. The counter gains 1 kWh per hour from 14 Sep 22:00 UTC; one
    # hour (16 Sep 03:00 UTC) is missing and spread, and that day is flagged.
    _, site, (meter,) = make_site(conn, timezone="Europe/Paris")
    start = datetime(2026, 9, 14, 22, tzinfo=UTC)
    rows = [(start + i * HOUR, float(i + 1)) for i in range(72) if i != 29]
    put_minutes(conn, meter, "meter.grid.e_import", [(start - HOUR, 0.0), *rows],
                table="telemetry_1h")
    result = energy.site_energy(conn, system_scope(), site, start, start + 72 * HOUR, "day")
    assert [i.start for i in result.intervals] == [start + k * 24 * HOUR for k in range(3)]
    assert quarter_values(result, "grid_import") == pytest.approx([24.0, 24.0, 24.0])
    assert [bool(i.gaps) for i in result.intervals] == [False, True, False]


def test_month_step_sums_days(conn):
    _, site, (meter,) = make_site(conn, timezone="Europe/Paris")
    start = datetime(2026, 8, 31, 22, tzinfo=UTC)  # 1 September local
    rows = [(start + i * HOUR, float(i + 1)) for i in range(30 * 24)]
    put_minutes(conn, meter, "meter.grid.e_import", [(start - HOUR, 0.0), *rows],
                table="telemetry_1h")
    end = datetime(2026, 9, 30, 22, tzinfo=UTC)
    result = energy.site_energy(conn, system_scope(), site, start, end, "month")
    assert len(result.intervals) == 1
    assert result.intervals[0].kwh["grid_import"] == pytest.approx(720.0)


def test_future_slots_are_neither_values_nor_gaps(conn):
    _, site, (meter,) = make_site(conn)
    put_minutes(conn, meter, "meter.grid.e_import", [(T0 - MINUTE, 0.0), *ramp(T0, 15, 0, 0.25)])
    result = energy.site_energy(conn, system_scope(), site, T0, T0 + HOUR,
                                now=T0 + 15 * MINUTE)
    assert quarter_values(result, "grid_import") == pytest.approx([3.75, None, None, None])
    assert not result.gap_ranges()


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


def test_a_25_hour_day_in_the_site_time_zone(conn):
    # Paris leaves summer time on Sunday 25 October 2026: that local day lasts 25 hours
    # (24 Oct 22:00 UTC to 25 Oct 23:00 UTC). At 1 kWh per hour: 24, 25, 24 kWh.
    _, site, (meter,) = make_site(conn, timezone="Europe/Paris")
    start = datetime(2026, 10, 23, 22, tzinfo=UTC)  # 24 October, local midnight
    rows = [(start + i * HOUR, float(i + 1)) for i in range(73)]
    put_minutes(conn, meter, "meter.grid.e_import", [(start - HOUR, 0.0), *rows],
                table="telemetry_1h")
    result = energy.site_energy(conn, system_scope(), site, start, start + 73 * HOUR, "day")
    assert [i.end - i.start for i in result.intervals] == [24 * HOUR, 25 * HOUR, 24 * HOUR]
    assert quarter_values(result, "grid_import") == pytest.approx([24.0, 25.0, 24.0])
