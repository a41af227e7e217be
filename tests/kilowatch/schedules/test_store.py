"""Schedule revisions, access scopes, delivery state and acks in the real database."""

from __future__ import annotations

import datetime as dt
import secrets

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.jobs import schedules as schedule_jobs
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store
from kilowatch.schedules.store import UnknownRevision
from kilowatch.settings import Settings

ROOT = system_scope("test")
NOW = dt.datetime.now(dt.UTC)


def schedule(power_kw=40, **extra) -> dict:
    return {"timezone": "Europe/Paris", "default_mode": "idle",
            "periods": [{"days": ["mon"], "start": "17:00", "end": "21:00",
                         "mode": "discharge", "power_kw": power_kw, "soc_min": 20}], **extra}


@pytest.fixture
def fleet_ids(conn):
    """Two companies; company A has sites A1 (two storage devices and a meter) and A2."""
    tag = secrets.token_hex(3)
    company_a = fleet.create_company(conn, ROOT, f"A-{tag}")
    company_b = fleet.create_company(conn, ROOT, f"B-{tag}")
    ids = {"company_a": company_a, "company_b": company_b}
    for key, company in (("a1", company_a), ("a2", company_a), ("b1", company_b)):
        ids[key] = fleet.create_site(conn, ROOT, company_id=company, name=key,
                                     timezone="Europe/Paris")
    ids["dev1"] = fleet.register_device(conn, ROOT, site_id=ids["a1"], serial=f"L-{tag}",
                                        model="HES-L")  # no rating: nominal 50 kW
    ids["dev2"] = fleet.register_device(conn, ROOT, site_id=ids["a1"], serial=f"XL-{tag}",
                                        model="HES-XL", rated_power_kw=100)
    ids["meter"] = fleet.register_device(conn, ROOT, site_id=ids["a1"], serial=f"M-{tag}",
                                         model="meter", rated_power_kw=500)
    return ids


def scope(role, ids, company="company_a", sites=None, user_id=7):
    site_ids = None if sites is None else frozenset(ids[s] for s in sites)
    return AccessScope(role=role, user_id=user_id, company_id=ids[company], site_ids=site_ids,
                       actor=f"{role}@example.com")


def test_every_save_is_a_new_revision_with_author_time_and_comment(conn, fleet_ids):
    operator = scope("operator", fleet_ids, sites=["a1"])
    first = schedule_store.save_revision(conn, operator, fleet_ids["a1"], schedule(),
                                         comment="  winter program ")
    second = schedule_store.save_revision(conn, operator, fleet_ids["a1"], schedule(60))
    assert (first["revision"], second["revision"]) == (1, 2)
    assert (first["author"], first["author_user_id"], first["comment"]) == (
        "operator@example.com", 7, "winter program")
    history = schedule_store.history(conn, operator, fleet_ids["a1"])
    assert [h["revision"] for h in history] == [2, 1]
    assert history[0]["pending"] == 2 and history[0]["unpublished"] == 2
    assert schedule_store.get_revision(conn, operator, fleet_ids["a1"], 1)["body"] == \
        schedules.validate(schedule(), schedule_store.site_limits(conn, ROOT, fleet_ids["a1"]))
    audit = conn.execute("SELECT actor, after FROM audit_log WHERE action = 'schedule.save' "
                         "AND target = %s ORDER BY id", (f"site:{fleet_ids['a1']}",)).fetchall()
    assert [(a["actor"], a["after"]["revision"]) for a in audit] == [
        ("operator@example.com", 1), ("operator@example.com", 2)]


def test_revisions_are_immutable(conn, fleet_ids):
    schedule_store.save_revision(conn, ROOT, fleet_ids["a2"], schedule())
    with pytest.raises(psycopg.errors.RaiseException, match="immutable"):
        conn.execute("UPDATE schedule_revisions SET comment = 'rewritten' WHERE site_id = %s",
                     (fleet_ids["a2"],))


