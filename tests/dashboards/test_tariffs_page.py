"""The tariff page's callbacks, posted as a browser would, forged ones included."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import psycopg
import pytest

from kilowatch.access import system_scope
from kilowatch.billing import tariff_store, tariffs
from tests.dashboards.conftest import call_callback, dash_post, login
from tests.dashboards.savings_helpers import tou_structure

URDB = Path(__file__).resolve().parents[1] / "kilowatch" / "data" / "urdb_sunridge.json"


@pytest.fixture(scope="module")
def company_tariffs(settings, tenants):
    """One TOU tariff per company."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        scope = system_scope("test")
        return {letter: tariff_store.create_tariff(
            conn, scope, company_id=getattr(tenants, letter).id, name=f"TOU {letter.upper()}",
            tariff=tariffs.parse(tou_structure())) for letter in "ab"}


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _outputs(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def _text(response) -> str:
    return json.dumps(_outputs(response), ensure_ascii=False)


def _post(client, app, output_prefix: str, values: dict, triggered: str | None = None):
    """Post the callback whose output key starts with ``output_prefix`` (duplicate outputs)."""
    key = next(k for k in app.callback_map
               if any(part.startswith(output_prefix) for part in k.strip(".").split("...")))
    entry = app.callback_map[key]

    def items(dependencies):
        return [{"id": d["id"], "property": d["property"],
                 "value": values.get(f"{d['id']}.{d['property']}")} for d in dependencies]

    changed = [triggered] if triggered else None
    return dash_post(client, key, items(entry["inputs"]), items(entry["state"]), changed)


def _editor(structure: dict) -> dict:
    """The editor's fields for a structure, as the browser would send them back."""
    from dashboards.components.billing import tariff_forms

    structure = copy.deepcopy(structure)
    settings = tariff_forms.settings_of(structure)
    values = {f"tariffs-{k.replace('_', '-')}.value": v for k, v in settings.items()}
    values.update({
        "tariffs-energy-grid.rowData": tariff_forms.energy_rows(structure),
        "tariffs-demand-grid.rowData": tariff_forms.demand_rows(structure, "demand"),
        "tariffs-flat-grid.rowData": tariff_forms.demand_rows(structure, "flat_demand"),
        "tariffs-flat-months.rowData": [tariff_forms.flat_months_row(structure)],
        "tariffs-grids.data": tariff_forms.schedules(structure)})
    for kind in ("energy", "demand"):
        values[f"tariffs-{kind}-grid.virtualRowData"] = values[f"tariffs-{kind}-grid.rowData"]
    return values


def _act(client, app, trigger: str, values: dict):
    prop = "contents" if trigger == "tariffs-upload" else "n_clicks"
    value = values.pop(f"{trigger}.{prop}", 1)
    return call_callback(client, app, "tariffs-message.children",
                         {**values, f"{trigger}.{prop}": value}, triggered=f"{trigger}.{prop}")


def _save(client, app, tariff_id, structure, company_id):
    return _act(client, app, "tariffs-save", {**_editor(structure),
                                              "tariffs-selected.value": str(tariff_id),
                                              "tariffs-company.value": str(company_id)})


def _structure(conn, tariff_id) -> dict:
    return conn.execute("SELECT structure FROM tariffs WHERE id = %s",
                        (tariff_id,)).fetchone()["structure"]


def _upload(document) -> str:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return "data:application/json;base64," + base64.b64encode(raw).decode()


# --- listing and loading ------------------------------------------------------------------------


def test_admin_lists_own_tariffs_and_sites(app, tenants, company_tariffs):
    text = _text(call_callback(_as(app, tenants.a.admin), app, "tariffs-list-slot.children",
                               {"tariffs-company.value": str(tenants.a.id)}))
    assert "TOU A" in text and "Company A site 1" in text and "Company A site 2" in text
    assert "TOU B" not in text and "Company B" not in text


def test_admin_asking_for_another_company_gets_nothing(app, tenants, company_tariffs):
    response = call_callback(_as(app, tenants.a.admin), app, "tariffs-list-slot.children",
                             {"tariffs-company.value": str(tenants.b.id)})
    assert response.status_code == 204


def test_superadmin_lists_any_company_and_a_switch_clears_the_editor(app, tenants,
                                                                     company_tariffs):
    response = call_callback(_as(app, tenants.superadmin), app, "tariffs-list-slot.children",
                             {"tariffs-company.value": str(tenants.b.id)},
                             triggered="tariffs-company.value")
    assert "TOU B" in _text(response) and "TOU A" not in _text(response)
    assert _outputs(response)["tariffs-selected"]["value"] is None


def test_loading_a_tariff_fills_the_editor(app, tenants, company_tariffs):
    out = _outputs(call_callback(_as(app, tenants.a.admin), app, "tariffs-currency.value",
                                 {"tariffs-selected.value": str(company_tariffs["a"])}))
    assert out["tariffs-currency"]["value"] == "EUR"
    assert [r["rate"] for r in out["tariffs-energy-grid"]["rowData"]] == [0.15, 0.40]
    assert out["tariffs-grids"]["data"]["energy_weekday"][0][17] == 1
    assert out["tariffs-flat-months"]["rowData"] == [dict.fromkeys(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 0)]


@pytest.mark.parametrize("selected", ["b", "99999", "1; DROP TABLE tariffs", "-1"])
def test_loading_a_tariff_outside_the_company_gets_nothing(app, tenants, company_tariffs,
                                                          selected):
    value = str(company_tariffs["b"]) if selected == "b" else selected
    response = call_callback(_as(app, tenants.a.admin), app, "tariffs-currency.value",
                             {"tariffs-selected.value": value})
    assert response.status_code == 204


# --- roles ----------------------------------------------------------------------------------------


TARIFF_OUTPUTS = ["tariffs-list-slot.children", "tariffs-currency.value",
                  "tariffs-message.children", "tariffs-history-slot.children",
                  "tariffs-grid-energy_weekday.figure", "tariffs-energy-grid.rowTransaction",
                  "tariffs-grids.data@"]


@pytest.mark.parametrize("role", ["viewer", "operator", "support"])
@pytest.mark.parametrize("output", TARIFF_OUTPUTS)
def test_non_admins_are_refused_every_tariff_callback(app, tenants, company_tariffs, role,
                                                      output):
    account = tenants.support if role == "support" else getattr(tenants.a, role)
    response = _post(_as(app, account), app, output, {
        "tariffs-company.value": str(tenants.a.id),
        "tariffs-selected.value": str(company_tariffs["a"]), "tariffs-save.n_clicks": 1})
    assert response.status_code == 403


def test_viewer_editing_a_tariff_is_refused_and_nothing_changes(app, tenants, company_tariffs,
                                                                conn):
    before = _structure(conn, company_tariffs["a"])
    changed = copy.deepcopy(before)
    changed["energy"]["periods"][0]["tiers"][0]["rate"] = 9.99
    response = _save(_as(app, tenants.a.viewer), app, company_tariffs["a"], changed, tenants.a.id)
    assert response.status_code == 403
    assert _structure(conn, company_tariffs["a"]) == before


def test_anonymous_tariff_callback_gets_401(client, app, company_tariffs):
    response = call_callback(client, app, "tariffs-currency.value",
                             {"tariffs-selected.value": str(company_tariffs["a"])})
    assert response.status_code == 401


# --- saving ---------------------------------------------------------------------------------------


def test_admin_saves_rates_and_periods(app, tenants, company_tariffs, conn):
    structure = _structure(conn, company_tariffs["a"])
    structure["energy"]["periods"][1]["tiers"][0]["rate"] = 0.45
    structure["energy"]["weekend"][6][12] = 1
    response = _save(_as(app, tenants.a.admin), app, company_tariffs["a"], structure,
                     tenants.a.id)
    assert "Tariff saved" in _text(response)
    stored = _structure(conn, company_tariffs["a"])
    assert stored["energy"]["periods"][1]["tiers"][0]["rate"] == 0.45
    assert stored["energy"]["weekend"][6][12] == 1
    assert tariffs.parse(stored) == tariffs.parse(structure)
    audit = conn.execute("SELECT actor FROM audit_log WHERE action = 'tariff.update' "
                         "AND target = %s", (f"tariff:{company_tariffs['a']}",)).fetchall()
    assert {"actor": tenants.a.admin.email} in audit


def test_admin_saving_another_company_tariff_gets_nothing(app, tenants, company_tariffs, conn):
    before = _structure(conn, company_tariffs["b"])
    changed = copy.deepcopy(before)
    changed["fixed_charge"]["amount"] = 1.0
    response = _save(_as(app, tenants.a.admin), app, company_tariffs["b"], changed, tenants.a.id)
    assert response.status_code == 204
    assert _structure(conn, company_tariffs["b"]) == before


@pytest.mark.parametrize(("edit", "message"), [
    (lambda v: v["tariffs-energy-grid.rowData"][0].update(rate="cheap"),
     "energy.periods[0].tiers[0].rate: expected a number, got 'cheap'"),
    (lambda v: v["tariffs-energy-grid.rowData"][1].update(period=2),
     "energy rates: period 1 has no rate"),
    (lambda v: v["tariffs-energy-grid.rowData"][1].update(period="peak"),
     "energy rates, row 2, period: expected a whole number"),
    (lambda v: v["tariffs-grids.data"]["energy_weekday"][3].__setitem__(17, 5),
     "energy.weekday[3][17]: period 5 does not exist (there are 2)"),
    (lambda v: v.update({"tariffs-currency.value": "euro"}),
     "currency: expected a three-letter ISO code"),
    (lambda v: v.update({"tariffs-compensation.value": "barter"}),
     "export.compensation: expected one of net_metering, net_billing, buy_all_sell_all"),
    (lambda v: v["tariffs-flat-months.rowData"][0].update(mar=7),
     "flat_demand.months[2]: expected a flat demand period number or null, got 7"),
    (lambda v: v["tariffs-demand-grid.rowData"][0].update(max_kw=-3),
     "demand.periods[0].tiers[0].max_kw: must be greater than 0"),
    (lambda v: v.update({"tariffs-grids.data": "x"}), "energy.weekday: the grid is missing"),
])
def test_bad_edits_get_a_message_naming_the_field(app, tenants, company_tariffs, conn, edit,
                                                  message):
    before = _structure(conn, company_tariffs["a"])
    values = {**_editor(before), "tariffs-selected.value": str(company_tariffs["a"]),
              "tariffs-company.value": str(tenants.a.id)}
    edit(values)
    text = _text(_act(_as(app, tenants.a.admin), app, "tariffs-save", values))
    assert message in text
    assert '"color": "danger"' in text
    assert _structure(conn, company_tariffs["a"]) == before


def test_removing_every_demand_row_drops_the_demand_charge(app, tenants, conn):
    scope = system_scope("test")
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=tenants.a.id,
                                           name="Drop demand", tariff=tariffs.parse(
                                               tou_structure()))
    values = {**_editor(tou_structure()), "tariffs-selected.value": str(tariff_id),
              "tariffs-company.value": str(tenants.a.id), "tariffs-demand-grid.rowData": [],
              "tariffs-flat-grid.rowData": [{"period": "", "rate": None}]}
    assert "Tariff saved" in _text(_act(_as(app, tenants.a.admin), app, "tariffs-save", values))
    stored = _structure(conn, tariff_id)
    assert stored["demand"] is None and stored["flat_demand"] is None


