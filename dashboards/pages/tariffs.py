"""Administration: a company's tariffs (URDB import, editor) and their assignment to sites.

Company admins manage their own company's tariffs, superadmins any company's.
The editor paints time-of-use periods on month × hour grids and edits the rate
tables; saving validates the whole tariff and names the faulty field. Every
change goes through :mod:`kilowatch.billing.tariff_store` (access checks, audit log,
stale bills recomputed by the worker).
"""

from __future__ import annotations

from datetime import date

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth.callbacks import ADMIN_ROLES, connection, current_scope, guarded_callback
from dashboards.components import admin
from dashboards.components.billing import tariff_cards, tariff_editor, tariff_forms, tariff_grid
from dashboards.components.forms import text
from dashboards.components.inputs import as_id
from kilowatch import fleet
from kilowatch.accounts import users
from kilowatch.billing import tariff_admin, tariff_store, tariffs
from kilowatch.billing.tariffs import TariffError
from kilowatch.ids import parse_id

dash.register_page(__name__, path="/admin/tariffs", name="Tariffs", title="Tariffs · Kilowatch",
                   roles=ADMIN_ROLES, menu="admin", order=30)

GRID_KINDS = ("energy", "demand", "flat")
SETTINGS = ("currency", "compensation", "netting", "export_rate", "fixed_amount", "fixed_per")
SETTING_IDS = {name: f"tariffs-{name.replace('_', '-')}" for name in SETTINGS}


def layout(site=None, **_query) -> html.Div:
    """Show the company picker, the tariff list, import, editor and site assignment."""
    with connection() as conn:
        companies = users.administered_companies(conn, current_scope())
    site = str(parse_id(site)) if parse_id(site) is not None else None
    return html.Div([
        html.H1("Tariffs", className="h4 mb-3"),
        admin.company_select("tariffs-company", companies),
        html.Div(id="tariffs-message"),
        dbc.Row(className="g-3", children=[
            dbc.Col(lg=5, children=[tariff_cards.card("Tariffs", html.Div(id="tariffs-list-slot")),
                                    dbc.Row(className="g-3", children=[
                                        dbc.Col(tariff_cards.import_card(), md=7),
                                        dbc.Col(tariff_cards.new_card(), md=5)])]),
            dbc.Col(lg=7, children=[tariff_cards.assign_card(site)]),
        ]),
        tariff_cards.editor_card(),
        dcc.Store(id="tariffs-changed", data=0),
        dcc.Store(id="tariffs-grids"),
    ])


@guarded_callback(Output("tariffs-list-slot", "children"), Output("tariffs-selected", "options"),
                  Output("tariffs-assign-tariff", "options"), Output("tariffs-site", "options"),
                  Output("tariffs-selected", "value"),
                  Input("tariffs-company", "value"), Input("tariffs-changed", "data"),
                  roles=ADMIN_ROLES)
def show_tariffs(company_id, _changed):
    """List the chosen company's tariffs and sites (another company: nothing chosen yet)."""
    try:
        company_id = admin.as_id(company_id, "company")
    except users.AccountError as error:
        return admin.failure(error), [], [], [], None
    scope = current_scope()
    with connection() as conn:
        sites = tariff_admin.assignable_sites(conn, scope, company_id)
        rows = tariff_store.list_tariffs(conn, scope, company_id)
    options = [{"label": row["name"], "value": str(row["id"])} for row in rows]
    selected = None if ctx.triggered_id == "tariffs-company" else no_update
    return (tariff_editor.tariff_list(rows), options, options,
            [{"label": site["name"], "value": str(site["id"])} for site in sites], selected)


@guarded_callback(
    output={"settings": {name: Output(SETTING_IDS[name], "value") for name in SETTINGS},
            "rows": {kind: Output(f"tariffs-{kind}-grid", "rowData") for kind in GRID_KINDS},
            "months": Output("tariffs-flat-months", "rowData"),
            "grids": Output("tariffs-grids", "data"),
            "note": Output("tariffs-editor-note", "children"),
            "assign": Output("tariffs-assign-tariff", "value")},
    inputs={"selected": Input("tariffs-selected", "value")}, roles=ADMIN_ROLES)