def test_restore_saves_an_old_revision_again_without_past_exceptions(conn, fleet_ids):
    site = fleet_ids["a1"]
    tomorrow = (NOW + dt.timedelta(days=2)).date().isoformat()
    later = (NOW + dt.timedelta(days=30)).date().isoformat()
    exceptions = [{"date": tomorrow, "periods": []}, {"date": later, "periods": []}]
    schedule_store.save_revision(conn, ROOT, site, schedule(exceptions=exceptions))
    schedule_store.save_revision(conn, ROOT, site, schedule(90))
    restored = schedule_store.restore_revision(conn, ROOT, site, 1,
                                               now=NOW + dt.timedelta(days=5))
    assert restored["revision"] == 3 and restored["restored_from"] == 1
    assert restored["comment"] == "restore revision 1"
    assert [e["date"] for e in restored["body"]["exceptions"]] == [later]
    assert restored["body"]["periods"] == schedule()["periods"]
    with pytest.raises(schedule_store.ScheduleNotFound, match="no revision 9"):
        schedule_store.restore_revision(conn, ROOT, site, 9)


def test_power_is_checked_against_the_sum_of_storage_ratings(conn, fleet_ids):
    limits = schedule_store.site_limits(conn, ROOT, fleet_ids["a1"])
    assert limits.rated_power_kw == 150  # 50 nominal + 100 rated; the meter does not count
    assert schedule_store.save_revision(conn, ROOT, fleet_ids["a1"], schedule(150))
    with pytest.raises(schedules.ScheduleInvalid, match="above the site's rated storage power "
                                                         "of 150 kW"):
        schedule_store.save_revision(conn, ROOT, fleet_ids["a1"], schedule(151))
    with pytest.raises(schedules.ScheduleInvalid, match="Europe/Paris"):
        schedule_store.save_revision(conn, ROOT, fleet_ids["a1"],
                                     {**schedule(), "timezone": "UTC"})


def test_optimized_mode_needs_the_site_flag(conn, fleet_ids):
    body = {**schedule(), "default_mode": "optimized"}
    with pytest.raises(schedules.ScheduleInvalid, match="dispatch optimiser"):
        schedule_store.save_revision(conn, ROOT, fleet_ids["a2"], body)
    conn.execute("UPDATE sites SET has_optimizer = true WHERE id = %s", (fleet_ids["a2"],))
    assert schedule_store.save_revision(conn, ROOT, fleet_ids["a2"], body)["revision"] >= 1


def test_viewer_and_support_read_but_cannot_save(conn, fleet_ids):
    schedule_store.save_revision(conn, ROOT, fleet_ids["a1"], schedule())
    viewer = scope("viewer", fleet_ids, sites=["a1"])
    support = AccessScope(role="support", user_id=3, actor="support@example.com")
    for reader in (viewer, support):
        assert schedule_store.latest_revision(conn, reader, fleet_ids["a1"])["revision"] == 1
        assert schedule_store.delivery_state(conn, reader, fleet_ids["a1"])
        with pytest.raises(AccessDenied, match="not change it"):
            schedule_store.save_revision(conn, reader, fleet_ids["a1"], schedule())
        with pytest.raises(AccessDenied):
            schedule_store.restore_revision(conn, reader, fleet_ids["a1"], 1)
    assert len(schedule_store.history(conn, ROOT, fleet_ids["a1"])) == 1


def test_operator_of_another_site_can_neither_save_nor_read(conn, fleet_ids):
    schedule_store.save_revision(conn, ROOT, fleet_ids["a1"], schedule())
    operator_a2 = scope("operator", fleet_ids, sites=["a2"])
    with pytest.raises(AccessDenied, match="no such site"):
        schedule_store.save_revision(conn, operator_a2, fleet_ids["a1"], schedule())
    with pytest.raises(AccessDenied):
        schedule_store.get_revision(conn, operator_a2, fleet_ids["a1"])
    assert schedule_store.save_revision(conn, operator_a2, fleet_ids["a2"], schedule())


def test_another_companys_site_is_invisible_even_to_its_admin(conn, fleet_ids):
    schedule_store.save_revision(conn, ROOT, fleet_ids["a1"], schedule())
    admin_b = scope("admin", fleet_ids, company="company_b")
    for read in (schedule_store.get_revision, schedule_store.history,
                 schedule_store.delivery_state, schedule_store.site_limits):
        with pytest.raises(AccessDenied, match="no such site"):
            read(conn, admin_b, fleet_ids["a1"])
    with pytest.raises(AccessDenied, match="no such site"):
        schedule_store.save_revision(conn, admin_b, fleet_ids["a1"], schedule())
    assert schedule_store.latest_revision(conn, admin_b, fleet_ids["b1"]) is None
    admin_a = scope("admin", fleet_ids)
    assert schedule_store.save_revision(conn, admin_a, fleet_ids["a1"], schedule())