# --- creating and importing -------------------------------------------------------------------


def test_admin_creates_a_tariff_and_it_is_selected(app, tenants, conn):
    out = _outputs(_act(_as(app, tenants.a.admin), app, "tariffs-create",
                        {"tariffs-company.value": str(tenants.a.id),
                         "tariffs-new-name.value": "Starter"}))
    row = conn.execute("SELECT id, company_id FROM tariffs WHERE name = 'Starter'").fetchone()
    assert row["company_id"] == tenants.a.id
    assert out["tariffs-selected"]["value"] == str(row["id"])


def test_creating_a_duplicate_or_nameless_tariff_names_the_field(app, tenants, company_tariffs):
    client = _as(app, tenants.a.admin)
    text = _text(_act(client, app, "tariffs-create", {"tariffs-company.value": str(tenants.a.id),
                                                      "tariffs-new-name.value": "TOU A"}))
    assert "name: the company already has a tariff named 'TOU A'" in text
    text = _text(_act(client, app, "tariffs-create", {"tariffs-company.value": str(tenants.a.id),
                                                      "tariffs-new-name.value": "  "}))
    assert "name: a tariff needs a name" in text


def test_admin_creating_a_tariff_for_another_company_gets_nothing(app, tenants, conn):
    response = _act(_as(app, tenants.a.admin), app, "tariffs-create",
                    {"tariffs-company.value": str(tenants.b.id),
                     "tariffs-new-name.value": "Sneaky"})
    assert response.status_code == 204
    assert conn.execute("SELECT 1 FROM tariffs WHERE name = 'Sneaky'").fetchone() is None


