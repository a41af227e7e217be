"""Fleet overview and site live figures against real TimescaleDB and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.alarms import events as alarms
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import live, overview, rollups
from tests.kilowatch.telemetry.helpers import (
    HOUR,
    MINUTE,
    counter,
    roll_up,
    store,
    store_late,
)

QUARTER = timedelta(minutes=15)

ROOT = system_scope("test")


@pytest.fixture(scope="module")
def world(settings):
    """Company A: Alpha (online, a critical alarm), Bravo (offline), Charlie (online).

    Company B: Delta. A viewer of A is granted Alpha and Bravo.
    """
    from kilowatch import db

    with db.connect(settings.database_url, autocommit=True) as conn:
        a = fleet.create_company(conn, ROOT, "Overview A")
        b = fleet.create_company(conn, ROOT, "Overview B")
        sites, devices = {}, {}
        for company, name in ((a, "Alpha"), (a, "Bravo"), (a, "Charlie"), (b, "Delta")):
            sites[name] = fleet.create_site(conn, ROOT, company_id=company, name=name,
                                            timezone="Europe/Paris")
            devices[name] = fleet.register_device(conn, ROOT, site_id=sites[name],
                                                  serial=f"OV-{name}", model="HES-L",
                                                  capacity_kwh=100.0)
        now = datetime.now(UTC)
        alarms.raise_alarm(conn, device_id=devices["Alpha"], code="BMS_OVERTEMP",
                           severity="critical", source="device", message="hot", at=now)
        alarms.raise_alarm(conn, device_id=devices["Charlie"], code="PCS_FAN_FAILURE",
                           severity="warning", source="device", message="fan", at=now)
    client = get_redis(settings)
    writer = live.LiveWriter(client)
    for name, soc in (("Alpha", 40.0), ("Bravo", 80.0), ("Charlie", 60.0), ("Delta", 20.0)):
        writer.write({devices[name]: (now, 1, {"bms.soc": soc, "pcs.p": 10.0,
                                               "meter.pv.p": 3.0})},
                     last_seen=now.timestamp(), committed_at=now.timestamp())
    live.set_online(client, devices["Bravo"], False,
                    last_seen=(now - timedelta(minutes=20)).timestamp())
    return {"a": a, "b": b, "sites": sites, "devices": devices, "client": client}


def test_problems_come_first_offline_then_by_alarm_severity(conn, world):
    rows = overview.fleet_overview(conn, world["client"], ROOT)
    names = [r["name"] for r in rows if r["name"] in world["sites"]]
    assert names == ["Bravo", "Alpha", "Charlie", "Delta"]
    bravo = next(r for r in rows if r["name"] == "Bravo")
    assert bravo["status"] == "offline"
    assert bravo["offline_since"] == pytest.approx(datetime.now(UTC) - timedelta(minutes=20),
                                                   abs=timedelta(seconds=30))
    assert bravo["battery_kw"] is None  # no live power from an offline device
    alpha = next(r for r in rows if r["name"] == "Alpha")
    assert alpha["alarms"] == {"critical": 1, "major": 0, "minor": 0, "warning": 0}
    assert (alpha["soc"], alpha["battery_kw"], alpha["pv_kw"]) == (40.0, 10.0, 3.0)


def test_viewer_sees_only_granted_sites_and_never_another_company(conn, world):
    viewer = AccessScope(role="viewer", company_id=world["a"],
                         site_ids=frozenset({world["sites"]["Alpha"], world["sites"]["Bravo"]}))
    assert {r["name"] for r in overview.fleet_overview(conn, world["client"], viewer)} == {
        "Alpha", "Bravo"}
    admin_b = AccessScope(role="admin", company_id=world["b"])
    assert [r["name"] for r in overview.fleet_overview(conn, world["client"], admin_b)] == [
        "Delta"]


def test_site_live_is_refused_outside_the_scope(conn, world):
    admin_b = AccessScope(role="admin", company_id=world["b"])
    with pytest.raises(AccessDenied):
        overview.site_live(conn, world["client"], admin_b, world["sites"]["Alpha"])
    mine = overview.site_live(conn, world["client"], admin_b, world["sites"]["Delta"])
    assert mine["soc"] == 20.0 and mine["devices"][0]["serial"] == "OV-Delta"


def _a_week_ago_at(hour: int) -> tuple[datetime, datetime]:
    """Return (local midnight, midnight + hour) of the day a week ago in Paris, in UTC."""
    tz = ZoneInfo("Europe/Paris")
    day = (datetime.now(UTC).astimezone(tz) - timedelta(days=7)).date()
    midnight = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
    return midnight, midnight + timedelta(hours=hour)


def _today(conn, world, name, now):
    rows = overview.fleet_overview(conn, world["client"], ROOT, now=now)
    return next(r for r in rows if r["name"] == name)["today_kwh"]


def test_today_counts_what_counters_advanced_across_midnight_and_a_reset(conn, world):
    # PV at 2 kW read every 15 minutes from 22:00 the day before, reset to zero after
    # the 02:00 reading; "now" is 05:00 with hours closed up to 04:00: 8 kWh from the
    # hourly readings, and the live counter adds what came after the last of them.
    device = world["devices"]["Charlie"]
    midnight, now = _a_week_ago_at(5)
    reset = midnight + timedelta(hours=2)
    readings = (counter(lambda m: 2.0, midnight - 2 * HOUR, reset + MINUTE, QUARTER,
                        first=1000.0)
                + counter(lambda m: 2.0, reset, midnight + 4 * HOUR, QUARTER, offset=QUARTER))
    store(conn, device, {"meter.pv.e": readings})
    roll_up(conn, [device], midnight - 2 * HOUR, midnight + 4 * HOUR)
    last = readings[-1][1]  # 03:45, 1.75 h after the reset: 3.5 kWh
    world["client"].hset(live.key("live", device), "meter.pv.e", repr(last + 1.5))
    today = _today(conn, world, "Charlie", now)
    assert today["pv"] == pytest.approx(2.0 * 3.75 + 1.5)
    assert "load" not in today  # no counter, no number (never a zero)
    # A newer live counter value counts at once; the hourly part comes from the cache.
    world["client"].hset(live.key("live", device), "meter.pv.e", repr(last + 4.0))
    assert _today(conn, world, "Charlie", now)["pv"] == pytest.approx(2.0 * 3.75 + 4.0)


def test_a_counter_starting_mid_day_counts_from_its_first_reading(conn, world):
    # Alpha's grid import counter first reads 340,000 kWh at 02:00 and runs at 3 kW
    # until its last reading at 04:00: today is the 6 kWh it advanced, never 340,000.
    device = world["devices"]["Alpha"]
    midnight, now = _a_week_ago_at(5)
    start = midnight + 2 * HOUR
    store(conn, device, {"meter.grid.e_import": counter(
        lambda m: 3.0, start, midnight + 4 * HOUR + MINUTE, MINUTE, first=340_000.0)})
    roll_up(conn, [device], start, midnight + 4 * HOUR)
    assert _today(conn, world, "Alpha", now)["grid_import"] == pytest.approx(6.0)


def test_late_data_of_today_is_read_raw_until_rolled_up(conn, world):
    # Bravo's load counter for 22:00-04:00 arrives late (below the rollups' cut): the
    # fleet table reads it from raw rows at once (1.5 kW × 4 h), and the same after.
    device = world["devices"]["Bravo"]
    midnight, now = _a_week_ago_at(5)
    roll_up(conn, [], midnight - 2 * HOUR, midnight + 5 * HOUR)
    store_late(conn, device, {"meter.load.e": counter(
        lambda m: 1.5, midnight - 2 * HOUR, midnight + 4 * HOUR + MINUTE, QUARTER,
        first=50.0)})
    assert _today(conn, world, "Bravo", now)["load"] == pytest.approx(6.0)
    while rollups.recompute_late_window(conn):
        pass
    assert _today(conn, world, "Bravo", now)["load"] == pytest.approx(6.0)


def test_a_thousand_sites_are_answered(conn, world):
    company = fleet.create_company(conn, ROOT, "Big fleet")
    conn.execute("INSERT INTO sites (company_id, name, timezone) "
                 "SELECT %s, 'big ' || g, 'UTC' FROM generate_series(1, 1000) g", (company,))
    conn.execute("INSERT INTO devices (site_id, serial, model) SELECT id, 'BIG-' || id, "
                 "'HES-L' FROM sites WHERE company_id = %s", (company,))
    rows = overview.fleet_overview(conn, world["client"], AccessScope(role="admin",
                                                                      company_id=company))
    assert len(rows) == 1000
    assert {r["status"] for r in rows} == {"offline"}
