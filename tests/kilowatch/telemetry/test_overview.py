"""Fleet overview and site live figures against real TimescaleDB and Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.alarms import events as alarms
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import live, overview

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


def _hourly(conn, device_id, point, readings):
    point_id = conn.execute("SELECT id FROM points WHERE name = %s", (point,)).fetchone()["id"]
    for bucket, value in readings:
        conn.execute("INSERT INTO telemetry_1h (bucket, device_id, point_id, avg, min, max, "
                     "last, count) VALUES (%s, %s, %s, 0, 0, 0, %s, 60)",
                     (bucket, device_id, point_id, value))


def test_today_energy_from_counters_survives_a_reset(conn, world):
    device = world["devices"]["Charlie"]
    tz = ZoneInfo("Europe/Paris")
    # A fixed "now" at 05:00 a week ago: all four hours are closed whatever the time of day.
    day = (datetime.now(UTC).astimezone(tz) - timedelta(days=7)).date()
    midnight = datetime.combine(day, datetime.min.time(), tz)
    now = (midnight + timedelta(hours=5)).astimezone(UTC)
    baseline = midnight.astimezone(UTC) - timedelta(hours=1)  # the bucket ending at midnight
    hours = [baseline + timedelta(hours=h) for h in range(4)]
    # 1000 at midnight, +5, then a reset to 2 (counts 2), then +3.
    values = [1000.0, 1005.0, 2.0, 5.0]
    _hourly(conn, device, "meter.pv.e", zip(hours, values, strict=True))
    expected = 10.0
    # The worker closed those hours (the overview caches hourly figures until it does).
    conn.execute("UPDATE rollup_state SET done_until = %s WHERE rollup = '1h'",
                 (hours[-1] + timedelta(hours=1),))
    # The live counter adds what came after the last hourly reading.
    world["client"].hset(f"{live.key('live', device)}", "meter.pv.e", repr(values[-1] + 1.5))
    rows = overview.fleet_overview(conn, world["client"], ROOT, now=now)
    charlie = next(r for r in rows if r["name"] == "Charlie")
    assert charlie["today_kwh"]["pv"] == pytest.approx(expected + 1.5)
    assert "load" not in charlie["today_kwh"]  # no counter, no number (never a zero)
    # A newer live counter value counts at once; the hourly part comes from the cache.
    world["client"].hset(f"{live.key('live', device)}", "meter.pv.e", repr(values[-1] + 4.0))
    again = next(r for r in overview.fleet_overview(conn, world["client"], ROOT, now=now)
                 if r["name"] == "Charlie")
    assert again["today_kwh"]["pv"] == pytest.approx(expected + 4.0)


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