def test_admin_imports_a_urdb_file(app, tenants, conn):
    out = _outputs(_act(_as(app, tenants.a.admin), app, "tariffs-upload", {
        "tariffs-upload.contents": _upload(URDB.read_bytes()),
        "tariffs-upload.filename": "urdb_sunridge.json",
        "tariffs-company.value": str(tenants.a.id), "tariffs-import-name.value": "Sunridge",
        "tariffs-import-currency.value": "usd", "tariffs-import-export-rate.value": 0.03}))
    row = conn.execute("SELECT * FROM tariffs WHERE name = 'Sunridge'").fetchone()
    assert row["company_id"] == tenants.a.id and row["currency"] == "USD"
    assert row["source"]["utility"] == "Sunridge Electric Cooperative"
    assert out["tariffs-selected"]["value"] == str(row["id"])
    assert "Imported Sunridge (4 energy period(s)" in json.dumps(out["tariffs-message"])


@pytest.mark.parametrize(("content", "message"), [
    (b"{not json", "broken.json: not valid JSON"),
    (b"\xff\xfe", "broken.json: not a UTF-8 text file"),
    ({"items": [{"name": "x", "energyratestructure": [[{"rate": 0.1}]],
                 "energyweekdayschedule": [[9] * 24] * 12,
                 "energyweekendschedule": [[0] * 24] * 12}]},
     "energyweekdayschedule[0][0]: period 9 does not exist (there are 1)"),
    ({"name": "no energy"}, "energyratestructure: missing"),
    ({"name": "x", "energyratestructure": [[{"rate": 0.1}]], "dgrules": "Barter",
      "energyweekdayschedule": [[0] * 24] * 12, "energyweekendschedule": [[0] * 24] * 12},
     "dgrules: 'Barter' is not supported"),
    ("text/plain,abc", "broken.json: the upload is not encoded as expected"),
    ("no comma", "broken.json: no file content was received"),
])
def test_a_bad_upload_gets_a_message_naming_the_field(app, tenants, content, message):
    contents = content if isinstance(content, str) else _upload(content)
    text = _text(_act(_as(app, tenants.a.admin), app, "tariffs-upload", {
        "tariffs-upload.contents": contents, "tariffs-upload.filename": "broken.json",
        "tariffs-company.value": str(tenants.a.id)}))
    assert message in text


