"""The schedule page puts a period or the whole week in ``optimized`` mode, where offered."""

from __future__ import annotations

import json
import secrets

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.dispatch import store as dispatch_store
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import store as schedule_store
from tests.dashboards.conftest import call_callback
from tests.dashboards.schedule_helpers import draft_values, post, response_json, signed_in

ROOT = system_scope("test")
WHOLE_WEEK = {"timezone": "Europe/Paris", "default_mode": "optimized", "periods": [],
              "exceptions": []}
EVENINGS = {"timezone": "Europe/Paris", "default_mode": "self_consumption",
            "default_params": {"soc_min": 10, "soc_max": 95},
            "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "16:00",
                         "end": "22:00", "mode": "optimized"}], "exceptions": []}


@pytest.fixture(scope="module")
def sites(tenants, settings):
    """A's first site offered the optimiser and its second site not, each with storage."""
    serials = []
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("UPDATE sites SET has_optimizer = true, latitude = 48.85, longitude = 2.35 "
                     "WHERE id = %s", (tenants.a.sites[0],))
        for site_id in tenants.a.sites:
            serials.append(f"OPT-{secrets.token_hex(3)}")
            fleet.register_device(conn, ROOT, site_id=site_id, serial=serials[-1],
                                  model="HES-L", rated_power_kw=50, capacity_kwh=100)
    yield {"optimizer": tenants.a.sites[0], "plain": tenants.a.sites[1]}
    schedule_delivery.publish_retained(
        [(schedule_delivery.schedule_topic(s, settings), "") for s in serials], settings=settings)


def _save(client, app, site_id, schedule):
    values = {**draft_values(site_id, schedule), "schedule-comment.value": "optimise",
              "schedule-save.n_clicks": 1}
    return post(client, app, "schedule-message.children", values,
                triggered="schedule-save.n_clicks")


def _default_modes(app, account, site_id) -> list[str]:
    response = call_callback(signed_in(app, account), app, "_pages_content.children",
                             {"_pages_location.pathname": f"/site/{site_id}/schedule",
                              "_pages_location.search": ""})
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("props", {}).get("id") == "schedule-default-mode":
                found.extend(o["value"] for o in node["props"]["options"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(response.get_json())
    return found


def test_optimized_is_a_mode_only_on_sites_offered_the_optimiser(app, tenants, sites):
    assert "optimized" in _default_modes(app, tenants.a.admin, sites["optimizer"])
    assert "optimized" not in _default_modes(app, tenants.a.admin, sites["plain"])


def test_admin_puts_the_whole_week_in_optimized_mode(app, conn, tenants, sites):
    answer = response_json(_save(signed_in(app, tenants.a.admin), app, sites["optimizer"],
                                 WHOLE_WEEK))
    assert "Saved revision" in json.dumps(answer)
    body = schedule_store.latest_revision(conn, ROOT, sites["optimizer"])["body"]
    assert body["default_mode"] == "optimized" and body["periods"] == []
    assert sites["optimizer"] in dispatch_store.sites_to_plan(conn)  # the job plans it now


def test_admin_puts_weekday_evenings_in_optimized_mode(app, conn, tenants, sites):
    answer = response_json(_save(signed_in(app, tenants.a.admin), app, sites["optimizer"],
                                 EVENINGS))
    assert "Saved revision" in json.dumps(answer)
    body = schedule_store.latest_revision(conn, ROOT, sites["optimizer"])["body"]
    assert body["default_mode"] == "self_consumption"
    assert [(p["start"], p["end"], p["mode"]) for p in body["periods"]] == [
        ("16:00", "22:00", "optimized")]
    assert sites["optimizer"] in dispatch_store.sites_to_plan(conn)


@pytest.mark.parametrize("schedule", [WHOLE_WEEK, EVENINGS], ids=["week", "evenings"])
def test_a_site_without_the_optimiser_refuses_the_mode(app, conn, tenants, sites, schedule):
    before = schedule_store.latest_revision(conn, ROOT, sites["plain"])
    answer = json.dumps(response_json(_save(signed_in(app, tenants.a.admin), app,
                                            sites["plain"], schedule)))
    assert "Not saved" in answer and "needs the dispatch optimiser" in answer
    assert schedule_store.latest_revision(conn, ROOT, sites["plain"]) == before
    assert sites["plain"] not in dispatch_store.sites_to_plan(conn)