def load_tariff(selected):
    """Fill the editor with the chosen tariff (a blank starting tariff when none is chosen)."""
    if selected:
        tariff_id = as_id(selected)
        with connection() as conn:
            row = tariff_admin.managed_tariff(conn, current_scope(), tariff_id)
        structure, note = row["structure"], (
            f"Editing {row['name']}; last changed {row['updated_at']:%Y-%m-%d %H:%M} UTC.")
    else:
        structure, note = tariff_forms.default_structure(), "Choose a tariff, or create one."
    return {"settings": tariff_forms.settings_of(structure),
            "rows": {"energy": tariff_forms.energy_rows(structure),
                     "demand": tariff_forms.demand_rows(structure, "demand"),
                     "flat": tariff_forms.demand_rows(structure, "flat_demand")},
            "months": [tariff_forms.flat_months_row(structure)],
            "grids": tariff_forms.schedules(structure), "note": note,
            "assign": selected or no_update}


def _register_row_editing(kind: str) -> None:
    blank = ({"period": None, "label": None, "rate": None, "max_kwh": None, "tier_basis": None,
              "sell": None} if kind == "energy" else
             {"period": None, "label": None, "rate": None, "max_kw": None})

    @guarded_callback(Output(f"tariffs-{kind}-grid", "rowTransaction"),
                      Output(f"tariffs-{kind}-grid", "deleteSelectedRows"),
                      Input(f"tariffs-{kind}-add", "n_clicks"),
                      Input(f"tariffs-{kind}-remove", "n_clicks"),
                      State(f"tariffs-{kind}-grid", "rowData"),
                      roles=ADMIN_ROLES, prevent_initial_call=True)
    def edit_rows(_add, _remove, rows):
        """Add an empty rate row (next period number) or remove the selected rows."""
        if ctx.triggered_id == f"tariffs-{kind}-remove":
            return no_update, True
        labels = tariff_forms.period_labels(rows if isinstance(rows, list) else [])
        return {"add": [{**blank, "period": max(labels, default=-1) + 1}]}, no_update

    edit_rows.__name__ = f"edit_{kind}_rows"


for _kind in GRID_KINDS:
    _register_row_editing(_kind)


