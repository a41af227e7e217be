"""History for charts and exports: resolution choice, ranges, tiered reads, scope."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.telemetry import history
from tests.kilowatch.telemetry.helpers import HOUR, MINUTE, counter, roll_up, store

ROOT = system_scope("test")
NOW = datetime.now(UTC).replace(second=0, microsecond=0)
QUARTER = timedelta(minutes=15)


# ---- pure parts -----------------------------------------------------------------------------

@pytest.mark.parametrize(("span", "source", "width"), [
    (timedelta(minutes=30), "raw", timedelta(seconds=1)),
    (timedelta(hours=2), "raw", timedelta(seconds=5)),
    (timedelta(hours=12), "1m", timedelta(minutes=1)),
    (timedelta(hours=24), "1m", timedelta(minutes=1)),
    (timedelta(days=7), "1m", timedelta(minutes=10)),
    (timedelta(days=30), "1h", timedelta(hours=1)),
    (timedelta(days=365), "1h", timedelta(hours=6)),
    (timedelta(days=3 * 366), "1h", timedelta(days=1)),
])
def test_resolution_follows_the_range(span, source, width):
    resolution = history.choose_resolution(NOW - span, NOW)
    assert (resolution.source, resolution.width) == (source, width)


def test_no_range_gives_more_than_two_thousand_buckets_nor_a_needlessly_coarse_one():
    granularity = {"raw": timedelta(seconds=1), "1m": timedelta(minutes=1),
                   "1h": timedelta(hours=1)}
    span = timedelta(minutes=1)
    while span < timedelta(days=3000):
        resolution = history.choose_resolution(NOW - span, NOW)
        assert span / resolution.width <= history.MAX_POINTS
        rows = span / granularity[resolution.source]
        assert rows >= min(history.MIN_POINTS, span.total_seconds())
        finer = [w for w in history.LADDER
                 if granularity[resolution.source] <= w < resolution.width]
        if finer:
            assert span / finer[-1] > history.MAX_POINTS
        span = span * 1.37


def test_a_year_is_read_from_hourly_rows_and_a_day_from_minute_rows():
    assert history.choose_resolution(NOW - timedelta(days=365), NOW).source == "1h"
    assert history.choose_resolution(NOW - timedelta(days=1), NOW).source == "1m"


def test_empty_or_reversed_range_is_refused():
    with pytest.raises(history.HistoryError):
        history.choose_resolution(NOW, NOW)


def test_today_and_yesterday_are_local_days_even_across_a_dst_change():
    now = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # the day after Paris moved to summer time
    start, end = history.time_range("yesterday", "Europe/Paris", now=now)
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # a 23-hour day
    start, end = history.time_range("today", "Europe/Paris", now=now)
    assert (start, end - start) == (datetime(2026, 3, 29, 22, 0, tzinfo=UTC), timedelta(days=1))


def test_custom_range_covers_whole_days_and_rejects_nonsense():
    start, end = history.time_range("custom", "America/New_York", now=NOW,
                                    first_day=date(2026, 1, 1), last_day=date(2026, 1, 31))
    assert start == datetime(2026, 1, 1, 5, tzinfo=UTC)
    assert end == datetime(2026, 2, 1, 5, tzinfo=UTC)
    with pytest.raises(history.HistoryError):
        history.time_range("custom", "UTC", now=NOW, first_day=date(2026, 2, 1),
                           last_day=date(2026, 1, 1))
    with pytest.raises(history.HistoryError):
        history.time_range("forever", "UTC", now=NOW)


@pytest.mark.parametrize(("first", "last"), [
    (date(9999, 12, 31), date(9999, 12, 31)), (date(1, 1, 1), date(1, 1, 1)),
    (date(1969, 12, 31), date(1970, 1, 2)), (date(2100, 12, 30), date(2101, 1, 1)),
])
def test_custom_days_outside_1970_to_2100_are_refused_not_overflowed(first, last):
    with pytest.raises(history.HistoryError, match="between 1970 and 2100"):
        history.time_range("custom", "Europe/Paris", now=NOW, first_day=first, last_day=last)


def test_custom_days_at_the_edges_of_1970_to_2100_are_accepted():
    start, _ = history.time_range("custom", "UTC", now=NOW, first_day=date(1970, 1, 1),
                                  last_day=date(1970, 1, 1))
    assert start == datetime(1970, 1, 1, tzinfo=UTC)
    _, end = history.time_range("custom", "Pacific/Kiritimati", now=NOW,
                                first_day=date(2100, 12, 31), last_day=date(2100, 12, 31))
    assert end == datetime(2100, 12, 31, 10, tzinfo=UTC)


def test_energy_window_picks_hours_days_or_months():
    day = history.energy_window(datetime(2026, 5, 4, 22, tzinfo=UTC),
                                datetime(2026, 5, 5, 22, tzinfo=UTC), "Europe/Paris")
    assert day[2] == timedelta(hours=1)
    month = history.energy_window(datetime(2026, 4, 5, 10, tzinfo=UTC),
                                  datetime(2026, 5, 5, 10, tzinfo=UTC), "Europe/Paris")
    assert month[:2] == (datetime(2026, 4, 4, 22, tzinfo=UTC), datetime(2026, 5, 5, 22, tzinfo=UTC))
    assert month[2] == "day"
    year = history.energy_window(datetime(2025, 5, 5, 10, tzinfo=UTC),
                                 datetime(2026, 5, 5, 10, tzinfo=UTC), "UTC")
    assert year == (datetime(2025, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC), "month")


def test_energy_ratios():
    ratios = history.energy_ratios({"pv": 100.0, "grid_export": 25.0, "load": 200.0,
                                    "grid_import": 50.0})
    assert ratios == {"self_consumption": 0.75, "self_sufficiency": 0.75}
    assert history.energy_ratios({"load": 10.0, "grid_import": 10.0}) == {
        "self_consumption": None, "self_sufficiency": 0.0}


# ---- against TimescaleDB ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet_data(settings):
    """Two companies; site A has two storage devices, site B one."""
    from kilowatch import db

    with db.connect(settings.database_url, autocommit=True) as conn:
        a = fleet.create_company(conn, ROOT, "History A")
        b = fleet.create_company(conn, ROOT, "History B")
        site_a = fleet.create_site(conn, ROOT, company_id=a, name="Plant", timezone="Europe/Paris")
        site_b = fleet.create_site(conn, ROOT, company_id=b, name="Other", timezone="UTC")
        devices = [fleet.register_device(conn, ROOT, site_id=site_a, serial=f"HIS-{n}",
                                         model="HES-L", capacity_kwh=100.0) for n in (1, 2)]
        other = fleet.register_device(conn, ROOT, site_id=site_b, serial="HIS-B",
                                      model="HES-L")
    return {"company_a": a, "company_b": b, "site_a": site_a, "site_b": site_b,
            "devices": devices, "other": other}


def _point(conn, name):
    return conn.execute("SELECT id FROM points WHERE name = %s", (name,)).fetchone()["id"]


def _seed_rollup(conn, table, device_id, point, start, end, step, value):
    conn.execute(
        f"INSERT INTO {table} (bucket, device_id, point_id, avg, min, max, last, count) "
        "SELECT g, %s, %s, %s, %s - 1, %s + 1, %s, 60 "
        "FROM generate_series(%s::timestamptz, %s::timestamptz - %s::interval, %s::interval) g "
        "ON CONFLICT DO NOTHING",
        (device_id, _point(conn, point), value, value, value, value, start, end, step, step))


def _set_cuts(conn, hourly, minute):
    conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s WHERE rollup = '1h'",
                 (hourly, hourly))
    conn.execute("UPDATE rollup_state SET done_until = %s, watermark = %s WHERE rollup = '1m'",
                 (minute, minute))


def test_twelve_months_are_read_from_hourly_rows(conn, fleet_data):
    device = fleet_data["devices"][0]
    hour = NOW.replace(minute=0)
    _seed_rollup(conn, "telemetry_1h", device, "bms.soh", hour - timedelta(days=366), hour,
                 timedelta(hours=1), 97.0)
    # Minute rows of the same past hours hold another value: they must not be read.
    _seed_rollup(conn, "telemetry_1m", device, "bms.soh", hour - timedelta(days=2), hour,
                 timedelta(minutes=1), 10.0)
    _set_cuts(conn, hour, hour)
    result = history.device_history(conn, ROOT, device, ["bms.soh"], NOW - timedelta(days=365),
                                    NOW)
    series = result.series["bms.soh"]
    assert result.resolution == history.Resolution("1h", timedelta(hours=6))
    assert 1450 <= len(series.times) <= 1462
    assert set(series.avg) == {97.0}
    assert min(series.min) == 96.0 and max(series.max) == 98.0


def test_a_day_reads_minute_rows_then_the_raw_tail(conn, fleet_data):
    device = fleet_data["devices"][1]
    minute_cut = NOW - timedelta(minutes=5)
    _seed_rollup(conn, "telemetry_1m", device, "pcs.p", NOW - timedelta(days=1), minute_cut,
                 timedelta(minutes=1), 20.0)
    conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                 "SELECT g, %s, %s, 30.0 FROM generate_series(%s::timestamptz, %s::timestamptz,"
                 " '10 seconds') g", (device, _point(conn, "pcs.p"), minute_cut,
                                      NOW - timedelta(seconds=10)))
    _set_cuts(conn, NOW.replace(minute=0), minute_cut)
    result = history.device_history(conn, ROOT, device, ["pcs.p"], NOW - timedelta(days=1), NOW)
    series = result.series["pcs.p"]
    assert result.resolution.source == "1m"
    assert series.avg[0] == 20.0 and series.avg[-1] == 30.0
    assert series.times[-1] == NOW - timedelta(minutes=1)
    assert len(series.times) == 1440


def test_site_history_combines_devices_sum_for_power_average_for_soc(conn, fleet_data):
    first, second = fleet_data["devices"]
    start = NOW - timedelta(hours=24)
    for device, power, soc in ((first, 10.0, 40.0), (second, 5.0, 60.0)):
        for point, value in (("meter.pv.p", power), ("bms.soc", soc)):
            _seed_rollup(conn, "telemetry_1m", device, point, start, NOW, timedelta(minutes=1),
                         value)
    _set_cuts(conn, start, NOW)
    result = history.site_history(conn, ROOT, fleet_data["site_a"], ["meter.pv.p", "bms.soc"],
                                  start, NOW)
    assert set(result.series["meter.pv.p"].avg) == {15.0}
    assert set(result.series["bms.soc"].avg) == {50.0}
    assert result.series["meter.pv.p"].unit == "kW"


def test_another_company_cannot_read_a_site_or_device(conn, fleet_data):
    viewer_b = AccessScope(role="viewer", company_id=fleet_data["company_b"],
                           site_ids=frozenset({fleet_data["site_b"]}))
    with pytest.raises(AccessDenied):
        history.site_history(conn, viewer_b, fleet_data["site_a"], ["pcs.p"],
                             NOW - timedelta(days=1), NOW)
    with pytest.raises(AccessDenied):
        history.device_history(conn, viewer_b, fleet_data["devices"][0], ["pcs.p"],
                               NOW - timedelta(days=1), NOW)
    with pytest.raises(AccessDenied):
        list(history.export_rows(conn, viewer_b, fleet_data["site_a"], [],
                                 NOW - timedelta(days=1), NOW, history.Resolution("raw", None)))
    assert history.export_columns(conn, viewer_b, fleet_data["site_a"], ["pcs.p"]) == []
    assert history.site_points(conn, viewer_b, fleet_data["site_a"]) == []


def test_viewer_without_the_grant_is_refused_within_the_same_company(conn, fleet_data):
    other_site = fleet.create_site(conn, ROOT, company_id=fleet_data["company_a"],
                                   name="Not granted", timezone="UTC")
    viewer = AccessScope(role="viewer", company_id=fleet_data["company_a"],
                         site_ids=frozenset({other_site}))
    with pytest.raises(AccessDenied):
        history.site_history(conn, viewer, fleet_data["site_a"], ["pcs.p"],
                             NOW - timedelta(hours=1), NOW)


def test_raw_export_streams_rows_in_time_order_one_column_per_device_point(conn, fleet_data):
    first, second = fleet_data["devices"]
    start = NOW - timedelta(days=3)
    for device, value in ((first, 1.5), (second, 2.5)):
        conn.execute("INSERT INTO device_points (device_id, point_id) VALUES (%s, %s) "
                     "ON CONFLICT DO NOTHING", (device, _point(conn, "bms.t_max")))
        conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                     "SELECT g, %s, %s, %s FROM generate_series(%s::timestamptz, "
                     "%s::timestamptz, '1 minute') g",
                     (device, _point(conn, "bms.t_max"), value, start,
                      start + timedelta(minutes=9)))
    columns = history.export_columns(conn, ROOT, fleet_data["site_a"], ["bms.t_max"])
    assert [c.header for c in columns] == ["HIS-1 bms.t_max (°C)", "HIS-2 bms.t_max (°C)"]
    rows = list(history.export_rows(conn, ROOT, fleet_data["site_a"], columns, start,
                                    start + timedelta(hours=1), history.Resolution("raw", None)))
    assert [t for t, _ in rows] == [start + timedelta(minutes=m) for m in range(10)]
    assert all(values == [1.5, 2.5] for _, values in rows)


# ---- energy bars from counters ---------------------------------------------------------------

@pytest.fixture
def counter_site(conn, fleet_data):
    """A fresh site of company A (Europe/Paris) with one storage device."""
    import secrets

    site = fleet.create_site(conn, ROOT, company_id=fleet_data["company_a"],
                             name=f"Counters {secrets.token_hex(3)}", timezone="Europe/Paris")
    device = fleet.register_device(conn, ROOT, site_id=site, serial=f"CNT-{secrets.token_hex(3)}",
                                   model="HES-L")
    return site, device


def _days_ago(days: int) -> datetime:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Paris")
    today = datetime.now(UTC).astimezone(tz).date()
    return datetime.combine(today - timedelta(days=days), datetime.min.time(), tz).astimezone(UTC)


def test_day_bars_show_what_counters_advanced_from_a_mid_day_start_and_across_a_reset(
        conn, counter_site):
    # PV at 2 kW read every minute. Day 1: the counter first reads 340,000 kWh at 14:00
    # local: 10 h × 2 kW = 20 kWh (never 340,000), flagged. Day 2: reset to zero right
    # after the 10:17 reading, counted from zero: 48 kWh. Day 3: 48 kWh.
    site, device = counter_site
    start = _days_ago(4)
    first, reset = start + timedelta(hours=14), start + timedelta(days=1, hours=10, minutes=17)
    end = _days_ago(1)
    readings = (counter(lambda m: 2.0, first, reset + MINUTE, MINUTE, first=340_000.0)
                + counter(lambda m: 2.0, reset, end + MINUTE, MINUTE, offset=MINUTE))
    store(conn, device, {"meter.pv.e": readings})
    roll_up(conn, [device], start, end + MINUTE)
    bars = history.energy_bars(conn, ROOT, site, start, end, "day")
    hours = [(i.end - max(i.start, first)) / HOUR for i in bars.intervals]  # 23 or 25 at DST
    assert [i.kwh["pv"] for i in bars.intervals] == pytest.approx([2.0 * h for h in hours])
    assert hours[0] == 10
    assert [bool(i.gaps) for i in bars.intervals] == [True, False, False]
    assert bars.methods == {"pv": "counter"}
    by_hour = history.energy_bars(conn, ROOT, site, first - 2 * HOUR, first + 2 * HOUR, HOUR)
    assert [i.kwh.get("pv") for i in by_hour.intervals] == pytest.approx([None, None, 2.0, 2.0])


def test_hourly_bars_and_a_load_derived_from_the_balance(conn, counter_site):
    site, device = counter_site
    start = _days_ago(1)
    store(conn, device, {point: counter(lambda m, kw=kw: kw, start, start + 7 * HOUR, QUARTER)
                         for point, kw in (("meter.grid.e_import", 10.0),
                                           ("meter.grid.e_export", 1.0), ("meter.pv.e", 4.0))})
    roll_up(conn, [device], start, start + 7 * HOUR)
    bars = history.energy_bars(conn, ROOT, site, start, start + 6 * HOUR, HOUR)
    assert len(bars.intervals) == 6
    assert all(i.kwh["load"] == pytest.approx(10 - 1 + 4) for i in bars.intervals)
    assert bars.methods["load"] == "derived"


def test_energy_bars_are_refused_outside_the_scope(conn, counter_site, fleet_data):
    site, _ = counter_site
    admin_b = AccessScope(role="admin", company_id=fleet_data["company_b"])
    with pytest.raises(AccessDenied):
        history.energy_bars(conn, admin_b, site, _days_ago(2), _days_ago(1), "day")