def test_admin_importing_for_another_company_gets_nothing(app, tenants, conn):
    response = _act(_as(app, tenants.a.admin), app, "tariffs-upload", {
        "tariffs-upload.contents": _upload(URDB.read_bytes()),
        "tariffs-upload.filename": "u.json", "tariffs-import-name.value": "Foreign",
        "tariffs-company.value": str(tenants.b.id)})
    assert response.status_code == 204
    assert conn.execute("SELECT 1 FROM tariffs WHERE name = 'Foreign'").fetchone() is None


# --- assignment -----------------------------------------------------------------------------------


def _assign(client, app, site, tariff, valid_from="2026-01-01", valid_to=None):
    return _act(client, app, "tariffs-assign", {
        "tariffs-site.value": str(site), "tariffs-assign-tariff.value": str(tariff),
        "tariffs-from.value": valid_from, "tariffs-to.value": valid_to})


def test_admin_assigns_a_tariff_and_sees_the_history(app, tenants, company_tariffs, conn):
    client = _as(app, tenants.a.admin)
    site = tenants.a.sites[1]
    assert "uses this tariff from 2026-01-01" in _text(_assign(client, app, site,
                                                               company_tariffs["a"]))
    other = tariff_store.create_tariff(conn, system_scope("test"), company_id=tenants.a.id,
                                       name="Summer", tariff=tariffs.parse(tou_structure()))
    text = _text(_assign(client, app, site, other, "2026-06-01", "2026-09-01"))
    assert "from 2026-06-01 to 2026-09-01" in text and f"/site/{site}/savings" in text
    history = _text(call_callback(client, app, "tariffs-history-slot.children",
                                  {"tariffs-site.value": str(site)}))
    assert history.count("TOU A") == 3 and "Summer" in history
    assert "superseded" in history and "current" in history