@guarded_callback(
    output=Output("tariffs-grids", "data", allow_duplicate=True),
    inputs={"clicks": {name: Input(f"tariffs-grid-{name}", "clickData")
                       for name in tariff_grid.SCHEDULES},
            "boxes": {name: Input(f"tariffs-grid-{name}", "selectedData")
                      for name in tariff_grid.SCHEDULES},
            "apply": Input("tariffs-block-apply", "n_clicks"),
            "copy": Input("tariffs-copy-weekend", "n_clicks")},
    state={"grids": State("tariffs-grids", "data"),
           "periods": {"energy": State("tariffs-paint-energy", "value"),
                       "demand": State("tariffs-paint-demand", "value")},
           "block": {"schedule": State("tariffs-block-schedule", "value"),
                     "days": State("tariffs-block-days", "value"),
                     "month_from": State("tariffs-block-month-from", "value"),
                     "month_to": State("tariffs-block-month-to", "value"),
                     "hour_from": State("tariffs-block-hour-from", "value"),
                     "hour_to": State("tariffs-block-hour-to", "value")}},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def paint(clicks, boxes, apply, copy, grids, periods, block):
    """Set the clicked, selected or chosen block of cells to the chosen period."""
    if not isinstance(grids, dict) or not all(isinstance(grids.get(n), list)
                                              for n in tariff_grid.SCHEDULES):
        raise PreventUpdate
    trigger = ctx.triggered_id or ""
    grids = dict(grids)
    if trigger == "tariffs-copy-weekend":
        grids["energy_weekend"] = [list(row) for row in grids["energy_weekday"]]
        grids["demand_weekend"] = [list(row) for row in grids["demand_weekday"]]
        return grids
    targets, cells = _targets(trigger, clicks, boxes, block)
    kind = targets[0].split("_")[0] if targets else None
    period = tariff_forms.number((periods or {}).get(kind)) if kind else None
    if not cells or not isinstance(period, float) or not period.is_integer() or period < 0:
        raise PreventUpdate
    for name in targets:
        grids[name] = tariff_grid.paint(grids[name], cells, int(period))
    return grids


def _targets(trigger: str, clicks: dict, boxes: dict, block: dict) -> tuple[list[str], list]:
    """Return the schedules and cells a paint action applies to."""
    if trigger == "tariffs-block-apply":
        try:
            cells = tariff_grid.block(int(block["month_from"]), int(block["month_to"]),
                                      int(block["hour_from"]), int(block["hour_to"]))
        except (TypeError, ValueError, KeyError):
            return [], []
        kind = "demand" if block.get("schedule") == "demand" else "energy"
        days = block.get("days") if block.get("days") in ("weekday", "weekend") else None
        return [f"{kind}_{d}" for d in ((days,) if days else ("weekday", "weekend"))], cells
    name = trigger.removeprefix("tariffs-grid-")
    if name not in tariff_grid.SCHEDULES:
        return [], []
    prop = ctx.triggered[0]["prop_id"].rsplit(".", 1)[-1] if ctx.triggered else ""
    if prop == "selectedData":
        return [name], tariff_grid.cells_from_selection(boxes.get(name))
    return [name], tariff_grid.cells_from_click(clicks.get(name))


@guarded_callback(
    output={"figures": {name: Output(f"tariffs-grid-{name}", "figure")
                        for name in tariff_grid.SCHEDULES},
            "energy_options": Output("tariffs-paint-energy", "options"),
            "demand_options": Output("tariffs-paint-demand", "options")},
    inputs={"grids": Input("tariffs-grids", "data"),
            "rows": {kind: Input(f"tariffs-{kind}-grid", "virtualRowData")
                     for kind in ("energy", "demand")}},
    roles=ADMIN_ROLES)
def draw_grids(grids, rows):
    """Draw the four schedules with their period labels, and the period pickers."""
    if not isinstance(grids, dict):
        raise PreventUpdate
    labels = {kind: tariff_forms.period_labels(rows.get(kind) if isinstance(rows.get(kind), list)
                                               else []) for kind in ("energy", "demand")}
    figures = {}
    for name in tariff_grid.SCHEDULES:
        table = grids.get(name)
        if not _is_table(table):
            raise PreventUpdate
        figures[name] = tariff_grid.schedule_figure(table, labels[name.split("_")[0]],
                                                    tariff_grid.SCHEDULE_TITLES[name])

    def options(kind):
        return [{"label": f"{n}" + (f" · {label}" if label else ""), "value": n}
                for n, label in labels[kind].items()]

    return {"figures": figures, "energy_options": options("energy"),
            "demand_options": options("demand")}


def _is_table(table) -> bool:
    return (isinstance(table, list) and len(table) == 12
            and all(isinstance(row, list) and len(row) == 24 for row in table)
            and all(isinstance(v, int) and not isinstance(v, bool) for row in table
                    for v in row))


# --- actions: save, create, import, assign ------------------------------------------------------


def _save(conn, scope, form: dict):
    tariff_id = admin.as_id(form["selected"], "tariff")
    structure = tariff_forms.build_structure(form["settings"], form["energy"], form["demand"],
                                             form["flat"], form["months"], form["grids"])
    tariff = tariffs.parse(structure)
    stale = tariff_store.update_tariff(conn, scope, tariff_id, tariff)
    extra = f" {stale} stored bill(s) will be recomputed." if stale else ""
    return admin.success(f"Tariff saved ({tariffs.describe(tariff)}).{extra}"), no_update


def _create(conn, scope, form: dict):
    company_id = admin.as_id(form["company"], "company")
    tariff = tariffs.parse(tariff_forms.default_structure())
    name = text(form["new_name"], 200).strip()
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company_id, name=name,
                                           tariff=tariff)
    return admin.success(f"Tariff {name} created: paint its periods and set its rates, "
                         "then save."), str(tariff_id)


def _import(conn, scope, form: dict):
    company_id = admin.as_id(form["company"], "company")
    document = tariff_admin.decode_upload(form["contents"], form["filename"])
    export_rate = tariff_forms.number(form["export_rate"]) or 0.0
    if not isinstance(export_rate, float):
        raise TariffError(f"export rate: expected a number, got {form['export_rate']!r}")
    tariff_id, name, tariff = tariff_admin.import_tariff(
        conn, scope, company_id=company_id, document=document, name=text(form["name"], 200),
        label=text(form["label"], 200).strip() or None,
        currency=(text(form["currency"], 10).strip() or "USD").upper(), export_rate=export_rate,
        fallback_name=text(form["filename"], 200).removesuffix(".json") or "Imported tariff")
    return admin.success(f"Imported {name} ({tariffs.describe(tariff)})."), str(tariff_id)


