"""Walk every callback of the real app as a hostile browser: no login, then another tenant's ids.

The walk is built from ``app.callback_map`` (after Dash copied the page
callbacks into it), not from a list of callbacks: every dependency whose
component id says it holds an id (``*-site-id.data``, ``*-site.value``,
``*-sites.value``, ``*-company.value``, ``*-device.value``, ``alarm-id.data``, …,
plus :data:`NAMED` for the few ids that do not say what they hold) is filled
from one side's ids by :data:`FILL`, and the pages router gets every page path
and query that carries an id (read from ``dash.page_registry``). Each request
is sent twice: with the user's own ids (the control, which must reach the data)
and with foreign ids, all at once and one at a time beside the user's own. A
foreign answer must be a refusal (204 or 403) or an answer without any of the
other side's names and serials, never a 500, and afterwards nothing of the
other side has changed.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import secrets
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dash
import psycopg
import pytest

from dashboards.components.billing import tariff_forms
from kilowatch.access import system_scope
from kilowatch.accounts import groups, users
from kilowatch.alarms import rule_store
from kilowatch.schedules import store as schedule_store
from tests.dashboards import alarm_seed, seed
from tests.dashboards.savings_helpers import assign_tou
from tests.dashboards.schedule_helpers import callback_body, signed_in
from tests.dashboards.test_callbacks_guarded import _serve_once

ROOT = system_scope("test")
URDB = Path(__file__).resolve().parents[1] / "kilowatch" / "data" / "urdb_sunridge.json"
SCHEDULE = {"timezone": "Europe/Paris", "default_mode": "idle", "periods": [],
            "exceptions": []}
# Counted by reading the page modules: the server callbacks that take an id from the
# browser (the pages router included). A walk that stops finding them cannot pass.
MIN_ID_CALLBACKS = 40
REFUSED = (204, 403)
# Requests of the sites and devices administration callbacks that carry an id, one per
# trigger (counted by reading admin_sites.py and admin_devices.py).
FLEET_ADMIN_CASES = 13
NOT_ALLOWED = "kw-not-allowed"  # the shell's "Not allowed" page, the pages router's refusal

# Ids whose component name does not say what they hold (the rest: see kind_of).
NAMED = {
    "admin-users-selected.value": "user",
    "admin-groups-selected.value": "group",
    "admin-groups-members.value": "users",
    "tariffs-selected.value": "tariff",
    "alert-rules-editing.data": "rule",
    "alert-rules-grid.cellClicked": "rule-cell",
}
# The last word of a component id that holds an id of that kind.
WORDS = {"site": "site", "sites": "sites", "company": "company", "device": "device",
         "alarm": "alarm", "tariff": "tariff"}
ID_PROPERTIES = ("value", "data")
# Page layout arguments (path or query) that are ids: the argument name less "_id".
PAGE_ARGUMENTS = ("site", "device", "alarm")

# The other inputs, filled so that a callback gets as far as reading its ids.
FORM = {
    "site-range.value": "7d", "explorer-range.value": "7d",
    "explorer-points.value": ["pcs.p", "bms.soc"],
    "savings-peak-which.value": "actual",
    "alarm-history-state.value": "any", "alarm-history-ack.value": "any",
    "admin-users-new-role.value": "viewer", "admin-users-role.value": "viewer",
    "admin-users-name.value": "Walk user", "admin-groups-name.value": "Walk group",
    "tariffs-new-name.value": "Walk tariff", "tariffs-from.value": "2026-01-01",
    "alert-rules-name.value": "Walk rule", "alert-rules-point.value": "bms.t_max",
    "alert-rules-comparison.value": ">", "alert-rules-threshold.value": 50,
    "alert-rules-clear.value": 45, "alert-rules-duration.value": 5,
    "alert-rules-severity.value": "major", "alert-rules-site-mode.value": "chosen",
    "alert-rules-enabled.value": True,
    "notify-enabled.value": True, "notify-severities.value": ["critical"],
    "notify-site-mode.value": "chosen", "notify-when.value": ["raise"],
    "notify-delay.value": 0, "notify-reminders.value": 0,
    "schedule-default-mode.value": "idle", "schedule-comment.value": "walk",
    "schedule-diff-from.value": "1", "schedule-diff-to.value": "2",
    "schedule-restore-revision.value": "1", "alarm-comment.value": "walk comment",
    "admin-devices-model.value": "HES-L", "admin-devices-rated-power-kw.value": 10,
    "admin-devices-capacity-kwh.value": 20, "admin-devices-action.data": "code",
    "admin-sites-timezone.value": "Europe/Paris",
}


def _tariff_form() -> dict:
    """The tariff editor filled with a valid tariff, and a URDB file to upload."""
    structure = tariff_forms.default_structure()
    settings = tariff_forms.settings_of(structure)
    upload = base64.b64encode(URDB.read_bytes()).decode()
    return {**{f"tariffs-{name.replace('_', '-')}.value": value
               for name, value in settings.items()},
            "tariffs-energy-grid.rowData": tariff_forms.energy_rows(structure),
            "tariffs-demand-grid.rowData": tariff_forms.demand_rows(structure, "demand"),
            "tariffs-flat-grid.rowData": tariff_forms.demand_rows(structure, "flat_demand"),
            "tariffs-flat-months.rowData": [tariff_forms.flat_months_row(structure)],
            "tariffs-grids.data": tariff_forms.schedules(structure),
            "tariffs-upload.contents": f"data:application/json;base64,{upload}",
            "tariffs-upload.filename": URDB.name}


FORM.update(_tariff_form())
FORM["savings-peaks.data"] = {"peaks": {"actual": [
    1.0, (datetime.now(UTC) - timedelta(days=1)).isoformat()]}}
# Inputs whose right value depends on the callback: the walk tries each in turn.
CHOICES = {"site-tabs.active_tab": ["power", "battery", "energy", "health", "plan"]}


@dataclasses.dataclass(frozen=True)
class Side:
    """The ids of one side of the walk (the user's own, or foreign), and its telltale names."""

    site: int
    company: int
    device: int
    alarm: int
    tariff: int
    user: int
    group: int
    rule: int
    names: tuple[str, ...]


def _fill(side: Side, kind: str):
    """Return the value a browser would send for an id of ``kind`` (the explicit table)."""
    return {
        "site": side.site, "sites": [side.site], "company": str(side.company),
        "device": str(side.device), "alarm": side.alarm, "tariff": str(side.tariff),
        "user": str(side.user), "users": [side.user], "group": str(side.group),
        "rule": side.rule, "rule-cell": {"rowId": str(side.rule), "colId": "name"},
    }[kind]


def kind_of(dependency: dict) -> str | None:
    """Say which kind of id a callback dependency holds (None: not an id)."""
    component, prop = str(dependency["id"]), dependency["property"]
    if f"{component}.{prop}" in NAMED:
        return NAMED[f"{component}.{prop}"]
    if prop not in ID_PROPERTIES or component.startswith("{"):
        return None
    return WORDS.get(component.removesuffix("-id").rsplit("-", 1)[-1])


def _name(dependency: dict) -> str:
    return f"{dependency['id']}.{dependency['property']}"


def _other_value(dependency: dict):
    name = _name(dependency)
    if name in FORM:
        return FORM[name]
    if dependency["property"] in ("n_clicks", "n_intervals"):
        return 1
    if name.endswith("-changed.data"):
        return 1
    if name == "admin-users-email.value":
        return f"walk-{secrets.token_hex(4)}@a.example.com"
    if name == "admin-devices-serial.value":  # a new device each time the own ids are sent
        return f"WALKNEW-{secrets.token_hex(4)}"
    return None


# --- seeding ------------------------------------------------------------------------------------


def _make_spares(conn, company_id: int, site_id: int, label: str) -> dict:
    """A user, group and alert rule the walk may change or delete."""
    token = secrets.token_hex(4)
    user = users.create_user(conn, ROOT, email=f"spare-{token}@{label}.example.com",
                             role="viewer", company_id=company_id, display_name="Spare",
                             password_hash="!", must_change_password=False)
    group = groups.create_group(conn, ROOT, company_id=company_id, name=f"Spare {token}")
    groups.grant_site(conn, ROOT, group, site_id)
    rule = rule_store.create_rule(conn, ROOT, company_id, {
        "name": f"{label} rule {token}", "point": "bms.t_max", "comparison": ">",
        "threshold": 60, "clear_threshold": 55, "severity": "major", "all_sites": True})
    return {"user": user, "group": group, "rule": rule}


@dataclasses.dataclass
class World:
    """What the walk needs: a database connection and each side's ids."""

    conn: psycopg.Connection
    tenants: object
    alarms: alarm_seed.SeededAlarms
    tariff_a: int
    tariff_b: int

    foreign: dict = dataclasses.field(default_factory=dict)

    def side(self, where: str) -> Side:
        """Return ids of one side: "a" (site 1 of A, fresh spares each time), "a2" or "b"."""
        if where != "a":  # a foreign side must not change, so it is made once
            if where not in self.foreign:
                self.foreign[where] = self._side(where)
            return self.foreign[where]
        return self._side(where)

    def _side(self, where: str) -> Side:
        a, b = self.tenants.a, self.tenants.b
        if where == "b":
            spares = _make_spares(self.conn, b.id, b.sites[0], "Globex")
            return Side(site=b.sites[0], company=b.id, device=self.alarms.device_b1,
                        alarm=self.alarms.critical_b1, tariff=self.tariff_b, **spares,
                        names=("Company B", "WALK-B1", "Globex", "@b.example.com"))
        spares = _make_spares(self.conn, a.id, a.sites[0], "Walk")
        if where == "a2":
            return Side(site=a.sites[1], company=a.id, device=self.alarms.device_a2,
                        alarm=self.alarms.critical_a2, tariff=self.tariff_a, **spares,
                        names=("Company A site 2", "WALK-A2"))
        return Side(site=a.sites[0], company=a.id, device=self.alarms.device_a1,
                    alarm=self.alarms.major_a1, tariff=self.tariff_a, **spares,
                    names=("Company A site 1", "WALK-A1"))


@pytest.fixture(scope="module")
def world(app, tenants, settings):
    """Devices, history, live values, alarms, schedules, tariffs and rules on both companies."""
    _serve_once(app, tenants)
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        seeded = alarm_seed.seed_alarms(conn, tenants, prefix="WALK")
        for device in (seeded.device_a1, seeded.device_a2, seeded.device_b1):
            seed.seed_history(conn, device, days=8)
            seed.publish_live(device, seed.live_values())
        for site_id in (*tenants.a.sites, tenants.b.sites[0]):
            for comment in ("first", "Globex second" if site_id in tenants.b.sites else "second"):
                schedule_store.save_revision(conn, ROOT, site_id, SCHEDULE, comment=comment)
        first_of_year = date(date.today().year, 1, 1)
        tariff_a = assign_tou(conn, tenants.a.id, tenants.a.sites[0], first_of_year, "Walk TOU")
        tariff_b = assign_tou(conn, tenants.b.id, tenants.b.sites[0], first_of_year,
                              "Globex TOU")
        yield World(conn=conn, tenants=tenants, alarms=seeded, tariff_a=tariff_a,
                    tariff_b=tariff_b)


# --- building the walk --------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    """One request to send with the user's own ids and with foreign ones."""

    key: str
    entry: dict
    label: str
    trigger: str | None
    fixed: dict  # values that are neither ids nor choices
    ids: dict  # "id.property" → kind


def _plain(dependencies) -> list[dict]:
    return [d for d in dependencies if not str(d["id"]).startswith("{")]


def _server_callbacks(app) -> list[tuple[str, dict]]:
    return [(key, entry) for key, entry in app.callback_map.items() if entry.get("callback")]


def _page_cases(key: str, entry: dict) -> list[Case]:
    """The router callback once per page whose path or query carries an id."""
    found = []
    for page in dash.page_registry.values():
        template = page.get("path_template") or page["path"]
        layout = sys.modules[page["module"]].layout  # the shell wraps page["layout"]
        arguments = [p for p in inspect.signature(layout).parameters
                     if p.removesuffix("_id") in PAGE_ARGUMENTS]
        if arguments:
            found.append(Case(key, entry, f"page {template}", "_pages_location.pathname",
                              {"template": template},
                              {argument: argument.removesuffix("_id") for argument in arguments}))
    return found


def walk_cases(app) -> list[Case]:
    """Every server callback with an id among its inputs and states, once per trigger."""
    cases = []
    for key, entry in _server_callbacks(app):
        if "_pages_location.pathname" in {_name(d) for d in entry["inputs"]}:
            cases += _page_cases(key, entry)
            continue
        dependencies = entry["inputs"] + entry["state"]
        ids = {_name(d): kind_of(d) for d in dependencies if kind_of(d)}
        if not ids:
            continue
        fixed = {_name(d): _other_value(d) for d in _plain(dependencies)
                 if _name(d) not in ids}
        for trigger in [_name(d) for d in _plain(entry["inputs"])] or [None]:
            cases.append(Case(key, entry, key, trigger, fixed, ids))
    return cases


def _page_values(case: Case, own: Side, foreign: Side | None, only: str | None) -> dict:
    path, query = case.fixed["template"], {}
    for argument, kind in case.ids.items():
        side = foreign if foreign and only in (None, argument) else own
        value = {"site": side.site, "device": side.device, "alarm": side.alarm}[kind]
        if f"<{argument}>" in path:
            path = path.replace(f"<{argument}>", str(value))
        else:
            query[argument] = value
    search = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return {"_pages_location.pathname": path, "_pages_location.search": search}


def case_values(case: Case, own: Side, foreign: Side | None = None,
                only: str | None = None) -> dict:
    """The request's values: own ids, foreign ids (all, or ``only`` that one), the rest fixed."""
    if "template" in case.fixed:
        return _page_values(case, own, foreign, only)
    values = dict(case.fixed)
    for name, kind in case.ids.items():
        side = foreign if foreign and only in (None, name) else own
        values[name] = _fill(side, kind)
    return values


def post(client, case: Case, values: dict):
    """Post one case as the browser does; return the response."""
    body = callback_body(case.key, case.entry, values, triggered=case.trigger)
    return client.post("/_dash-update-component", json=body)


def _choices(case: Case) -> list[dict]:
    names = {_name(d) for d in case.entry["inputs"] + case.entry["state"]}
    combos = [{}]
    for name, options in CHOICES.items():
        if name in names:
            combos = [{**combo, name: option} for combo in combos for option in options]
    return combos


def _text(response) -> str:
    return response.get_data(as_text=True)


def leaked(text: str, side: Side) -> list[str]:
    """Return the telltale names of ``side`` found in a response text."""
    decoded = json.dumps(json.loads(text), ensure_ascii=False) if text.startswith("{") else text
    return [name for name in side.names if name.lower() in decoded.lower()]


@dataclasses.dataclass
class Report:
    """What a walk saw."""

    callbacks: set[str] = dataclasses.field(default_factory=set)
    reached: set[str] = dataclasses.field(default_factory=set)  # own ids answered 200
    refused: set[str] = dataclasses.field(default_factory=set)  # reached, foreign refused
    refused_pages: set[str] = dataclasses.field(default_factory=set)  # router cases refused
    shown_own: int = 0  # own answers that named the own side
    failures: list[str] = dataclasses.field(default_factory=list)
    answered: list[str] = dataclasses.field(default_factory=list)  # foreign, 200, nothing leaked
    # (key, trigger) whose own-id control answered 200, and those of them whose request
    # with every id foreign at once was refused.
    reached_cases: set[tuple] = dataclasses.field(default_factory=set)
    refused_all: set[tuple] = dataclasses.field(default_factory=set)


def _check_foreign(report: Report, case: Case, response, foreign: Side, what: str) -> bool:
    text = _text(response)
    if response.status_code not in (200, *REFUSED):
        report.failures.append(f"{case.label} [{case.trigger}] {what}: {response.status_code} "
                               f"{text[:200]}")
        return False
    names = leaked(text, foreign) if response.status_code == 200 else []
    if names:
        report.failures.append(f"{case.label} [{case.trigger}] {what}: leaked {names}")
    elif response.status_code == 200:
        report.answered.append(f"{case.label} [{case.trigger}] {what}")
    return response.status_code in REFUSED or NOT_ALLOWED in text


def walk(client, world: World, own_at: str, foreign_at: str, cases: list[Case]) -> Report:
    """Send every case with own ids (control), then foreign ids all at once and one at a time."""
    report = Report()
    for case in cases:
        report.callbacks.add(case.key)
        for choice in _choices(case):
            own, foreign = world.side(own_at), world.side(foreign_at)
            case_with = dataclasses.replace(case, fixed={**case.fixed, **choice})
            control = post(client, case_with, case_values(case_with, own))
            if control.status_code >= 500:
                report.failures.append(f"{case.label} [{case.trigger}] own ids: "
                                       f"{control.status_code}")
            if control.status_code == 200:
                report.reached.add(case.key)
                report.reached_cases.add((case.key, case.trigger))
                report.shown_own += bool(leaked(_text(control), own))
            alone = list(case.ids) if len(case.ids) > 1 else []
            refused = True
            for only in [None, *alone]:
                response = post(client, case_with, case_values(case_with, own, foreign, only))
                this = _check_foreign(report, case, response, foreign, f"foreign {only or 'ids'}")
                if only is None and this:
                    report.refused_all.add((case.key, case.trigger))
                refused &= this
            if control.status_code == 200 and refused:
                report.refused.add(case.key)
                if "template" in case.fixed:
                    report.refused_pages.add(case.fixed["template"])
    return report


# --- what must not change ----------------------------------------------------------------------

SNAPSHOT = {
    "users": "SELECT id, email, role, active, password_hash, must_change_password, company_id "
             "FROM users WHERE company_id = ANY(%(companies)s) ORDER BY id",
    "groups": "SELECT id, name FROM groups WHERE company_id = ANY(%(companies)s) ORDER BY id",
    "members": "SELECT group_id, user_id FROM group_members "
               "WHERE company_id = ANY(%(companies)s) ORDER BY 1, 2",
    "grants": "SELECT group_id, site_id FROM group_sites "
              "WHERE company_id = ANY(%(companies)s) OR site_id = ANY(%(sites)s) ORDER BY 1, 2",
    "tariffs": "SELECT id, name, structure::text, updated_at FROM tariffs "
               "WHERE company_id = ANY(%(companies)s) ORDER BY id",
    "assignments": "SELECT st.site_id, st.tariff_id, st.valid_from, st.superseded_at "
                   "FROM site_tariffs st JOIN tariffs t ON t.id = st.tariff_id "
                   "WHERE st.site_id = ANY(%(sites)s) OR t.company_id = ANY(%(companies)s) "
                   "ORDER BY st.id",
    "rules": "SELECT r.id, r.name, r.enabled, r.threshold, r.all_sites, "
             "array(SELECT site_id FROM alert_rule_sites s WHERE s.rule_id = r.id ORDER BY 1) "
             "FROM alert_rules r WHERE r.company_id = ANY(%(companies)s) "
             "OR r.id IN (SELECT rule_id FROM alert_rule_sites WHERE site_id = ANY(%(sites)s)) "
             "ORDER BY r.id",
    "revisions": "SELECT site_id, revision, comment FROM schedule_revisions "
                 "WHERE site_id = ANY(%(sites)s) ORDER BY 1, 2",
    "alarms": "SELECT a.id, a.acknowledged_at, (SELECT count(*) FROM alarm_events e "
              "WHERE e.alarm_id = a.id AND e.kind IN ('acknowledged', 'commented')) "
              "FROM alarms a WHERE a.site_id = ANY(%(sites)s) ORDER BY a.id",
    "notified": "SELECT user_id, site_id FROM notification_sites "
                "WHERE site_id = ANY(%(sites)s) ORDER BY 1, 2",
    "sites": "SELECT * FROM sites WHERE id = ANY(%(sites)s) OR company_id = ANY(%(companies)s) "
             "ORDER BY id",
    "devices": "SELECT id, serial, site_id, activation_code_hash, activated_at, revoked_at, "
               "credential_nonce FROM devices WHERE site_id = ANY(%(sites)s) "
               "OR site_id IN (SELECT id FROM sites WHERE company_id = ANY(%(companies)s)) "
               "ORDER BY id",
}


def snapshot(conn, *, sites: list[int], companies: list[int]) -> dict:
    """Return every row of these sites and companies that a callback could change."""
    params = {"sites": sites, "companies": companies}
    return {name: conn.execute(query, params).fetchall() for name, query in SNAPSHOT.items()}


def _foreign_rows(world: World, foreign_at: str) -> dict:
    tenants = world.tenants
    if foreign_at == "b":
        return snapshot(world.conn, sites=tenants.b.sites, companies=[tenants.b.id])
    return snapshot(world.conn, sites=[tenants.a.sites[1]], companies=[])


def _changed(before: dict, after: dict) -> list[str]:
    return [name for name in before if before[name] != after[name]]


# --- the tests ----------------------------------------------------------------------------------


def test_no_callback_answers_without_a_login(app, world, client):
    keys = list(app.callback_map)
    assert len(keys) >= 50, "too few callbacks found: the walk would prove nothing"
    foreign = world.side("b")
    failures = []
    for key in keys:
        entry = app.callback_map[key]
        values = {_name(d): _fill(foreign, kind_of(d)) if kind_of(d) else _other_value(d)
                  for d in _plain(entry["inputs"] + entry["state"])}
        values["_pages_location.pathname"] = f"/site/{foreign.site}"
        response = client.post("/_dash-update-component", json=callback_body(key, entry, values))
        if response.status_code != 401 or response.get_json() != {"error": "login required"}:
            failures.append(f"{key}: {response.status_code} {_text(response)[:200]}")
    assert not failures, "\n".join(failures)


# min_refused: callbacks whose own-id control answered with data and whose every
# foreign-id request was refused (204, 403 or the "Not allowed" page), as observed; the
# others answer with a message or an empty list, or ignore the id for some trigger.
@pytest.mark.parametrize(("account", "own_at", "foreign_at", "min_refused"), [
    ("admin", "a", "b", 34), ("operator", "a", "b", 24), ("operator", "a", "a2", 24)])
def test_no_callback_gives_data_of_ids_outside_the_users_scope(app, world, account, own_at,
                                                               foreign_at, min_refused):
    client = signed_in(app, getattr(world.tenants.a, account))
    cases = walk_cases(app)
    world.side(foreign_at)
    before = _foreign_rows(world, foreign_at)
    report = walk(client, world, own_at, foreign_at, cases)
    after = _foreign_rows(world, foreign_at)

    assert not report.failures, "\n".join(report.failures)
    assert _changed(before, after) == [], "the walk changed the other side's data"
    assert len(report.callbacks) >= MIN_ID_CALLBACKS, sorted(report.callbacks)
    # The control reached the data, so a refusal means the foreign id was refused …
    assert len(report.refused) >= min_refused, sorted(report.reached - report.refused)
    # … every page with an id in its path shows "Not allowed" for a foreign one …
    templated = {case.fixed["template"] for case in cases
                 if "<" in case.fixed.get("template", "")}
    assert len(templated) >= 4
    assert report.refused_pages >= templated
    # … and the same search finds the user's own names in their own answers.
    assert report.shown_own >= 15
    if account == "admin":  # sites and devices administration: every foreign id is refused
        fleet_admin = {(key, trigger) for key, trigger in report.reached_cases
                       if key.strip(".").startswith(("admin-devices", "admin-sites"))}
        assert len(fleet_admin) >= FLEET_ADMIN_CASES, sorted(fleet_admin)
        assert fleet_admin <= report.refused_all, sorted(fleet_admin - report.refused_all)


def test_the_walk_finds_ids_of_every_kind(app):
    kinds = {kind for case in walk_cases(app) for kind in case.ids.values()}
    assert kinds >= {"site", "sites", "company", "device", "alarm", "tariff", "user", "users",
                     "group", "rule", "rule-cell"}


def test_kind_of_reads_the_component_name():
    assert kind_of({"id": "schedule-site-id", "property": "data"}) == "site"
    assert kind_of({"id": "notify-sites", "property": "value"}) == "sites"
    assert kind_of({"id": "tariffs-assign-tariff", "property": "value"}) == "tariff"
    assert kind_of({"id": "site-id", "property": "data"}) == "site"
    assert kind_of({"id": "site-tabs", "property": "active_tab"}) is None
    assert kind_of({"id": "admin-groups-sites", "property": "options"}) is None

