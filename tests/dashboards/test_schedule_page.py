"""The schedule page through its callbacks, posted as the browser does (forged ones included)."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store
from tests.dashboards.conftest import call_callback
from tests.dashboards.schedule_helpers import (
    draft_values,
    pattern_values,
    post,
    response_json,
    signed_in,
)

ROOT = system_scope("test")
BODY = {"timezone": "Europe/Paris", "default_mode": "idle",
        "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00",
                     "end": "21:00", "mode": "discharge", "power_kw": 40, "soc_min": 20},
                    {"days": ["sat", "sun"], "start": "10:00", "end": "16:00",
                     "mode": "self_consumption", "soc_min": 10, "soc_max": 90}],
        "exceptions": []}


@pytest.fixture(scope="module")
def site(tenants, settings):
    """Company A's first site with a 50 kW storage device and a first revision."""
    import psycopg

    site_id = tenants.a.sites[0]
    serial = f"SCH-{secrets.token_hex(3)}"
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        fleet.register_device(conn, ROOT, site_id=site_id, serial=serial, model="HES-L",
                              rated_power_kw=50, capacity_kwh=100)
        schedule_store.save_revision(conn, ROOT, site_id, BODY, comment="first program")
    yield {"id": site_id, "serial": serial}
    schedule_delivery.publish_retained(
        [(schedule_delivery.schedule_topic(serial, settings), "")], settings=settings)