def _assign(conn, scope, form: dict):
    site_id = admin.as_id(form["site"], "site")
    tariff_id = admin.as_id(form["tariff"], "tariff")
    valid_from = _date(form["valid_from"], "from")
    if valid_from is None:
        raise TariffError("from: choose the first day of the assignment")
    valid_to = _date(form["valid_to"], "to")
    tariff_store.assign_tariff(conn, scope, site_id=site_id, tariff_id=tariff_id,
                               valid_from=valid_from, valid_to=valid_to)
    site = fleet.get_site(conn, scope, site_id)
    link = dcc.Link("See its savings", href=f"/site/{site_id}/savings",
                    id="tariffs-savings-link", className="alert-link ms-1")
    until = f" to {valid_to}" if valid_to else ""
    return admin.success(f"{site['name']} uses this tariff from {valid_from}{until}; its bills "
                         "are recomputed.", link), no_update


def _date(value, field: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise TariffError(f"{field}: {str(value)[:40]!r} is not a date like 2026-03-01") from None


def _failure(error: Exception) -> dbc.Alert:
    # Not capitalised: the message starts with the faulty field's exact name.
    return dbc.Alert(str(error), color="danger", dismissable=True, id="tariffs-error")


ACTIONS = {"tariffs-save": _save, "tariffs-create": _create, "tariffs-upload": _import,
           "tariffs-assign": _assign}


@guarded_callback(
    output=[Output("tariffs-message", "children"), Output("tariffs-changed", "data"),
            Output("tariffs-selected", "value", allow_duplicate=True)],
    inputs={"clicks": [Input("tariffs-save", "n_clicks"), Input("tariffs-create", "n_clicks"),
                       Input("tariffs-upload", "contents"), Input("tariffs-assign", "n_clicks")]},
    state={"form": {
        "company": State("tariffs-company", "value"),
        "selected": State("tariffs-selected", "value"),
        "settings": {name: State(SETTING_IDS[name], "value") for name in SETTINGS},
        "energy": State("tariffs-energy-grid", "rowData"),
        "demand": State("tariffs-demand-grid", "rowData"),
        "flat": State("tariffs-flat-grid", "rowData"),
        "months": State("tariffs-flat-months", "rowData"),
        "grids": State("tariffs-grids", "data"),
        "new_name": State("tariffs-new-name", "value"),
        "filename": State("tariffs-upload", "filename"),
        "name": State("tariffs-import-name", "value"),
        "currency": State("tariffs-import-currency", "value"),
        "export_rate": State("tariffs-import-export-rate", "value"),
        "label": State("tariffs-import-label", "value"),
        "site": State("tariffs-site", "value"),
        "tariff": State("tariffs-assign-tariff", "value"),
        "valid_from": State("tariffs-from", "value"),
        "valid_to": State("tariffs-to", "value")},
        "changed": State("tariffs-changed", "data")},
    roles=ADMIN_ROLES, prevent_initial_call=True)
def change_tariffs(clicks, form, changed):
    """Carry out the button's action (or the upload) on the server and say what happened."""
    return admin.run_clicked(ACTIONS, clicks, {**form, "contents": clicks[2]}, changed,
                             errors=(TariffError, fleet.FleetError, users.AccountError),
                             failure=_failure, extra=1)


@guarded_callback(Output("tariffs-history-slot", "children"), Input("tariffs-site", "value"),
                  Input("tariffs-changed", "data"), roles=ADMIN_ROLES)
def show_history(site_id, _changed):
    """List the chosen site's tariff assignments, superseded ones included."""
    if not site_id:
        return html.Div("Choose a site to see its tariff history.", className="small text-muted")
    site_id = as_id(site_id)
    scope = current_scope()
    with connection() as conn:
        site = fleet.get_site(conn, scope, site_id)
        if not scope.may_administer_company(site["company_id"]):
            raise PreventUpdate
        rows = tariff_store.assignments(conn, scope, site_id, history=True)
    return tariff_editor.history_table(rows)