@pytest.mark.parametrize(("site", "tariff"), [("b0", "a"), ("a0", "b"), ("b0", "b")])
def test_assigning_across_companies_gets_nothing(app, tenants, company_tariffs, conn, site,
                                                 tariff):
    site_id = {"a0": tenants.a.sites[0], "b0": tenants.b.sites[0]}[site]
    before = conn.execute("SELECT count(*) AS n FROM site_tariffs").fetchone()["n"]
    response = _assign(_as(app, tenants.a.admin), app, site_id, company_tariffs[tariff])
    assert response.status_code == 204
    assert conn.execute("SELECT count(*) AS n FROM site_tariffs").fetchone()["n"] == before


@pytest.mark.parametrize(("valid_from", "valid_to", "message"), [
    ("tomorrow", None, "from: 'tomorrow' is not a date like 2026-03-01"),
    (None, None, "from: choose the first day of the assignment"),
    ("2026-05-01", "2026-04-01", "to: the end date must be after the start date"),
])
def test_bad_assignment_dates_get_a_message(app, tenants, company_tariffs, valid_from,
                                            valid_to, message):
    text = _text(_assign(_as(app, tenants.a.admin), app, tenants.a.sites[0],
                         company_tariffs["a"], valid_from, valid_to))
    assert message in text


def test_history_of_another_company_site_gets_nothing(app, tenants):
    response = call_callback(_as(app, tenants.a.admin), app, "tariffs-history-slot.children",
                             {"tariffs-site.value": str(tenants.b.sites[0])})
    assert response.status_code == 204


def test_rate_rows_are_added_with_the_next_period_and_removed_when_selected(app, tenants):
    client = _as(app, tenants.a.admin)
    rows = _editor(tou_structure())["tariffs-energy-grid.rowData"]
    out = _outputs(call_callback(client, app, "tariffs-energy-grid.rowTransaction", {
        "tariffs-energy-add.n_clicks": 1, "tariffs-energy-grid.rowData": rows},
        triggered="tariffs-energy-add.n_clicks"))
    assert out["tariffs-energy-grid"]["rowTransaction"]["add"][0]["period"] == 2
    out = _outputs(call_callback(client, app, "tariffs-energy-grid.rowTransaction", {
        "tariffs-energy-remove.n_clicks": 1}, triggered="tariffs-energy-remove.n_clicks"))
    assert out["tariffs-energy-grid"] == {"deleteSelectedRows": True}


# --- painting -------------------------------------------------------------------------------------


