"""The commissioning checklist on a real database: each item turns ok when its condition is met."""

from __future__ import annotations

import datetime as dt

import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied
from kilowatch.alarms import notifications
from kilowatch.commissioning import checklist
from kilowatch.devices import lifecycle
from tests.kilowatch.commissioning import helpers
from tests.kilowatch.commissioning.helpers import ROOT

ALL_COUNTERS = ["meter.grid.e_import", "meter.grid.e_export", "pcs.e_charge",
                "pcs.e_discharge", "bms.soc"]


def states(conn, site) -> dict[str, bool]:
    return {item.key: item.ok for item in checklist.checklist(conn, ROOT, site)}


def item(conn, site, key) -> checklist.Item:
    return next(i for i in checklist.checklist(conn, ROOT, site) if i.key == key)


def test_an_empty_site_misses_everything_and_links_to_the_fixes(conn):
    _, site = helpers.new_company(conn)
    items = checklist.checklist(conn, ROOT, site)
    assert [i.key for i in items] == ["registered", "activated", "telemetry", "clock",
                                      "counters", "schedule", "tariff", "admin"]
    assert not any(i.ok for i in items)
    links = {i.key: i.fix_href for i in items}
    assert links["registered"] == f"/admin/devices?site={site}"
    assert links["schedule"] == f"/site/{site}/schedule"
    assert links["tariff"] == f"/admin/tariffs?site={site}"
    assert links["admin"] == "/admin/users"
    assert item(conn, site, "registered").detail == "no device registered"


def test_each_item_turns_ok_as_the_site_is_commissioned(conn, settings):
    company, site = helpers.new_company(conn)
    admin = helpers.new_admin(conn, company)
    device, serial, code = helpers.register(conn, admin, site)
    assert states(conn, site)["registered"]
    assert not states(conn, site)["activated"]
    assert serial in item(conn, site, "activated").detail

    helpers.activate(conn, settings, serial, code)
    assert states(conn, site)["activated"]
    assert not states(conn, site)["telemetry"]

    helpers.send_telemetry(conn, device, ["bms.soc", "meter.grid.e_import"])
    assert states(conn, site)["telemetry"] and states(conn, site)["clock"]
    counters = item(conn, site, "counters")
    assert not counters.ok
    assert "meter.grid.e_export" in counters.detail and f"{serial} pcs.e_charge" in counters.detail

    helpers.send_telemetry(conn, device, ALL_COUNTERS)
    assert states(conn, site)["counters"]

    assert not states(conn, site)["schedule"]
    helpers.apply_schedule(conn, admin, site, [device])
    assert states(conn, site)["schedule"]

    assert not states(conn, site)["tariff"]
    helpers.assign_tariff(conn, admin, company, site)
    assert states(conn, site)["tariff"]
    assert item(conn, site, "tariff").detail.startswith("Flat since ")

    admin_item = item(conn, site, "admin")
    assert not admin_item.ok and admin_item.fix_href == "/account/notifications"
    helpers.notify_admin(conn, admin)
    assert states(conn, site)["admin"]
    assert checklist.complete(checklist.checklist(conn, ROOT, site))


def test_a_device_clock_off_by_more_than_5_s_is_out_of_sync(conn, settings):
    company, site = helpers.new_company(conn)
    admin = helpers.new_admin(conn, company)
    device, serial, code = helpers.register(conn, admin, site)
    helpers.activate(conn, settings, serial, code)
    now = dt.datetime.now(dt.UTC)
    helpers.send_telemetry(conn, device, ["bms.soc"], lag_s=7.5, at=now)
    clock = item(conn, site, "clock")
    assert not clock.ok and clock.detail == f"{serial} is 7.5 s behind"
    helpers.send_telemetry(conn, device, ["bms.soc"], lag_s=-6, at=now + dt.timedelta(seconds=1))
    assert item(conn, site, "clock").detail == f"{serial} is 6.0 s ahead"
    helpers.send_telemetry(conn, device, ["bms.soc"], lag_s=4.9, at=now + dt.timedelta(seconds=20))
    assert states(conn, site)["clock"]
    conn.execute("INSERT INTO dead_letters (topic, serial, device_id, reason) "
                 "VALUES ('t', %s, %s, 'future_timestamp')", (serial, device))
    assert item(conn, site, "clock").detail == f"{serial} sent samples over 5 min ahead"


def test_every_storage_device_must_apply_and_a_meter_need_not(conn, settings):
    company, site = helpers.new_company(conn)
    admin = helpers.new_admin(conn, company)
    first, _, _ = helpers.register(conn, admin, site)
    second, second_serial, _ = helpers.register(conn, admin, site, model="HES-L")
    helpers.register(conn, admin, site, model="meter")
    helpers.apply_schedule(conn, admin, site, [first])
    schedule = item(conn, site, "schedule")
    assert not schedule.ok and schedule.detail == f"not applied yet by {second_serial}"
    helpers.apply_schedule(conn, admin, site, [second])
    assert item(conn, site, "schedule").detail == "applied by all 2 storage device(s)"


def test_a_revoked_device_is_retired_and_named(conn, settings):
    company, site = helpers.new_company(conn)
    admin = helpers.new_admin(conn, company)
    old, old_serial, code = helpers.register(conn, admin, site)
    helpers.activate(conn, settings, old_serial, code)
    lifecycle.revoke(conn, admin, old)
    assert not states(conn, site)["registered"]
    _, serial, code = helpers.register(conn, admin, site)
    helpers.activate(conn, settings, serial, code)
    activated = item(conn, site, "activated")
    assert activated.ok and f"revoked, not counted: {old_serial}" in activated.detail


def test_an_admin_without_e_mails_for_this_site_does_not_count(conn):
    company, site = helpers.new_company(conn)
    second_site = fleet.create_site(conn, ROOT, company_id=company, name="Annex",
                                    timezone="Europe/Paris")
    admin = helpers.new_admin(conn, company)
    chosen = {"enabled": True, "severities": ["critical"], "all_sites": False}
    notifications.save_preferences(conn, admin, {**chosen, "site_ids": [second_site]})
    assert item(conn, site, "admin").detail == (
        "1 admin(s), none with alarm e-mails on for this site")
    notifications.save_preferences(conn, admin, {**chosen, "site_ids": [site]})
    assert states(conn, site)["admin"]
    conn.execute("UPDATE users SET active = false WHERE id = %s", (admin.user_id,))
    assert item(conn, site, "admin").detail == "the company has no active admin"


def test_the_checklist_stays_within_the_callers_scope(conn):
    company, site = helpers.new_company(conn)
    other, _ = helpers.new_company(conn)
    with pytest.raises(AccessDenied):
        checklist.checklist(conn, helpers.new_admin(conn, other), site)
    assert checklist.checklist(conn, helpers.new_admin(conn, company), site)