def test_delivery_state_follows_acks_applied_and_rejected(conn, fleet_ids):
    site, dev1, dev2 = fleet_ids["a1"], fleet_ids["dev1"], fleet_ids["dev2"]
    schedule_store.save_revision(conn, ROOT, site, schedule())
    state = schedule_store.delivery_state(conn, ROOT, site)
    assert {r["status"] for r in state} == {"pending"} and len(state) == 2  # no meter
    assert "revision 1 pending since" in schedule_store.describe_delivery(state, "Europe/Paris")
    t0 = dt.datetime.now(dt.UTC)
    for device in (dev1, dev2):
        assert schedule_store.record_ack(conn, device_id=device, revision=1, status="applied",
                                    reason=None, at=t0)
    state = schedule_store.delivery_state(conn, ROOT, site)
    assert schedule_store.describe_delivery(state, "Europe/Paris") == "applied revision 1"
    assert {r["applied_revision"] for r in state} == {1}

    schedule_store.save_revision(conn, ROOT, site, schedule(60))
    schedule_store.record_ack(conn, device_id=dev1, revision=2, status="applied", reason=None,
                              at=t0)
    schedule_store.record_ack(conn, device_id=dev2, revision=2, status="rejected",
                              reason="soc_min below the BMS floor", at=t0)
    state = {r["device_id"]: r for r in schedule_store.delivery_state(conn, ROOT, site)}
    assert state[dev2]["status"] == "rejected" and state[dev2]["applied_revision"] == 1
    assert state[dev1]["applied_revision"] == 2
    assert schedule_store.describe_delivery(list(state.values()), "Europe/Paris") == (
        f"revision 2 rejected ({state[dev2]['serial']}: soc_min below the BMS floor)")


def test_older_duplicate_ack_is_ignored_and_unknown_revision_is_an_error(conn, fleet_ids):
    site, device = fleet_ids["a1"], fleet_ids["dev1"]
    schedule_store.save_revision(conn, ROOT, site, schedule())
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    schedule_store.record_ack(conn, device_id=device, revision=1, status="rejected", reason="x",
                         at=t0)
    assert not schedule_store.record_ack(conn, device_id=device, revision=1, status="applied",
                                    reason=None, at=t0 - dt.timedelta(seconds=1))
    state = {r["device_id"]: r for r in schedule_store.delivery_state(conn, ROOT, site)}
    assert state[device]["status"] == "rejected"
    with pytest.raises(UnknownRevision, match="no schedule revision 9"):
        schedule_store.record_ack(conn, device_id=device, revision=9, status="applied",
                             reason=None, at=None)
    with pytest.raises(ValueError, match="applied or rejected"):
        schedule_store.record_ack(conn, device_id=device, revision=1, status="done", reason=None,
                             at=None)


def _active_alarms(conn, device_id):
    return {r["code"]: r for r in conn.execute(
        "SELECT code, severity, message, raise_count FROM alarms "
        "WHERE device_id = %s AND cleared_at IS NULL", (device_id,)).fetchall()}


def test_pending_too_long_raises_a_warning_that_the_ack_clears(conn, fleet_ids):
    site, device = fleet_ids["a1"], fleet_ids["dev2"]
    schedule_store.save_revision(conn, ROOT, site, schedule())
    settings = Settings(schedule_pending_alarm_after=600)
    schedule_jobs.alarm_pending(conn, settings, now=NOW)
    assert _active_alarms(conn, device) == {}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)
    assert schedule_jobs.alarm_pending(conn, settings, now=later)[0] >= 2  # other tests' too
    assert "SCHEDULE_PENDING" in _active_alarms(conn, fleet_ids["dev1"])
    alarm = _active_alarms(conn, device)["SCHEDULE_PENDING"]
    assert alarm["severity"] == "warning" and "revision 1 pending since" in alarm["message"]
    assert "not yet published" in alarm["message"]
    assert schedule_jobs.alarm_pending(conn, settings, now=later)[0] == 0
    assert _active_alarms(conn, device)["SCHEDULE_PENDING"]["raise_count"] == 1

    schedule_store.record_ack(conn, device_id=device, revision=1, status="rejected",
                         reason="too fast", at=later)
    active = _active_alarms(conn, device)
    assert "SCHEDULE_PENDING" not in active
    assert active["SCHEDULE_REJECTED"]["message"] == "schedule revision 1 rejected: too fast"
    schedule_store.record_ack(conn, device_id=device, revision=1, status="applied", reason=None,
                         at=later + dt.timedelta(seconds=1))
    assert _active_alarms(conn, device) == {}