def _paint(client, app, values, triggered):
    return _post(client, app, "tariffs-grids.data@", values, triggered)


def test_clicking_a_cell_paints_it(app, tenants):
    grids = {name: [[0] * 24 for _ in range(12)] for name in
             ("energy_weekday", "energy_weekend", "demand_weekday", "demand_weekend")}
    out = _outputs(_paint(_as(app, tenants.a.admin), app, {
        "tariffs-grids.data": grids, "tariffs-paint-energy.value": 1,
        "tariffs-grid-energy_weekend.clickData": {"points": [{"curveNumber": 1, "x": 17,
                                                              "y": 6}]}},
        "tariffs-grid-energy_weekend.clickData"))
    painted = out["tariffs-grids"]["data"]
    assert painted["energy_weekend"][6][17] == 1
    assert sum(map(sum, painted["energy_weekend"])) == 1
    assert painted["energy_weekday"] == grids["energy_weekday"]


def test_a_block_paints_months_and_hours_of_both_day_types(app, tenants):
    grids = {name: [[0] * 24 for _ in range(12)] for name in
             ("energy_weekday", "energy_weekend", "demand_weekday", "demand_weekend")}
    out = _outputs(_paint(_as(app, tenants.a.admin), app, {
        "tariffs-grids.data": grids, "tariffs-paint-demand.value": 2,
        "tariffs-block-schedule.value": "demand", "tariffs-block-days.value": "both",
        "tariffs-block-month-from.value": "6", "tariffs-block-month-to.value": "9",
        "tariffs-block-hour-from.value": "14", "tariffs-block-hour-to.value": "20",
        "tariffs-block-apply.n_clicks": 1}, "tariffs-block-apply.n_clicks"))
    painted = out["tariffs-grids"]["data"]
    for name in ("demand_weekday", "demand_weekend"):
        assert sum(v == 2 for row in painted[name] for v in row) == 4 * 6
        assert painted[name][5][14] == 2 and painted[name][8][19] == 2
        assert painted[name][9][14] == 0 and painted[name][5][20] == 0


@pytest.mark.parametrize("values", [
    {"tariffs-grids.data": "garbage"},
    {"tariffs-grids.data": None},
    {"tariffs-paint-energy.value": -1},
    {"tariffs-paint-energy.value": "drop"},
    {"tariffs-grid-energy_weekday.clickData": {"points": [{"x": 99, "y": 0}]}},
    {"tariffs-grid-energy_weekday.clickData": "x"},
])
def test_forged_paint_requests_change_nothing(app, tenants, values):
    grids = {name: [[0] * 24 for _ in range(12)] for name in
             ("energy_weekday", "energy_weekend", "demand_weekday", "demand_weekend")}
    base = {"tariffs-grids.data": grids, "tariffs-paint-energy.value": 1,
            "tariffs-grid-energy_weekday.clickData": {"points": [{"x": 1, "y": 1}]}}
    response = _paint(_as(app, tenants.a.admin), app, {**base, **values},
                      "tariffs-grid-energy_weekday.clickData")
    assert response.status_code == 204


def test_grids_are_drawn_with_period_labels(app, tenants):
    from dashboards.components.billing import tariff_forms

    values = _editor(tou_structure())
    out = _outputs(call_callback(_as(app, tenants.a.admin), app,
                                 "tariffs-grid-energy_weekday.figure", values))
    heatmap = out["tariffs-grid-energy_weekday"]["figure"]["data"][0]
    assert heatmap["z"] == tou_structure()["energy"]["weekday"]
    assert out["tariffs-paint-energy"]["options"] == [{"label": "0 · Off-peak", "value": 0},
                                                      {"label": "1 · Peak", "value": 1}]
    bad = call_callback(_as(app, tenants.a.admin), app, "tariffs-grid-energy_weekday.figure",
                        {**values, "tariffs-grids.data": {"energy_weekday": [[True] * 24] * 12}})
    assert bad.status_code == 204
    assert tariff_forms.period_labels([]) == {}
