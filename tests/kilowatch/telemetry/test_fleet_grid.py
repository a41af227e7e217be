"""The fleet grid's windows: sort, filter, window and scope in SQL, on real servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kilowatch import fleet
from kilowatch.access import AccessScope, system_scope
from kilowatch.alarms import events as alarms
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import live
from kilowatch.telemetry.fleet_grid import (
    MAX_ROWS,
    FleetQueryError,
    fleet_summary,
    fleet_window,
    parse_request,
)

ROOT = system_scope("test")
# name → (devices online, devices offline, alarm severities)
GRID_A = {"Alpha": (1, 0, ["critical"]), "Bravo": (0, 1, []), "Charlie": (1, 0, ["warning"]),
          "Delta": (1, 1, []), "Echo 100%": (1, 0, ["major", "minor"]), "Foxtrot": (0, 0, [])}
GRID_B = {"Alpha B": (1, 0, ["critical", "critical"]), "Golf": (0, 1, [])}


@pytest.fixture(scope="module")
def world(settings):
    """Company "Grid A" with the sites of GRID_A, "Grid B" with GRID_B, live values for all."""
    from kilowatch import db

    client = get_redis(settings)
    writer = live.LiveWriter(client)
    now = datetime.now(UTC)
    ids = {}
    with db.connect(settings.database_url, autocommit=True) as conn:
        for company_name, sites in (("Grid A", GRID_A), ("Grid B", GRID_B)):
            company = fleet.create_company(conn, ROOT, company_name)
            ids[company_name] = company
            for name, (online, offline, severities) in sites.items():
                site = fleet.create_site(conn, ROOT, company_id=company, name=name,
                                         timezone="Europe/Paris")
                ids[name] = site
                for n in range(online + offline):
                    device = fleet.register_device(
                        conn, ROOT, site_id=site, serial=f"GR-{site}-{n}", model="HES-L",
                        capacity_kwh=100.0)
                    up = n < online
                    seen = now - timedelta(minutes=1 if up else 30 + site)
                    conn.execute("UPDATE devices SET online = %s, last_seen = %s WHERE id = %s",
                                 (up, seen, device))
                    writer.write({device: (now, 1, {"bms.soc": 50.0, "pcs.p": 10.0,
                                                    "meter.pv.p": 4.0})},
                                 last_seen=seen.timestamp(), committed_at=now.timestamp())
                    if not up:
                        live.set_online(client, device, False)
                    for code, severity in enumerate(severities if n == 0 else []):
                        alarms.raise_alarm(conn, device_id=device, code=f"GRID_{code}",
                                           severity=severity, source="device",
                                           message="test", at=now)
    return {"ids": ids, "client": client}


def _names(conn, world, scope=ROOT, *, search="", view="all", **request):
    query = parse_request({"startRow": 0, "endRow": 100, **request}, search=search, view=view)
    return [r["name"] for r in fleet_window(conn, world["client"], scope, query).rows]


def _admin(world, company):
    return AccessScope(role="admin", company_id=world["ids"][company])


def test_problems_come_first_offline_then_partly_offline_then_by_alarm_severity(conn, world):
    assert _names(conn, world, _admin(world, "Grid A")) == [
        "Bravo", "Delta", "Alpha", "Echo 100%", "Charlie", "Foxtrot"]


def test_window_rows_carry_status_alarms_and_live_values(conn, world):
    query = parse_request({"startRow": 0, "endRow": 100}, search="Delta")
    [delta] = fleet_window(conn, world["client"], _admin(world, "Grid A"), query).rows
    assert delta["status"] == "partial" and delta["devices"] == 2
    assert (delta["soc"], delta["battery_kw"], delta["pv_kw"]) == (50.0, 10.0, 4.0)
    query = parse_request({"startRow": 0, "endRow": 100}, search="Echo")
    [echo] = fleet_window(conn, world["client"], _admin(world, "Grid A"), query).rows
    assert echo["alarms"] == {"critical": 0, "major": 1, "minor": 1, "warning": 0}
    assert echo["status"] == "online"


@pytest.mark.parametrize(("column", "direction", "expected"), [
    ("name", "asc", ["Alpha", "Bravo", "Charlie", "Delta", "Echo 100%", "Foxtrot"]),
    ("name", "desc", ["Foxtrot", "Echo 100%", "Delta", "Charlie", "Bravo", "Alpha"]),
    ("alarms", "asc", ["Echo 100%", "Alpha", "Charlie", "Bravo", "Delta", "Foxtrot"]),
    ("status_text", "desc", ["Foxtrot", "Charlie", "Echo 100%", "Alpha", "Delta", "Bravo"]),
])
def test_sorts_in_sql_by_the_grid_column(conn, world, column, direction, expected):
    names = _names(conn, world, _admin(world, "Grid A"),
                   sortModel=[{"colId": column, "sort": direction}])
    assert names == expected


def test_sorts_by_company_then_name(conn, world):
    names = _names(conn, world, search="", sortModel=[{"colId": "company", "sort": "desc"}])
    ours = [n for n in names if n in GRID_A or n in GRID_B]
    assert ours[:3] == ["Golf", "Alpha B", "Foxtrot"]  # every key flips


@pytest.mark.parametrize(("model", "expected"), [
    ({"filterType": "text", "type": "contains", "filter": "ALP"}, ["Alpha"]),
    ({"filterType": "text", "type": "startsWith", "filter": "ch"}, ["Charlie"]),
    ({"filterType": "text", "type": "endsWith", "filter": "trot"}, ["Foxtrot"]),
    ({"filterType": "text", "type": "equals", "filter": "delta"}, ["Delta"]),
    ({"filterType": "text", "type": "contains", "filter": "%"}, ["Echo 100%"]),  # not a wildcard
    ({"filterType": "text", "type": "contains", "filter": "_"}, []),
    ({"filterType": "text", "operator": "OR", "conditions": [
        {"filterType": "text", "type": "equals", "filter": "alpha"},
        {"filterType": "text", "type": "equals", "filter": "bravo"}]}, ["Bravo", "Alpha"]),
])
def test_text_filter_on_the_site_name(conn, world, model, expected):
    assert _names(conn, world, _admin(world, "Grid A"), filterModel={"name": model}) == expected


@pytest.mark.parametrize(("model", "expected"), [
    ({"filterType": "number", "type": "greaterThan", "filter": 1}, ["Echo 100%"]),
    ({"filterType": "number", "type": "equals", "filter": 1}, ["Alpha", "Charlie"]),
    ({"filterType": "number", "type": "inRange", "filter": 1, "filterTo": 2},
     ["Alpha", "Echo 100%", "Charlie"]),
])
def test_number_filter_on_the_count_of_active_alarms(conn, world, model, expected):
    assert _names(conn, world, _admin(world, "Grid A"),
                  filterModel={"alarms": model}) == expected


@pytest.mark.parametrize(("view", "expected"), [
    ("offline", ["Bravo", "Delta"]), ("alarms", ["Alpha", "Echo 100%", "Charlie"]),
    ("problems", ["Bravo", "Delta", "Alpha", "Echo 100%", "Charlie"]),
])
def test_views_keep_problem_sites(conn, world, view, expected):
    assert _names(conn, world, _admin(world, "Grid A"), view=view) == expected


def test_window_returns_its_rows_and_the_total_of_every_match(conn, world):
    scope = _admin(world, "Grid A")
    query = parse_request({"startRow": 2, "endRow": 4,
                           "sortModel": [{"colId": "name", "sort": "asc"}]})
    window = fleet_window(conn, world["client"], scope, query)
    assert [r["name"] for r in window.rows] == ["Charlie", "Delta"] and window.total == 6
    past = fleet_window(conn, world["client"], scope,
                        parse_request({"startRow": 100, "endRow": 200}))
    assert past.rows == [] and past.total == 6
    capped = parse_request({"startRow": 0, "endRow": 10**6})
    assert capped.limit == MAX_ROWS


def test_another_companys_sites_never_appear(conn, world):
    admin_b = _admin(world, "Grid B")
    assert _names(conn, world, admin_b) == ["Golf", "Alpha B"]
    assert _names(conn, world, admin_b, search="Alpha") == ["Alpha B"]
    assert _names(conn, world, admin_b, filterModel={"company": {
        "filterType": "text", "type": "contains", "filter": "Grid A"}}) == []
    viewer = AccessScope(role="viewer", company_id=world["ids"]["Grid A"],
                         site_ids=frozenset({world["ids"]["Alpha"], world["ids"]["Alpha B"]}))
    assert _names(conn, world, viewer, search="Alpha") == ["Alpha"]


def test_summary_counts_the_whole_scope_whatever_the_window(conn, world):
    summary = fleet_summary(conn, world["client"], _admin(world, "Grid A"))
    assert {k: summary[k] for k in ("sites", "companies", "online", "down", "alarms",
                                    "critical")} == {
        "sites": 6, "companies": 1, "online": 3, "down": 2, "alarms": 4, "critical": 1}
    assert summary["pv_kw"] == pytest.approx(4 * 4.0)  # four online devices
    assert summary["soc"] == pytest.approx(50.0)
    assert fleet_summary(conn, world["client"], _admin(world, "Grid B"))["critical"] == 2


@pytest.mark.parametrize(("request_", "message"), [
    ({"sortModel": [{"colId": "name; DROP TABLE sites", "sort": "asc"}]}, "cannot sort by"),
    ({"sortModel": [{"colId": "soc", "sort": "asc"}]}, "cannot sort by"),
    ({"sortModel": [{"colId": ["name"], "sort": "asc"}]}, "cannot sort by"),
    ({"sortModel": ["name"]}, "cannot sort by"),
    ({"sortModel": [{"colId": "name", "sort": "asc; --"}]}, "asc or desc"),
    ({"sortModel": [{"colId": "name", "sort": "asc"}, {"colId": "company", "sort": "asc"}]},
     "one column"),
    ({"filterModel": {"timezone": {"filterType": "text", "type": "contains", "filter": "x"}}},
     "cannot filter by"),
    ({"filterModel": {"name": {"filterType": "text", "type": "regexp", "filter": "x"}}},
     "unknown text filter"),
    ({"filterModel": {"name": {"filterType": "text", "type": ["contains"], "filter": "x"}}},
     "unknown text filter"),
    ({"filterModel": {"alarms": {"filterType": "number", "type": {"a": 1}, "filter": 1}}},
     "unknown number filter"),
    ({"filterModel": {"name": {"filterType": "number", "type": "equals", "filter": 1}}},
     "only has a text filter"),
    ({"filterModel": {"alarms": {"filterType": "number", "type": "equals", "filter": "1 OR 1=1"}}},
     "must be a number"),
    ({"filterModel": {"alarms": {"filterType": "number", "type": "equals", "filter": True}}},
     "must be a number"),
    ({"filterModel": {"name": {"filterType": "text", "type": "contains", "filter": "x" * 201}}},
     "at most 200"),
    ({"filterModel": {"name": {"filterType": "text", "operator": "XOR", "conditions": []}}},
     "AND or OR"),
    ({"filterModel": ["name"]}, "not an object"),
    ({"startRow": -1}, "row number"),
    ({"startRow": 10, "endRow": 5}, "after startRow"),
    ({"startRow": "0"}, "row number"),
])
def test_a_forged_sort_filter_or_window_is_a_clear_error(request_, message):
    with pytest.raises(FleetQueryError, match=message):
        parse_request({"startRow": 0, "endRow": 100, **request_})


def test_a_forged_view_or_search_is_a_clear_error():
    with pytest.raises(FleetQueryError, match="unknown view"):
        parse_request({}, view="all' OR 1=1")
    with pytest.raises(FleetQueryError, match="search"):
        parse_request({}, search={"a": 1})


def test_summary_skips_live_values_that_are_not_numbers(conn, world):
    company = fleet.create_company(conn, ROOT, "Grid C")
    site = fleet.create_site(conn, ROOT, company_id=company, name="Hotel",
                             timezone="Europe/Paris")
    devices = [fleet.register_device(conn, ROOT, site_id=site, serial=f"GR-C-{n}",
                                     model="HES-L", capacity_kwh=capacity)
               for n, capacity in enumerate((100.0, 300.0))]
    conn.execute("UPDATE devices SET online = true, last_seen = now() WHERE id = ANY(%s)",
                 (devices,))
    now = datetime.now(UTC)
    live.LiveWriter(world["client"]).write(
        {devices[0]: (now, 1, {"bms.soc": 20.0, "meter.pv.p": float("inf")}),
         devices[1]: (now, 1, {"bms.soc": 60.0, "meter.pv.p": float("nan")})},
        last_seen=now.timestamp(), committed_at=now.timestamp())
    summary = fleet_summary(conn, world["client"], AccessScope(role="admin", company_id=company))
    assert summary["pv_kw"] is None and summary["battery_kw"] is None
    assert summary["soc"] == pytest.approx((20 * 100 + 60 * 300) / 400)
