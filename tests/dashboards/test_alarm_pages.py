"""Alarm pages: active list, history, one alarm, alert rules, notification settings — their
layouts and every callback, for the right users and for forged requests."""

from __future__ import annotations

import csv
import io
import json

import psycopg
import pytest

from kilowatch.access import system_scope
from kilowatch.accounts import users
from kilowatch.alarms import events as alarms
from kilowatch.alarms import notifications, rule_store
from tests.dashboards import alarm_seed
from tests.dashboards.conftest import call_callback, login


@pytest.fixture(scope="module")
def seeded(tenants, settings):
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        return alarm_seed.seed_alarms(conn, tenants)


@pytest.fixture
def db(settings):
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        yield conn


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _page(client, app, path: str, search: str = "") -> str:
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": search})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _find(tree, element_id: str, prop: str):
    """Return a property of the component with this id in a layout's JSON."""
    if isinstance(tree, dict):
        props = tree.get("props", {})
        if props.get("id") == element_id:
            return props.get(prop)
        children = list(tree.values())
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = _find(child, element_id, prop)
        if found is not None:
            return found
    return None


def _grid_ids(text: str, grid: str) -> list[int]:
    return [row["id"] for row in _find(json.loads(text), grid, "rowData")]


# ---- active alarms -------------------------------------------------------------------------

def test_active_alarms_most_severe_first_within_the_users_sites(app, tenants, seeded):
    admin = _grid_ids(_page(_as(app, tenants.a.admin), app, "/alarms"), "alarms-grid")
    assert admin == [seeded.critical_a2, seeded.major_a1]
    viewer = _grid_ids(_page(_as(app, tenants.a.viewer), app, "/alarms"), "alarms-grid")
    assert viewer == [seeded.major_a1]
    support = _grid_ids(_page(_as(app, tenants.support), app, "/alarms"), "alarms-grid")
    assert {seeded.critical_a2, seeded.critical_b1, seeded.major_a1} <= set(support)
    assert support.index(seeded.critical_b1) < support.index(seeded.major_a1)


def test_refresh_and_navbar_counts_stay_in_scope(app, tenants, seeded):
    client = _as(app, tenants.a.viewer)
    response = call_callback(client, app, "alarms-grid.rowData", {"alarms-refresh.n_intervals": 1})
    rows = response.get_json()["response"]["alarms-grid"]["rowData"]
    assert [r["id"] for r in rows] == [seeded.major_a1]
    counts = call_callback(client, app, "nav-alarms-counts.children",
                           {"nav-alarms-refresh.n_intervals": 1}).get_data(as_text=True)
    assert "nav-alarms-major" in counts and "nav-alarms-critical" not in counts
    counts = call_callback(_as(app, tenants.a.admin), app, "nav-alarms-counts.children",
                           {"nav-alarms-refresh.n_intervals": 1}).get_data(as_text=True)
    assert "nav-alarms-critical" in counts and "nav-alarms-major" in counts


# ---- history ---------------------------------------------------------------------------------

def _history(client, app, **filters):
    values = {"alarm-history-range.start_date": None, "alarm-history-range.end_date": None,
              "alarm-history-site.value": None, "alarm-history-device.value": None,
              "alarm-history-code.value": None, "alarm-history-severity.value": [],
              "alarm-history-source.value": [], "alarm-history-state.value": "any",
              "alarm-history-ack.value": "any", "alarm-history-min.value": None}
    values.update({f"alarm-history-{k}": v for k, v in filters.items()})
    return call_callback(client, app, "alarm-history-grid.rowData", values)


def _history_ids(response) -> list[int]:
    assert response.status_code == 200
    return [r["id"] for r in response.get_json()["response"]["alarm-history-grid"]["rowData"]]


def test_history_filters(app, tenants, seeded):
    from datetime import UTC, datetime, timedelta

    client = _as(app, tenants.support)
    site = tenants.a.sites[0]
    today = datetime.now(UTC).date()
    week = {"range.start_date": str(today - timedelta(days=6)),
            "range.end_date": str(today)}
    assert _history_ids(_history(client, app, **week, **{"site.value": site,
                                 "severity.value": ["critical"]})) == [seeded.critical_a1]
    assert _history_ids(_history(client, app, **{"site.value": site,
                                 "severity.value": ["critical"]})) == [seeded.critical_a1,
                                                                       seeded.old_a1]
    assert _history_ids(_history(client, app, **{"site.value": site, "min.value": 100})) == [
        seeded.major_a1]  # active for two days; the others lasted 90 and 60 minutes
    assert _history_ids(_history(client, app, **{"site.value": site,
                                 "state.value": "cleared", "code.value": "BMS_OVERTEMP"})) == [
        seeded.critical_a1]
    assert _history_ids(_history(client, app, **{"device.value": seeded.device_b1})) == [
        seeded.critical_b1]
    assert seeded.critical_b1 not in _history_ids(_history(_as(app, tenants.a.admin), app))


