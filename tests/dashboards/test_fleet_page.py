"""Fleet overview page: the grid of the user's sites, its refresh and filter callback."""

from __future__ import annotations

import json

import psycopg
import pytest

from dashboards.components.telemetry import fleet_table as fleet_page
from tests.dashboards import forging, seed
from tests.dashboards.conftest import call_callback, login


@pytest.fixture(scope="module")
def devices(tenants, settings):
    """Live devices on A's two sites (the second offline) and on B's first site."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        ids = [seed.register(conn, site, f"FLEET-{n}") for n, site in enumerate(
            [tenants.a.sites[0], tenants.a.sites[1], tenants.b.sites[0]])]
    seed.publish_live(ids[0], seed.live_values())
    seed.publish_live(ids[1], seed.live_values(), online=False)
    seed.publish_live(ids[2], seed.live_values(scale=3))
    return ids


def _refresh(app, account, status_filter="all"):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return call_callback(client, app, "fleet-grid.rowData",
                         {"fleet-refresh.n_intervals": 1, "fleet-filter.value": status_filter})


def _rows(response) -> list[dict]:
    assert response.status_code == 200
    return response.get_json()["response"]["fleet-grid"]["rowData"]


def test_admin_sees_their_company_problems_first(app, tenants, devices):
    rows = _rows(_refresh(app, tenants.a.admin))
    assert [r["name"] for r in rows] == ["Company A site 2", "Company A site 1"]
    assert rows[0]["status"] == "offline" and rows[0]["status_text"].startswith("Offline since")
    assert rows[1]["pv_kw"] == 20.0 and rows[1]["soc"] == 55.0


def test_viewer_refresh_only_returns_granted_sites(app, tenants, devices):
    response = _refresh(app, tenants.a.viewer)
    assert [r["name"] for r in _rows(response)] == ["Company A site 1"]
    text = response.get_data(as_text=True)
    assert "Company B" not in text and "Company A site 2" not in text


def test_status_filter_runs_on_the_server(app, tenants, devices):
    rows = _rows(_refresh(app, tenants.support, "offline"))
    assert [r["name"] for r in rows] == ["Company A site 2"]
    everything = _rows(_refresh(app, tenants.support, "all"))
    assert {"Company A site 1", "Company B site 1"} <= {r["name"] for r in everything}


@pytest.mark.parametrize("forged", ["'; DROP TABLE sites; --", 7, ["all"], *forging.FORGED])
def test_forged_filter_values_fall_back_to_the_user_scope(app, tenants, devices, forged):
    response = _refresh(app, tenants.b.viewer, forged)
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert all(r["company"] == "Company B" for r in _rows(response))
        assert "Company A" not in response.get_data(as_text=True)


def test_layout_shows_headline_figures_and_the_grid(app, tenants, devices):
    client = app.server.test_client()
    login(client, tenants.a.admin.email, tenants.a.admin.password)
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": "/", "_pages_location.search": ""})
    text = json.dumps(response.get_json())
    assert "fleet-grid" in text and "fleet-kpi-offline" in text
    assert "Company B site" not in text


def test_grid_rows_keep_problems_first_and_filter():
    sites = [{"id": i, "name": name, "company_name": "C", "timezone": "UTC", "status": status,
              "offline_since": None, "alarms": {"critical": crit, "major": 0, "minor": 0,
                                                "warning": 0},
              "soc": None, "battery_kw": None, "pv_kw": None, "load_kw": None, "grid_kw": None,
              "today_kwh": {}, "last_seen": None}
             for i, (name, status, crit) in enumerate([("x", "offline", 0), ("y", "online", 2),
                                                       ("z", "online", 0)])]
    rows = fleet_page.grid_rows(sites)
    assert [(r["name"], r["rank"], r["row_id"]) for r in rows] == [  # ids as AG Grid wants
        ("x", 0, "0"), ("y", 1, "1"), ("z", 2, "2")]
    assert rows[0]["status_text"] == "Never seen"
    assert [r["name"] for r in fleet_page.grid_rows(sites, "alarms")] == ["y"]
    assert [r["name"] for r in fleet_page.grid_rows(sites, "problems")] == ["x", "y"]


def test_every_callback_survives_one_forged_value_beside_real_ones(app, tenants, devices):
    client = app.server.test_client()
    assert login(client, tenants.a.admin.email, tenants.a.admin.password).status_code == 302
    real = {"fleet-refresh.n_intervals": 1, "fleet-filter.value": "all"}
    failures = forging.forge_each_input(client, app, "fleet-",
                                        lambda _key, d: real[f"{d['id']}.{d['property']}"])
    assert not failures, "\n".join(failures)
    assert not forging.forge_all_inputs(client, app, "fleet-")