def _page(app, account, path: str) -> str:
    response = call_callback(signed_in(app, account), app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": ""})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _revisions(conn, site_id) -> int:
    return len(schedule_store.history(conn, ROOT, site_id))


def _save(client, app, site_id, schedule, comment="test"):
    values = {**draft_values(site_id, schedule), "schedule-comment.value": comment,
              "schedule-save.n_clicks": 1}
    return post(client, app, "schedule-message.children", values,
                triggered="schedule-save.n_clicks")


# ---- who sees what --------------------------------------------------------------------------

def test_operator_of_the_site_gets_the_editor(app, tenants, site):
    text = _page(app, tenants.a.operator, f"/site/{site['id']}/schedule")
    assert "schedule-save" in text and "schedule-add-period" in text
    assert "schedule-read-only" not in text
    assert '"value":"17:00"' in text.replace(" ", "")


def test_a_site_without_a_schedule_starts_from_an_empty_week(app, tenants, site):
    client = signed_in(app, tenants.a.admin)
    text = _page(app, tenants.a.admin, f"/site/{tenants.a.sites[1]}/schedule")
    assert "No period: the default mode runs all week." in text and "schedule-save" in text
    history = json.dumps(response_json(post(client, app, "schedule-history.children",
                                            {"schedule-site-id.data": tenants.a.sites[1]})))
    assert "No schedule has been saved for this site yet." in history
    delivery = json.dumps(response_json(post(client, app, "schedule-delivery.children",
                                             {"schedule-site-id.data": tenants.a.sites[1]})))
    assert "No storage device on this site" in delivery


@pytest.mark.parametrize("who", ["viewer", "support"])
def test_readers_get_the_editor_read_only(app, tenants, site, who):
    account = tenants.support if who == "support" else tenants.a.viewer
    text = _page(app, account, f"/site/{site['id']}/schedule")
    assert "schedule-read-only" in text
    assert "schedule-save" not in text and "schedule-add-period" not in text
    layout = json.loads(text)["response"]["_pages_content"]["children"]
    inputs = _find(layout, lambda c: isinstance(c.get("props", {}).get("id"), dict)
                   and c["props"]["id"]["type"].startswith("schedule-period-")
                   and c["type"] in ("Input", "Select"))
    assert inputs and all(c["props"]["disabled"] for c in inputs)


def _find(node, predicate) -> list[dict]:
    found = []
    if isinstance(node, dict):
        if "props" in node and predicate(node):
            found.append(node)
        for value in node.values():
            found += _find(value, predicate)
    elif isinstance(node, list):
        for item in node:
            found += _find(item, predicate)
    return found


@pytest.mark.parametrize("who,site_index", [("operator", 1), ("b_admin", 0), ("b_viewer", 0)])
def test_sites_outside_the_scope_show_not_allowed(app, tenants, site, who, site_index):
    account = {"operator": tenants.a.operator, "b_admin": tenants.b.admin,
               "b_viewer": tenants.b.viewer}[who]
    text = _page(app, account, f"/site/{tenants.a.sites[site_index]}/schedule")
    assert "kw-not-allowed" in text and "schedule-" not in text


def test_a_site_id_that_is_not_a_number_shows_not_allowed(app, tenants):
    text = _page(app, tenants.a.admin, "/site/1%20OR%201=1/schedule")
    assert "kw-not-allowed" in text


# ---- saving ---------------------------------------------------------------------------------

def test_operator_saves_a_new_revision_with_a_comment(app, conn, tenants, site):
    before = _revisions(conn, site["id"])
    changed = {**BODY, "periods": [
        {"days": ["mon"], "start": "18:00", "end": "22:00", "mode": "discharge",
         "power_kw": 45, "soc_min": 15}, *BODY["periods"]]}
    changed["periods"][1] = {**changed["periods"][1], "days": ["tue", "wed", "thu", "fri"]}
    body = response_json(_save(signed_in(app, tenants.a.operator), app, site["id"], changed,
                               "Monday later"))
    assert "Saved revision" in json.dumps(body)
    latest = schedule_store.get_revision(conn, ROOT, site["id"])
    assert _revisions(conn, site["id"]) == before + 1
    assert latest["comment"] == "Monday later" and latest["author"] == tenants.a.operator.email
    mondays = [p for p in latest["body"]["periods"] if "mon" in p["days"]]
    assert [(p["start"], p["end"], p["power_kw"]) for p in mondays] == [("18:00", "22:00", 45)]
    tuesdays = [p for p in latest["body"]["periods"] if p["mode"] == "discharge"
                and "tue" in p["days"]]
    assert tuesdays[0]["days"] == ["tue", "wed", "thu", "fri"]  # rows joined back into one
    assert body["schedule-comment"]["value"] == ""


def test_invalid_save_is_refused_with_the_reasons(app, conn, tenants, site):
    before = _revisions(conn, site["id"])
    bad = {**BODY, "periods": [{"days": ["mon"], "start": "17:00", "end": "21:00",
                                "mode": "discharge", "power_kw": 80, "soc_min": 20}]}
    text = json.dumps(response_json(_save(signed_in(app, tenants.a.admin), app, site["id"], bad)))
    assert "Not saved" in text and "above the site's rated storage power of 50 kW" in text
    assert _revisions(conn, site["id"]) == before


@pytest.mark.parametrize("who", ["viewer", "support"])
def test_forged_save_by_a_reader_is_refused(app, conn, tenants, site, who):
    account = tenants.support if who == "support" else tenants.a.viewer
    before = _revisions(conn, site["id"])
    response = _save(signed_in(app, account), app, site["id"], BODY)
    assert response.status_code == 403
    assert _revisions(conn, site["id"]) == before


def test_forged_save_by_an_operator_of_another_site_is_refused(app, conn, tenants, site):
    other = tenants.a.sites[1]  # same company, not granted to the operator
    before = _revisions(conn, other)
    response = _save(signed_in(app, tenants.a.operator), app, other, BODY)
    assert response.status_code == 204
    assert _revisions(conn, other) == before


@pytest.mark.parametrize("who", ["operator", "admin"])
def test_forged_save_on_another_companys_site_is_refused(app, conn, tenants, site, who):
    before = _revisions(conn, site["id"])
    response = _save(signed_in(app, getattr(tenants.b, who)), app, site["id"], BODY)
    assert response.status_code == 204
    assert _revisions(conn, site["id"]) == before


@pytest.mark.parametrize("site_id", ["1 OR 1=1", None, True, [1], {"id": 1}, -3, "²",
                                     "99999999999", 2**40])
def test_forged_site_ids_get_no_update(app, tenants, site, site_id):
    response = _save(signed_in(app, tenants.a.admin), app, site_id, BODY)
    assert response.status_code == 204


def test_forged_rows_of_the_wrong_type_get_errors_not_a_crash(app, tenants, site):
    values = draft_values(site["id"], BODY)
    values["schedule-period-start.value"] = [{"x": 1}, 17, None, "25:00", "", "10:00", "10:00"]
    values["schedule-period-power_kw.value"] = ["lots"]
    values["schedule-period-mode.value"] = ["warp", None, ["charge"], {"a": 1}]
    values["schedule-period-day.value"] = [["mon"], {"d": 1}, 3, "mon"]
    values["schedule-default-mode.value"] = ["idle"]
    values["schedule-exception-date.value"] = [["2026-01-01"]]
    client = signed_in(app, tenants.a.admin)
    saved = _save(client, app, site["id"], {"default_mode": None})  # no mode at all
    assert "Not saved" in saved.get_data(as_text=True)
    values.update({"schedule-save.n_clicks": 1})
    response = post(client, app, "schedule-message.children", values,
                    triggered="schedule-save.n_clicks")
    assert "Not saved" in response.get_data(as_text=True)
    checked = post(client, app, "schedule-errors.children", values, rows=7)
    assert checked.status_code == 200
    errors = pattern_values(response_json(checked), "schedule-period-error")
    assert len(errors) == 7 and "Unknown mode 'warp'" in json.dumps(errors[0])
    assert "Unknown mode" in json.dumps(errors[2]) and "Unknown day 3" in json.dumps(errors[2])
    copied = post(client, app, "schedule-periods.children",
                  {**values, "schedule-copy.n_clicks": 1, "schedule-copy-from.value": "mon",
                   "schedule-copy-to.value": 5}, triggered="schedule-copy.n_clicks")
    assert copied.status_code == 200


# ---- checking as you type -----------------------------------------------------------------------

def test_errors_are_shown_next_to_the_faulty_rows(app, tenants, site):
    schedule = {**BODY, "periods": [
        {"days": ["mon"], "start": "17:00", "end": "21:00", "mode": "discharge",
         "power_kw": 40, "soc_min": 20},
        {"days": ["mon"], "start": "20:00", "end": "22:00", "mode": "charge",
         "power_kw": 10, "soc_max": 90},
        {"days": ["tue"], "start": "09:00", "end": "08:00", "mode": "charge",
         "power_kw": 300, "soc_max": 90}],
        "exceptions": [{"date": "2020-01-01", "name": "Old", "periods": []}]}
    values = draft_values(site["id"], schedule)
    answer = response_json(post(signed_in(app, tenants.a.viewer), app, "schedule-errors.children",
                                values, rows={"schedule-period-error": 3,
                                              "schedule-exception-error": 1}))
    text = json.dumps(answer, ensure_ascii=False)
    period_errors = [json.dumps(v, ensure_ascii=False) for v in pattern_values(
        answer, "schedule-period-error")]
    assert "Overlaps Monday 20:00–22:00" in period_errors[0]
    assert "Overlaps Monday 17:00–21:00" in period_errors[1]
    assert "Start must be before end" in period_errors[2]
    assert "Power 300 kW is above the site's rated storage power of 50 kW" in period_errors[2]
    exception_errors = json.dumps(pattern_values(answer, "schedule-exception-error"))
    assert "This date is in the past" in exception_errors
    assert "problems to fix before saving" in text
    assert answer["schedule-timeline"]["figure"]["data"]


def test_a_valid_draft_shows_no_errors_and_draws_the_week(app, tenants, site):
    answer = response_json(post(signed_in(app, tenants.a.operator), app,
                                "schedule-errors.children", draft_values(site["id"], BODY),
                                rows={"schedule-period-error": 7}))
    assert answer["schedule-errors"]["children"] is None
    assert all(e is None for e in pattern_values(answer, "schedule-period-error"))
    names = {trace["name"] for trace in answer["schedule-timeline"]["figure"]["data"]}
    assert names == {"Idle", "Discharge", "Self-consumption"}


def test_checking_another_companys_site_sends_nothing(app, tenants, site):
    response = post(signed_in(app, tenants.b.admin), app, "schedule-errors.children",
                    draft_values(site["id"], BODY), rows=7)
    assert response.status_code == 204


# ---- editing rows ---------------------------------------------------------------------------

def _rows_after(client, app, site_id, trigger: str, extra: dict | None = None):
    values = {**draft_values(site_id, BODY), trigger: 1, **(extra or {})}
    answer = response_json(post(client, app, "schedule-periods.children", values,
                                triggered=trigger))
    return json.dumps(answer["schedule-periods"]["children"]), answer


def test_copy_a_day_to_other_days(app, tenants, site):
    text, _ = _rows_after(signed_in(app, tenants.a.operator), app, site["id"],
                          "schedule-copy.n_clicks",
                          {"schedule-copy-from.value": "sat",
                           "schedule-copy-to.value": ["mon", "tue"]})
    days = [c["props"]["value"] for c in _find(json.loads(text), lambda c: isinstance(
        c["props"].get("id"), dict) and c["props"]["id"]["type"] == "schedule-period-day")]
    assert days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    modes = [c["props"]["value"] for c in _find(json.loads(text), lambda c: isinstance(
        c["props"].get("id"), dict) and c["props"]["id"]["type"] == "schedule-period-mode")]
    assert modes[:2] == ["self_consumption", "self_consumption"]
    assert modes[2] == "discharge"


def test_add_a_period_row(app, tenants, site):
    text, _ = _rows_after(signed_in(app, tenants.a.operator), app, site["id"],
                          "schedule-add-period.n_clicks")
    assert text.count('"schedule-period-day"') == 8


def _row_values(rows_json: str, kind: str, prop: str = "value") -> list:
    return [c["props"][prop] for c in _find(json.loads(rows_json), lambda c: isinstance(
        c["props"].get("id"), dict) and c["props"]["id"]["type"] == kind)]


@pytest.mark.parametrize("kind", ["period", "exception"])
def test_delete_a_period_row_and_an_exception_row(app, tenants, site, kind):
    holidays = {**BODY, "exceptions": [
        {"date": "2099-12-25", "name": "Christmas", "periods": []},
        {"date": "2099-12-31", "name": "New Year's Eve", "periods": [
            {"start": "08:00", "end": "12:00", "mode": "idle"}]}]}
    # The browser sends every row's n_clicks; the clicked delete button is row 1's.
    counts = {"period": 7, "exception": 2}
    values = {**draft_values(site["id"], holidays),
              f"schedule-{kind}-delete.n_clicks": [1 if i == 1 else None
                                                   for i in range(counts[kind])]}
    triggered = json.dumps({"index": 1, "type": f"schedule-{kind}-delete"},
                           separators=(",", ":")) + ".n_clicks"
    answer = response_json(post(signed_in(app, tenants.a.operator), app,
                                "schedule-periods.children", values, triggered=triggered))
    periods = json.dumps(answer["schedule-periods"]["children"])
    exceptions = json.dumps(answer["schedule-exceptions"]["children"])
    days = _row_values(periods, "schedule-period-day")
    dates = _row_values(exceptions, "schedule-exception-date")
    if kind == "period":  # Tuesday's row goes; every other row and both exceptions stay
        assert days == ["mon", "wed", "thu", "fri", "sat", "sun"]
        assert dates == ["2099-12-25", "2099-12-31"]
    else:
        assert days == list(schedules.DAYS)
        assert dates == ["2099-12-25"]


def test_readers_cannot_run_editing_callbacks(app, tenants, site):
    values = {**draft_values(site["id"], BODY), "schedule-add-period.n_clicks": 1}
    response = post(signed_in(app, tenants.a.viewer), app, "schedule-periods.children", values,
                    triggered="schedule-add-period.n_clicks")
    assert response.status_code == 403


# ---- history, diff, restore, delivery, preview ------------------------------------------------

def test_history_diff_and_restore(app, conn, tenants, site):
    client = signed_in(app, tenants.a.admin)
    weekend_off = {**BODY, "periods": BODY["periods"][:1]}
    newest = schedule_store.save_revision(conn, ROOT, site["id"], weekend_off,
                                          comment="no weekend program")["revision"]
    text = json.dumps(response_json(post(client, app, "schedule-history.children",
                                         {"schedule-site-id.data": site["id"]})))
    assert "first program" in text and "no weekend program" in text
    diff = json.dumps(response_json(post(client, app, "schedule-diff.children", {
        "schedule-diff-from.value": "1", "schedule-diff-to.value": str(newest),
        "schedule-site-id.data": site["id"]})), ensure_ascii=False)
    assert f"From revision 1 to {newest}" in diff
    assert "removed Sat, Sun 10:00–16:00 self_consumption" in diff
    restored = response_json(post(client, app, "schedule-message.children", {
        "schedule-site-id.data": site["id"], "schedule-restore.n_clicks": 1,
        "schedule-restore-revision.value": "1", "schedule-restore-comment.value": "back"},
        triggered="schedule-restore.n_clicks"))
    assert "Saved revision" in json.dumps(restored)
    latest = schedule_store.get_revision(conn, ROOT, site["id"])
    assert latest["revision"] == newest + 1
    assert latest["restored_from"] == 1 and latest["comment"] == "back"
    assert latest["body"]["periods"] == schedules.validate(
        BODY, schedule_store.site_limits(conn, ROOT, site["id"]))["periods"]


def test_readers_cannot_restore(app, conn, tenants, site):
    before = _revisions(conn, site["id"])
    response = post(signed_in(app, tenants.a.viewer), app, "schedule-message.children", {
        "schedule-site-id.data": site["id"], "schedule-restore.n_clicks": 1,
        "schedule-restore-revision.value": "1"}, triggered="schedule-restore.n_clicks")
    assert response.status_code == 403
    assert _revisions(conn, site["id"]) == before


@pytest.mark.parametrize("revision", ["99999999999", "x", None, "0", 2**40])
def test_forged_revision_numbers_get_a_message_not_a_crash(app, conn, tenants, site, revision):
    client = signed_in(app, tenants.a.admin)
    before = _revisions(conn, site["id"])
    diff = post(client, app, "schedule-diff.children", {
        "schedule-diff-from.value": revision, "schedule-diff-to.value": "1",
        "schedule-site-id.data": site["id"]})
    assert diff.status_code in (200, 204)
    restored = post(client, app, "schedule-message.children", {
        "schedule-site-id.data": site["id"], "schedule-restore.n_clicks": 1,
        "schedule-restore-revision.value": revision}, triggered="schedule-restore.n_clicks")
    text = json.dumps(response_json(restored))
    assert "Choose the revision to restore" in text
    assert _revisions(conn, site["id"]) == before


def test_diff_of_another_companys_site_sends_nothing(app, tenants, site):
    response = post(signed_in(app, tenants.b.admin), app, "schedule-diff.children", {
        "schedule-diff-from.value": "1", "schedule-diff-to.value": "2",
        "schedule-site-id.data": site["id"]})
    assert response.status_code == 204


def test_delivery_state_says_pending_then_applied(app, conn, tenants, site):
    client = signed_in(app, tenants.a.viewer)
    latest = schedule_store.get_revision(conn, ROOT, site["id"])
    text = json.dumps(response_json(post(client, app, "schedule-delivery.children", {
        "schedule-site-id.data": site["id"]})), ensure_ascii=False)
    assert f"Revision {latest['revision']} pending since" in text
    assert f"Revision {latest['revision']} pending since" in _page(
        app, tenants.a.viewer, f"/site/{site['id']}")
    device = conn.execute("SELECT id FROM devices WHERE serial = %s",
                          (site["serial"],)).fetchone()["id"]
    schedule_store.record_ack(conn, device_id=device, revision=latest["revision"],
                              status="rejected", reason="SoC floor is 25 %")
    text = json.dumps(response_json(post(client, app, "schedule-delivery.children", {
        "schedule-site-id.data": site["id"]})), ensure_ascii=False)
    assert f"Revision {latest['revision']} rejected: SoC floor is 25 %" in text
    schedule_store.record_ack(conn, device_id=device, revision=latest["revision"],
                              status="applied", at=dt.datetime.now(dt.UTC))
    text = json.dumps(response_json(post(client, app, "schedule-delivery.children", {
        "schedule-site-id.data": site["id"]})))
    assert f"Applied revision {latest['revision']}" in text
    # The site page says it too, beside its Schedule link.
    assert f"Applied revision {latest['revision']}" in _page(app, tenants.a.viewer,
                                                             f"/site/{site['id']}")


def test_delivery_panel_shows_each_devices_share_of_a_sites_power(app, conn, tenants, settings):
    site_id = fleet.create_site(conn, ROOT, company_id=tenants.a.id, name="Two cabinets",
                                timezone="Europe/Paris")
    tag = secrets.token_hex(3)
    serials = [f"SHL-{tag}", f"SHX-{tag}"]
    fleet.register_device(conn, ROOT, site_id=site_id, serial=serials[0], model="HES-L")
    fleet.register_device(conn, ROOT, site_id=site_id, serial=serials[1], model="HES-XL",
                          rated_power_kw=150)
    schedule_store.save_revision(conn, ROOT, site_id, BODY, comment="two devices")
    text = json.dumps(response_json(post(signed_in(app, tenants.a.admin), app,
                                         "schedule-delivery.children",
                                         {"schedule-site-id.data": site_id})),
                      ensure_ascii=False)
    assert "50 kW, 25 % of the site's power" in text
    assert "150 kW, 75 % of the site's power" in text
    # A site with one storage device runs the schedule as it is: no share is shown.
    one = json.dumps(response_json(post(signed_in(app, tenants.a.admin), app,
                                        "schedule-delivery.children",
                                        {"schedule-site-id.data": tenants.a.sites[0]})))
    assert "of the site's power" not in one


def test_preview_charts_soc_and_grid_power(app, tenants, site):
    values = draft_values(site["id"], BODY)
    answer = response_json(post(signed_in(app, tenants.a.viewer), app,
                                "schedule-preview.children", values))
    text = json.dumps(answer)
    assert "schedule-preview-graph" in text and "State of charge" in text
    assert "No load was measured" in text  # this site has no telemetry


def test_preview_of_an_invalid_draft_asks_for_fixes(app, tenants, site):
    values = draft_values(site["id"], {**BODY, "periods": [
        {"days": ["mon"], "start": "17:00", "end": "16:00", "mode": "idle"}]})
    text = json.dumps(response_json(post(signed_in(app, tenants.a.viewer), app,
                                         "schedule-preview.children", values)))
    assert "Fix the schedule" in text