@pytest.mark.parametrize("filters", [
    {"site.value": "b"}, {"device.value": "b"}, {"site.value": "b", "device.value": "a1"}])
def test_history_refuses_another_companys_site_and_device(app, tenants, seeded, filters):
    ids = {"b": None, "a1": seeded.device_a1}
    values = {k: (tenants.b.sites[0] if k == "site.value" else seeded.device_b1)
              if v == "b" else ids[v] for k, v in filters.items()}
    assert _history(_as(app, tenants.a.admin), app, **values).status_code == 204


@pytest.mark.parametrize(("filters", "message"), [
    ({"severity.value": ["fatal"]}, "pick values"), ({"min.value": "abc"}, "minutes"),
    ({"range.start_date": "2026-13-45"}, "not a date"), ({"state.value": "odd"}, "pick values"),
    ({"range.start_date": "2026-05-02", "range.end_date": "2026-05-01"}, "after its start"),
    ({"site.value": {"x": 1}}, "site"), ({"site.value": "²"}, "site"),
    ({"device.value": 2**40}, "device")])
def test_history_bad_values_get_a_message(app, tenants, seeded, filters, message):
    response = _history(_as(app, tenants.a.admin), app, **filters)
    assert response.status_code == 200
    assert message in response.get_json()["response"]["alarm-history-error"]["children"]


def test_history_csv_export(app, tenants, seeded):
    values = {"alarm-history-site.value": tenants.a.sites[0],
              "alarm-history-severity.value": ["critical"], "alarm-history-state.value": "any",
              "alarm-history-ack.value": "any", "alarm-history-export.n_clicks": 1}
    response = call_callback(_as(app, tenants.support), app, "alarm-history-download.data",
                             values, triggered="alarm-history-export.n_clicks")
    data = response.get_json()["response"]["alarm-history-download"]["data"]
    assert data["filename"].endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(data["content"])))
    assert [int(r["id"]) for r in rows] == [seeded.critical_a1, seeded.old_a1]
    assert rows[0]["duration_s"] == "5400" and rows[0]["site"] == "Company A site 1"
    assert rows[0]["cleared_utc"].startswith(str(seeded.cleared_at.date()))


def test_device_choices_follow_the_site_in_scope(app, tenants, seeded):
    client = _as(app, tenants.a.admin)
    response = call_callback(client, app, "alarm-history-device.options",
                             {"alarm-history-site.value": tenants.a.sites[0]})
    options = response.get_json()["response"]["alarm-history-device"]["options"]
    assert {"label": "ALM-A1", "value": str(seeded.device_a1)} in options
    assert call_callback(client, app, "alarm-history-device.options",
                         {"alarm-history-site.value": tenants.b.sites[0]}).status_code == 204


# ---- one alarm ---------------------------------------------------------------------------------

def test_alarm_page_shows_facts_chart_and_timeline(app, tenants, seeded):
    text = _page(_as(app, tenants.a.viewer), app, f"/alarms/{seeded.critical_a1}")
    layout = json.loads(text)
    assert "BMS_OVERTEMP" in text and "Cell temperature 62" in text
    figure = _find(layout, "alarm-chart", "figure")
    assert {trace["name"] for trace in figure["data"]} >= {"ALM-A1 bms.t_max", "ALM-A1 pcs.p"}
    assert figure["layout"]["shapes"][0]["fillcolor"]  # the alarm's period is shaded
    timeline = json.dumps(_find(layout, "alarm-timeline", "children"))
    assert "Raised" in timeline and "Cleared" in timeline
    assert '"alarm-ack"' not in text  # viewers do not acknowledge


@pytest.mark.parametrize(("who", "which"), [("a_admin", "critical_b1"), ("a_viewer",
                                            "critical_a2"), ("a_admin", "abc"), ("b_admin",
                                            "critical_a1"), ("a_admin", "²")])
def test_alarm_page_refuses_alarms_outside_the_scope(app, tenants, seeded, who, which):
    account = {"a_admin": tenants.a.admin, "a_viewer": tenants.a.viewer,
               "b_admin": tenants.b.admin}[who]
    alarm_id = getattr(seeded, which, which)
    text = _page(_as(app, account), app, f"/alarms/{alarm_id}")
    assert "kw-not-allowed" in text and "Cell temperature" not in text


