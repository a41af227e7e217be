"""Fleet page: the grid's windows and headline figures through the guarded callbacks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from dashboards.components.telemetry import fleet_table
from tests.dashboards import forging, seed
from tests.dashboards.conftest import call_callback, login

WINDOW = {"startRow": 0, "endRow": 100}


@pytest.fixture(scope="module")
def devices(tenants, settings):
    """Live devices on A's two sites (the second offline) and on B's first site."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        ids = [seed.register(conn, site, f"FLEET-{n}") for n, site in enumerate(
            [tenants.a.sites[0], tenants.a.sites[1], tenants.b.sites[0]])]
        now = datetime.now(UTC)
        conn.execute("UPDATE devices SET online = id <> %s, last_seen = CASE WHEN id = %s "
                     "THEN %s ELSE %s END WHERE id = ANY(%s)",
                     (ids[1], ids[1], now - timedelta(minutes=20), now, ids))
    seed.publish_live(ids[0], seed.live_values())
    seed.publish_live(ids[1], seed.live_values(), online=False)
    seed.publish_live(ids[2], seed.live_values(scale=3))
    return ids


def _client(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _load(app, account, request=None, *, view="all", search=None):
    return call_callback(_client(app, account), app, "fleet-grid.getRowsResponse",
                         {"fleet-grid.getRowsRequest": WINDOW if request is None else request,
                          "fleet-filter.value": view, "fleet-search.value": search})


def _grid(response) -> dict:
    assert response.status_code == 200
    return response.get_json()["response"]["fleet-grid"]["getRowsResponse"]


def _problem(response) -> str:
    return response.get_json()["response"]["fleet-problem"]["children"]


def test_admin_sees_their_company_problems_first(app, tenants, devices):
    grid = _grid(_load(app, tenants.a.admin))
    rows = grid["rowData"]
    assert [r["name"] for r in rows] == ["Company A site 2", "Company A site 1"]
    assert grid["rowCount"] == 2
    assert rows[0]["status"] == "offline" and rows[0]["status_text"].startswith("Offline since")
    assert rows[1]["pv_kw"] == 20.0 and rows[1]["soc"] == 55.0
    assert rows[1]["row_id"] == str(tenants.a.sites[0])  # the link to the site page


def test_viewer_window_only_returns_granted_sites(app, tenants, devices):
    response = _load(app, tenants.a.viewer, search="Company")
    assert [r["name"] for r in _grid(response)["rowData"]] == ["Company A site 1"]
    text = response.get_data(as_text=True)
    assert "Company B" not in text and "Company A site 2" not in text


def test_view_sort_filter_and_window_run_on_the_server(app, tenants, devices):
    offline = _grid(_load(app, tenants.support, view="offline"))
    assert [r["name"] for r in offline["rowData"]] == ["Company A site 2"]
    by_name = _grid(_load(app, tenants.support, {
        "startRow": 0, "endRow": 2, "sortModel": [{"colId": "name", "sort": "desc"}],
        "filterModel": {"company": {"filterType": "text", "type": "startsWith",
                                    "filter": "company"}}}))
    assert by_name["rowCount"] > 2 and len(by_name["rowData"]) == 2
    assert by_name["rowData"][0]["name"] > by_name["rowData"][1]["name"]


@pytest.mark.parametrize(("request_", "message"), [
    ({**WINDOW, "sortModel": [{"colId": "s.name; DROP TABLE sites", "sort": "asc"}]},
     "cannot sort by"),
    ({**WINDOW, "filterModel": {"password_hash": {"filterType": "text", "type": "contains",
                                                  "filter": "a"}}}, "cannot filter by"),
    ({**WINDOW, "filterModel": {"name": {"filterType": "text", "type": "contains",
                                         "filter": 1}}}, "must be text"),
    ({"startRow": 0, "endRow": -5}, "row number"),
])
def test_a_forged_request_shows_an_error_and_no_rows(app, tenants, devices, request_, message):
    response = _load(app, tenants.b.viewer, request_)
    assert _grid(response) == {"rowData": [], "rowCount": 0}
    assert message in _problem(response)


def test_a_forged_view_shows_an_error(app, tenants, devices):
    response = _load(app, tenants.b.viewer, view="'; DROP TABLE sites; --")
    assert _grid(response)["rowData"] == [] and "unknown view" in _problem(response)


def test_summary_counts_the_whole_scope(app, tenants, devices):
    response = call_callback(_client(app, tenants.a.admin), app, "fleet-kpis.children",
                             {"fleet-refresh.n_intervals": 1})
    text = json.dumps(response.get_json())
    assert '"fleet-kpi-sites"' in text and '"1 online"' in text
    offline = response.get_json()["response"]["fleet-kpis"]["children"][1]
    assert "fleet-kpi-offline" in json.dumps(offline) and '"1"' in json.dumps(offline)


def test_layout_shows_headline_figures_and_an_empty_grid(app, tenants, devices):
    client = _client(app, tenants.a.admin)
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": "/", "_pages_location.search": ""})
    text = json.dumps(response.get_json())
    assert "fleet-grid" in text and "fleet-kpi-offline" in text and '"infinite"' in text
    assert "Company A site" not in text  # rows come a window at a time, not with the layout
    assert '"company"' not in text  # one company: no company column


def test_grid_rows_carry_string_ids_and_status_texts():
    sites = [{"id": i, "name": name, "company_name": "C", "timezone": "UTC", "status": status,
              "offline_since": None, "alarms": {"critical": crit, "major": 0, "minor": 0,
                                                "warning": 0},
              "soc": None, "battery_kw": None, "pv_kw": None, "load_kw": None, "grid_kw": None,
              "today_kwh": {}, "last_seen": None}
             for i, (name, status, crit) in enumerate([("x", "offline", 0), ("y", "online", 2)])]
    rows = fleet_table.grid_rows(sites)
    assert [(r["name"], r["row_id"], r["alarms"]) for r in rows] == [
        ("x", "0", ""), ("y", "1", "2 critical")]
    assert rows[0]["status_text"] == "Never seen"


def test_only_sql_sortable_columns_sort_and_filter():
    from kilowatch.telemetry import fleet_grid

    def leaves(columns):
        for column in columns:
            yield from leaves(column["children"]) if "children" in column else [column]

    for column in leaves(fleet_table.COLUMNS):
        assert (column.get("sortable", True) is not False) == (column["field"] in fleet_grid.SORTS)
        assert ("filter" in column) == (column["field"] in fleet_grid.FILTERS)


def test_every_callback_survives_one_forged_value_beside_real_ones(app, tenants, devices):
    client = _client(app, tenants.a.admin)
    real = {"fleet-refresh.n_intervals": 1, "fleet-filter.value": "all",
            "fleet-grid.getRowsRequest": WINDOW, "fleet-search.value": ""}
    failures = forging.forge_each_input(client, app, "fleet-",
                                        lambda _key, d: real[f"{d['id']}.{d['property']}"])
    assert not failures, "\n".join(failures)
    assert not forging.forge_all_inputs(client, app, "fleet-")
