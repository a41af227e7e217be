"""The savings pages: what they show equals the stored bills, and nothing outside the scope."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from kilowatch.access import system_scope
from kilowatch.billing import savings, tariff_store
from tests.dashboards.conftest import call_callback, login
from tests.dashboards.savings_helpers import assign_tou, month_start, seed_energy

SEPTEMBER = "2026-09"
TZ = "Europe/Paris"


@pytest.fixture(scope="module")
def seeded(settings, tenants):
    """September 2026 for A's first site (complete), A's second (with a gap), B's first."""
    start = month_start(datetime(2026, 9, 15, tzinfo=UTC), TZ)
    end = month_start(datetime(2026, 10, 15, tzinfo=UTC), TZ)
    gap = (start + timedelta(days=10), start + timedelta(days=10, hours=6))
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        for site, skip in ((tenants.a.sites[0], None), (tenants.a.sites[1], gap),
                           (tenants.b.sites[0], None)):
            seed_energy(conn, site, start, end, skip=skip)
        tariffs = {"a": assign_tou(conn, tenants.a.id, tenants.a.sites[0], date(2026, 9, 1)),
                   "b": assign_tou(conn, tenants.b.id, tenants.b.sites[0], date(2026, 9, 1))}
        tariff_store.assign_tariff(conn, system_scope("test"), site_id=tenants.a.sites[1],
                                   tariff_id=tariffs["a"], valid_from=date(2026, 9, 1))
        for site in (tenants.a.sites[0], tenants.a.sites[1], tenants.b.sites[0]):
            savings.compute_month(conn, system_scope("test"), site, SEPTEMBER)
    return tariffs


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _outputs(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def _page(client, app, path: str, search: str = "") -> str:
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": search})
    assert response.status_code == 200
    return json.dumps(response.get_json(), ensure_ascii=False)


def _month(client, app, site_id, month=SEPTEMBER):
    return call_callback(client, app, "savings-kpis.children",
                         {"savings-month.value": month, "savings-site.data": site_id})


def _stored(conn, site_id, month=SEPTEMBER) -> dict:
    rows = conn.execute("SELECT * FROM bills WHERE site_id = %s AND period_start = %s",
                        (site_id, date.fromisoformat(f"{month}-01"))).fetchall()
    return {row["scenario"]: row for row in rows}


def test_viewer_opens_the_savings_page_of_a_granted_site(app, tenants, seeded):
    text = _page(_as(app, tenants.a.viewer), app, f"/site/{tenants.a.sites[0]}/savings",
                 f"?month={SEPTEMBER}")
    assert "Savings · Company A site 1" in text
    assert "Office TOU: from 2026-09-01" in text
    assert '"value": "2026-09"' in text
    assert "Export bills (CSV)" in text
    assert "Manage tariffs" not in text  # viewers do not manage tariffs


def test_admin_gets_the_manage_tariffs_link(app, tenants, seeded):
    text = _page(_as(app, tenants.a.admin), app, f"/site/{tenants.a.sites[0]}/savings")
    assert f"/admin/tariffs?site={tenants.a.sites[0]}" in text


@pytest.mark.parametrize(("who", "site"), [("a.viewer", "a1"), ("a.viewer", "b0"),
                                           ("a.admin", "b0"), ("b.admin", "a0"),
                                           ("a.admin", "abc")])
def test_savings_page_of_a_site_outside_the_scope_is_not_allowed(app, tenants, seeded, who,
                                                                 site):
    sites = {"a0": tenants.a.sites[0], "a1": tenants.a.sites[1], "b0": tenants.b.sites[0],
             "abc": "abc"}
    letter, role = who.split(".")
    text = _page(_as(app, getattr(getattr(tenants, letter), role)), app,
                 f"/site/{sites[site]}/savings")
    assert "kw-not-allowed" in text
    assert "Company B site" not in text or letter == "b"


def test_month_callback_shows_the_stored_bills(app, tenants, seeded, conn):
    out = _outputs(_month(_as(app, tenants.a.viewer), app, tenants.a.sites[0]))
    stored = _stored(conn, tenants.a.sites[0])
    figure = out["savings-breakdown-graph"]["figure"]
    parts = {trace["name"]: trace["y"] for trace in figure["data"] if trace["type"] == "bar"}
    order = ("without_system", "pv_only", "actual")
    assert parts["Energy"] == [float(stored[s]["energy"]) for s in order]
    assert parts["Demand"] == [float(stored[s]["demand"]) for s in order]
    assert parts["Fixed charge"] == [float(stored[s]["fixed"]) for s in order]
    assert parts["Export credit"] == [-float(stored[s]["export_credit"]) for s in order]
    totals = next(t for t in figure["data"] if t["name"] == "Total")["y"]
    assert totals == [float(stored[s]["total"]) for s in order]
    table = json.dumps(out["savings-breakdown"]["children"])
    saved = stored["without_system"]["total"] - stored["actual"]["total"]
    assert f"{saved:,.2f}" in table
    assert f"{stored['actual']['total']:,.2f} EUR" in json.dumps(out["savings-kpis"]["children"])
    assert out["savings-quality-slot"]["children"] is None
    assert out["savings-peaks"]["data"]["peaks"]["actual"] == [
        stored["actual"]["details"]["demand"]["peak_kw"],
        stored["actual"]["details"]["demand"]["peak_at"]]


def test_storage_saves_money_under_the_tou_tariff(conn, tenants, seeded):
    stored = _stored(conn, tenants.a.sites[0])
    assert stored["pv_only"]["total"] > stored["actual"]["total"] > 0
    assert stored["without_system"]["total"] > stored["pv_only"]["total"]


def test_history_callback_draws_every_stored_month(app, tenants, seeded, conn):
    out = _outputs(call_callback(_as(app, tenants.a.viewer), app, "savings-monthly.figure",
                                 {"savings-computed.data": "x",
                                  "savings-site.data": tenants.a.sites[0]}))
    stored = _stored(conn, tenants.a.sites[0])
    bars = {t["name"]: t for t in out["savings-monthly"]["figure"]["data"]}
    assert bars["Actual"]["x"] == [SEPTEMBER]
    assert bars["Actual"]["y"] == [float(stored["actual"]["total"])]
    assert bars["Without system"]["y"] == [float(stored["without_system"]["total"])]
    system = float(stored["without_system"]["total"] - stored["actual"]["total"])
    assert bars["System saves"]["y"] == [system]
    note = json.dumps(out["savings-cumulative"]["children"])
    assert f"{system:,.2f} EUR" in note and "from 2026-09 to 2026-09 (1 months)" in note


def test_peak_day_shows_grid_import_and_load_of_that_day(app, tenants, seeded, conn):
    client = _as(app, tenants.a.viewer)
    peaks = _outputs(_month(client, app, tenants.a.sites[0]))["savings-peaks"]["data"]
    out = _outputs(call_callback(client, app, "savings-peak-graph.figure", {
        "savings-peak-which.value": "actual", "savings-peaks.data": peaks,
        "savings-site.data": tenants.a.sites[0]}))
    traces = {t["name"]: t for t in out["savings-peak-graph"]["figure"]["data"]}
    grid = traces["Grid import (actual)"]
    assert len(grid["x"]) in (92, 96, 100)  # a local day: 23, 24 or 25 hours
    peak_kw = peaks["peaks"]["actual"][0]
    assert max(v for v in grid["y"] if v is not None) == pytest.approx(peak_kw, abs=1e-3)
    assert traces["Peak, actual"]["y"] == [peak_kw]
    assert max(traces["Load (without system)"]["y"]) == 60.0


def test_csv_export_lists_every_stored_bill(app, tenants, seeded, conn):
    out = _outputs(call_callback(_as(app, tenants.a.viewer), app, "savings-download.data", {
        "savings-export.n_clicks": 1, "savings-site.data": tenants.a.sites[0]}))
    download = out["savings-download"]["data"]
    assert download["filename"] == f"kilowatch-bills-site-{tenants.a.sites[0]}.csv"
    rows = list(csv.DictReader(io.StringIO(download["content"])))
    stored = _stored(conn, tenants.a.sites[0])
    assert [(r["month"], r["scenario"]) for r in rows] == [
        (SEPTEMBER, s) for s in ("without_system", "pv_only", "actual")]
    for row in rows:
        assert row["total"] == f"{stored[row['scenario']]['total']:.2f}"
        assert row["currency"] == "EUR" and row["complete"] == "yes"
        assert row["site"] == "Company A site 1"


def test_incomplete_month_is_flagged_on_the_page(app, tenants, seeded):
    out = _outputs(_month(_as(app, tenants.a.admin), app, tenants.a.sites[1]))
    alert = json.dumps(out["savings-quality-slot"]["children"])
    assert "Incomplete data" in alert and "quarter-hours missing" in alert
    assert "incomplete data" in json.dumps(out["savings-breakdown"]["children"])


def test_month_without_tariff_says_so(app, tenants, seeded):
    out = _outputs(_month(_as(app, tenants.a.viewer), app, tenants.a.sites[0], "2026-08"))
    assert "has no tariff in 2026-08" in json.dumps(out["savings-kpis"]["children"])
    bad = _outputs(_month(_as(app, tenants.a.viewer), app, tenants.a.sites[0], "Sept"))
    assert "is not a month like" in json.dumps(bad["savings-kpis"]["children"])


SITE_CALLBACKS = [
    ("savings-kpis.children", {"savings-month.value": SEPTEMBER}),
    ("savings-monthly.figure", {"savings-computed.data": "x"}),
    ("savings-download.data", {"savings-export.n_clicks": 1}),
    ("savings-peak-graph.figure", {"savings-peak-which.value": "actual",
                                   "savings-peaks.data": {"peaks": {"actual": [
                                       1.0, "2026-09-01T10:00:00+00:00"]}}}),
]


@pytest.mark.parametrize(("output", "values"), SITE_CALLBACKS)
@pytest.mark.parametrize(("who", "site"), [("a.viewer", "a1"), ("a.viewer", "b0"),
                                           ("a.admin", "b0"), ("b.viewer", "a0"),
                                           ("a.admin", "not-a-site"), ("a.admin", None)])
def test_forged_site_ids_get_nothing(app, tenants, seeded, output, values, who, site):
    sites = {"a0": tenants.a.sites[0], "a1": tenants.a.sites[1], "b0": tenants.b.sites[0],
             "not-a-site": "1 OR 1=1", None: None}
    letter, role = who.split(".")
    client = _as(app, getattr(getattr(tenants, letter), role))
    response = call_callback(client, app, output, {**values, "savings-site.data": sites[site]})
    assert response.status_code == 204
    assert response.get_data(as_text=True) == ""


def test_anonymous_savings_callback_gets_401(client, app, tenants, seeded):
    assert _month(client, app, tenants.a.sites[0]).status_code == 401


def test_forged_peak_data_draws_an_empty_chart(app, tenants, seeded):
    client = _as(app, tenants.a.viewer)
    for peaks in (None, "x", {"peaks": {"actual": "soon"}}, {"peaks": {"actual": [1, "nope"]}}):
        out = _outputs(call_callback(client, app, "savings-peak-graph.figure", {
            "savings-peak-which.value": "actual", "savings-peaks.data": peaks,
            "savings-site.data": tenants.a.sites[0]}))
        assert "No peak to show." in json.dumps(out["savings-peak-graph"]["figure"])


def test_fleet_savings_lists_own_company_sites_only(app, tenants, seeded, conn):
    out = _outputs(call_callback(_as(app, tenants.a.admin), app, "fleet-savings-graph.figure",
                                 {"fleet-savings-month.value": SEPTEMBER}))
    table = json.dumps(out["fleet-savings-table-slot"]["children"])
    assert "Company A site 1" in table and "Company A site 2" in table
    assert "Company B" not in table
    stored = _stored(conn, tenants.a.sites[0])
    bars = {t["name"]: t for t in out["fleet-savings-graph"]["figure"]["data"]}
    index = bars["System saves"]["y"].index("Company A site 1 (EUR)")
    assert bars["System saves"]["x"][index] == float(
        stored["without_system"]["total"] - stored["actual"]["total"])


def test_platform_staff_see_every_company_in_the_fleet_savings(app, tenants, seeded):
    out = _outputs(call_callback(_as(app, tenants.support), app, "fleet-savings-graph.figure",
                                 {"fleet-savings-month.value": SEPTEMBER}))
    table = json.dumps(out["fleet-savings-table-slot"]["children"])
    assert "Company A site 1" in table and "Company B site 1" in table


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_fleet_savings_is_for_administrators(app, tenants, seeded, role):
    client = _as(app, getattr(tenants.a, role))
    response = call_callback(client, app, "fleet-savings-graph.figure",
                             {"fleet-savings-month.value": SEPTEMBER})
    assert response.status_code == 403
    assert "kw-not-allowed" in _page(client, app, "/savings")


def test_fleet_savings_refuses_a_bad_month(app, tenants, seeded):
    out = _outputs(call_callback(_as(app, tenants.a.admin), app, "fleet-savings-graph.figure",
                                 {"fleet-savings-month.value": "'; DROP TABLE bills; --"}))
    assert "is not a month like" in json.dumps(out["fleet-savings-table-slot"]["children"])