def _act(client, app, alarm_id, comment, button="alarm-ack"):
    return call_callback(client, app, "alarm-timeline.children",
                         {"alarm-id.data": alarm_id, "alarm-comment.value": comment,
                          "alarm-ack.n_clicks": 1, "alarm-comment-add.n_clicks": 1},
                         triggered=f"{button}.n_clicks")


def test_operator_acknowledges_and_comments(app, tenants, seeded, db):
    client = _as(app, tenants.a.operator)
    response = _act(client, app, seeded.major_a1, "Grid operator called")
    body = response.get_json()["response"]
    assert "Grid operator called" in json.dumps(body["alarm-timeline"])
    assert body["alarm-ack"]["disabled"] is True
    assert body["alarm-ack-status"]["children"].startswith(
        f"Acknowledged by {tenants.a.operator.email}")
    again = _act(client, app, seeded.major_a1, "twice").get_json()["response"]
    assert "already acknowledged" in again["alarm-feedback"]["children"]
    empty = _act(client, app, seeded.major_a1, "  ", "alarm-comment-add").get_json()["response"]
    assert "write a comment" in empty["alarm-feedback"]["children"]
    forged = _act(client, app, seeded.major_a1, ["x"], "alarm-comment-add").get_json()
    assert "a comment is text" in forged["response"]["alarm-feedback"]["children"]
    _act(client, app, seeded.major_a1, "Fixed by the utility", "alarm-comment-add")
    kinds = [e["kind"] for e in alarms.alarm_events(db, system_scope(), seeded.major_a1)]
    assert kinds[-2:] == ["acknowledged", "commented"]
    audit = db.execute("SELECT actor, action FROM audit_log WHERE target = %s ORDER BY id",
                       (f"alarm:{seeded.major_a1}",)).fetchall()
    assert [(a["actor"], a["action"]) for a in audit] == [
        (tenants.a.operator.email, "alarm.acknowledge"),
        (tenants.a.operator.email, "alarm.comment")]


@pytest.mark.parametrize("which", ["critical_b1", "critical_a2", "abc", "-1", "99999999", "²",
                                   "0", 2**70])
@pytest.mark.parametrize("button", ["alarm-ack", "alarm-comment-add"])
def test_forged_alarm_ids_are_refused(app, tenants, seeded, db, which, button):
    real = isinstance(which, str) and hasattr(seeded, which)
    alarm_id = getattr(seeded, which) if real else which
    response = _act(_as(app, tenants.a.operator), app, alarm_id, "forged", button)
    assert response.status_code == 204
    if real:
        assert alarms.get_alarm(db, system_scope(), alarm_id)["acknowledged_at"] is None
        assert "forged" not in json.dumps(alarms.alarm_events(db, system_scope(), alarm_id),
                                          default=str)


def test_viewers_cannot_acknowledge_and_support_can(app, tenants, seeded):
    assert _act(_as(app, tenants.a.viewer), app, seeded.major_a1, "x").status_code == 403
    response = _act(_as(app, tenants.support), app, seeded.critical_b1, "Support on it")
    assert response.status_code == 200
    assert "Acknowledged by support" in json.dumps(response.get_json())


# ---- alert rules --------------------------------------------------------------------------------

RULE_FORM = {"alert-rules-name.value": "Hot cells", "alert-rules-code.value": "",
             "alert-rules-point.value": "bms.t_max", "alert-rules-comparison.value": ">",
             "alert-rules-threshold.value": 45, "alert-rules-clear.value": 40,
             "alert-rules-duration.value": 5, "alert-rules-severity.value": "critical",
             "alert-rules-site-mode.value": "all", "alert-rules-sites.value": [],
             "alert-rules-enabled.value": True}


@pytest.fixture(scope="module")
def rule_b(tenants, settings):
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        scope = users.build_scope(conn, system_scope("test"), tenants.b.admin.id)
        return rule_store.create_rule(conn, scope, tenants.b.id, {
            "name": "B low SoC", "point": "bms.soc", "comparison": "<", "threshold": 5,
            "clear_threshold": 10, "severity": "major"})


def _save(client, app, company_id, editing=None, button="alert-rules-save", **form):
    values = {**RULE_FORM, **form, "alert-rules-company.value": company_id,
              "alert-rules-editing.data": editing, "alert-rules-changed.data": 0}
    return call_callback(client, app, "alert-rules-message.children", values,
                         triggered=f"{button}.n_clicks")


def test_admin_creates_lists_and_edits_rules(app, tenants, db, rule_b):
    client = _as(app, tenants.a.admin)
    response = _save(client, app, str(tenants.a.id))
    assert "Rule created" in response.get_data(as_text=True)
    listed = call_callback(client, app, "alert-rules-grid.rowData",
                           {"alert-rules-company.value": str(tenants.a.id),
                            "alert-rules-changed.data": 1}).get_json()["response"]
    [row] = listed["alert-rules-grid"]["rowData"]
    assert row["code"] == "HOT_CELLS"
    assert row["condition"] == "bms.t_max > 45 for 5 min, clear below 40"
    form = call_callback(client, app, "alert-rules-name.value",
                         {"alert-rules-grid.cellClicked": {"rowId": row["row_id"]}},
                         triggered="alert-rules-grid.cellClicked").get_json()["response"]
    assert form["alert-rules-name"]["value"] == "Hot cells"
    assert form["alert-rules-editing"]["data"] == int(row["row_id"])
    bad = _save(client, app, str(tenants.a.id), int(row["row_id"]),
                **{"alert-rules-clear.value": 50}).get_data(as_text=True)
    assert "hysteresis" in bad
    ok = _save(client, app, str(tenants.a.id), int(row["row_id"]),
               **{"alert-rules-threshold.value": 50}).get_data(as_text=True)
    assert "Rule saved" in ok
    assert rule_store.get_rule(db, system_scope(), row["row_id"])["threshold"] == 50


def test_rule_callbacks_refuse_another_companys_rules_and_sites(app, tenants, db, rule_b):
    client = _as(app, tenants.a.admin)
    assert call_callback(client, app, "alert-rules-grid.rowData",
                         {"alert-rules-company.value": str(tenants.b.id)}).status_code == 204
    for forged in (str(rule_b), "²", "1.5"):
        assert call_callback(client, app, "alert-rules-name.value",
                             {"alert-rules-grid.cellClicked": {"rowId": forged}},
                             triggered="alert-rules-grid.cellClicked").status_code == 204
    assert _save(client, app, str(tenants.a.id), rule_b).status_code == 204
    assert _save(client, app, str(tenants.a.id), rule_b,
                 button="alert-rules-delete").status_code == 204
    assert _save(client, app, str(tenants.b.id), **{"alert-rules-code.value": "X1"}
                 ).status_code == 204
    assert _save(client, app, str(tenants.a.id), **{
        "alert-rules-code.value": "X2", "alert-rules-site-mode.value": "chosen",
        "alert-rules-sites.value": [tenants.b.sites[0]]}).status_code == 204
    rule = rule_store.get_rule(db, system_scope(), rule_b)
    assert rule["name"] == "B low SoC" and rule["threshold"] == 5
    for account in (tenants.a.operator, tenants.a.viewer, tenants.support):
        assert _save(_as(app, account), app, str(tenants.a.id)).status_code == 403


# ---- notification settings ---------------------------------------------------------------------

def _prefs(client, app, **form):
    values = {"notify-enabled.value": True, "notify-severities.value": ["critical"],
              "notify-site-mode.value": "all", "notify-sites.value": [],
              "notify-when.value": ["raise"], "notify-delay.value": 0,
              "notify-reminders.value": 0, "notify-save.n_clicks": 1, **form}
    return call_callback(client, app, "notify-message.children", values,
                         triggered="notify-save.n_clicks")


def test_users_save_their_own_notification_settings(app, tenants, db):
    client = _as(app, tenants.a.viewer)
    text = _page(client, app, "/account/notifications")
    assert "Company A site 1" in text and "Company A site 2" not in text
    saved = _prefs(client, app, **{"notify-site-mode.value": "chosen",
                                   "notify-sites.value": [tenants.a.sites[0]],
                                   "notify-when.value": ["raise", "clear"],
                                   "notify-delay.value": 10, "notify-reminders.value": 4})
    assert "Saved" in saved.get_data(as_text=True)
    scope = users.build_scope(db, system_scope("test"), tenants.a.viewer.id)
    prefs = notifications.get_preferences(db, scope)
    assert prefs.site_ids == (tenants.a.sites[0],) and prefs.delay_s == 600
    assert prefs.on_clear and prefs.reminder_hours == 4
    assert "at least one severity" in _prefs(client, app, **{
        "notify-severities.value": []}).get_data(as_text=True)
    assert "must be a number" in _prefs(client, app, **{
        "notify-delay.value": "soon"}).get_data(as_text=True)
    for forged in ([tenants.b.sites[0]], [tenants.a.sites[1]]):
        assert _prefs(client, app, **{"notify-site-mode.value": "chosen",
                                      "notify-sites.value": forged}).status_code == 204
    assert notifications.get_preferences(db, scope).site_ids == (tenants.a.sites[0],)
