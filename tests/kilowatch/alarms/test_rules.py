"""Alert rules: hysteresis, minimum duration, validation, scope, evaluation on stored rows."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import pytest

from kilowatch import db, fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.alarms import rule_store
from kilowatch.alarms import rules as alert_rules
from kilowatch.alarms.rules import Rule, RuleError, RuleState, evaluate

T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
HOT = Rule(point="bms.t_max", comparison=">", threshold=45, clear_threshold=40, duration_s=300)


def minutes(*values):
    """Samples one minute apart from T0."""
    return [(T0 + dt.timedelta(minutes=n), v) for n, v in enumerate(values)]


def test_raises_only_after_the_condition_held_for_the_duration():
    samples = minutes(44, 46, 47, 48, 46, 47, 49, 50)
    state, changes = evaluate(HOT, RuleState(), samples)
    assert [(c.kind, c.at) for c in changes] == [("raise", T0 + dt.timedelta(minutes=6))]
    assert changes[0].since == T0 + dt.timedelta(minutes=1)
    assert state.phase == "active"


def test_a_dip_below_the_threshold_restarts_the_duration():
    samples = minutes(46, 47, 48, 49, 45, 46, 47, 48, 49, 50, 51)
    _, changes = evaluate(HOT, RuleState(), samples)
    # 45 is not > 45: pending restarts at minute 5 and holds 5 minutes at minute 10
    assert [(c.kind, c.at) for c in changes] == [("raise", T0 + dt.timedelta(minutes=10))]


def test_hysteresis_clears_only_below_the_clear_threshold():
    samples = minutes(50, 50, 50, 50, 50, 50, 44, 41, 40, 46, 39.9, 46)
    state, changes = evaluate(HOT, RuleState(), samples)
    assert [(c.kind, c.at, c.value) for c in changes] == [
        ("raise", T0 + dt.timedelta(minutes=5), 50),
        ("clear", T0 + dt.timedelta(minutes=10), 39.9)]
    assert state.phase == "pending"  # 46 again at minute 11 starts a new wait


def test_low_side_rule_and_zero_duration_and_missing_values():
    low = Rule(point="bms.soc", comparison="<", threshold=10, clear_threshold=15)
    _, changes = evaluate(low, RuleState(), minutes(20, None, 9, 12, 14, 15, 16, 8))
    assert [(c.kind, c.at) for c in changes] == [
        ("raise", T0 + dt.timedelta(minutes=2)), ("clear", T0 + dt.timedelta(minutes=6)),
        ("raise", T0 + dt.timedelta(minutes=7))]


def test_state_carries_over_between_batches():
    first, changes = evaluate(HOT, RuleState(), minutes(46, 47, 48))
    assert not changes and first.phase == "pending"
    later = [(T0 + dt.timedelta(minutes=n), 48) for n in (3, 4, 5)]
    _, changes = evaluate(HOT, first, later)
    assert [c.at for c in changes] == [T0 + dt.timedelta(minutes=5)]


@pytest.mark.parametrize(("fields", "message"), [
    ({"comparison": ">", "threshold": 45, "clear_threshold": 50}, "hysteresis"),
    ({"comparison": "<", "threshold": 10, "clear_threshold": 5}, "hysteresis"),
    ({"comparison": "=="}, "comparison"),
    ({"comparison": [">"]}, "comparison"),
    ({"severity": {"a": 1}}, "severity"),
    ({"threshold": "hot"}, "number"),
    ({"threshold": "nan"}, "finite"),
    ({"duration_s": -5}, "duration"),
    ({"duration_s": 100_000}, "duration"),
    ({"point": "BMS T"}, "point"),
    ({"code": "comm_lost"}, "code"),
    ({"severity": "fatal"}, "severity"),
    ({"name": ""}, "name"),
    ({"all_sites": False, "site_ids": []}, "sites"),
    ({"all_sites": False, "site_ids": ["abc"]}, "sites"),
])
def test_bad_rules_are_refused_with_a_clear_message(fields, message):
    base = {"name": "Hot cells", "point": "bms.t_max", "comparison": ">", "threshold": 45,
            "clear_threshold": 40, "duration_s": 300, "severity": "major"}
    with pytest.raises(RuleError, match=message):
        alert_rules.validate_rule({**base, **fields})


def test_code_is_derived_from_the_name():
    rule = alert_rules.validate_rule({"name": "Hot cells!", "point": "bms.t_max",
                                      "comparison": ">", "threshold": 45, "severity": "minor"})
    assert rule.code == "HOT_CELLS" and rule.clear_threshold == 45
    assert rule.describe() == "bms.t_max > 45, clear below 45"


# ---- against the database ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet_ids(kw_env):
    scope = system_scope("test")
    with db.connect(autocommit=True) as conn:
        ids = {}
        for name in ("Rulco", "Otherco"):
            company = fleet.create_company(conn, scope, name)
            sites = [fleet.create_site(conn, scope, company_id=company, name=f"{name} {n}",
                                       timezone="UTC") for n in (1, 2)]
            devices = [fleet.register_device(conn, scope, site_id=site, serial=f"{name}-{n}",
                                             model="HES-L") for n, site in enumerate(sites)]
            conn.execute("INSERT INTO device_points (device_id, point_id) SELECT d, p.id "
                         "FROM unnest(%s::int[]) d, points p WHERE p.name = 'bms.t_max'",
                         (devices,))
            ids[name] = {"company": company, "sites": sites, "devices": devices}
    return ids


def admin_of(company_id):
    return AccessScope(role="admin", company_id=company_id, user_id=None, actor="admin@test")


def write_samples(conn, device_id, samples):
    point = conn.execute("SELECT id FROM points WHERE name = 'bms.t_max'").fetchone()["id"]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO telemetry (time, device_id, point_id, value) "
                        "VALUES (%s, %s, %s, %s)", [(t, device_id, point, v) for t, v in samples])


def rule_alarms(conn, device_id, code):
    return conn.execute("SELECT * FROM alarms WHERE device_id = %s AND code = %s ORDER BY id",
                        (device_id, code)).fetchall()


RULE = {"name": "Hot cells", "code": "HOT_CELLS", "point": "bms.t_max", "comparison": ">",
        "threshold": 45, "clear_threshold": 40, "duration_s": 300, "severity": "critical"}


def test_stored_samples_raise_and_clear_at_the_right_samples(conn, fleet_ids):
    rulco = fleet_ids["Rulco"]
    rule_id = rule_store.create_rule(conn, admin_of(rulco["company"]), rulco["company"],
                                     {**RULE, "all_sites": False,
                                      "site_ids": [rulco["sites"][0]]})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = now - dt.timedelta(minutes=5)  # inside the look-back of a new rule
    device, other = rulco["devices"]
    hot = [(start + dt.timedelta(seconds=30 * n), 44 + n) for n in range(16)]  # 44 … 59
    write_samples(conn, device, hot)
    write_samples(conn, other, hot)  # the rule does not cover the second site
    result = alert_rules.evaluate_rules(conn, now=now)
    assert result["raised"] == 1
    [alarm] = rule_alarms(conn, device, "HOT_CELLS")
    # breaching from 46 (sample 2, +60 s); 300 s later is sample 12 (+360 s)
    assert alarm["source"] == "rule" and alarm["rule_id"] == rule_id
    assert alarm["raised_at"] == start + dt.timedelta(seconds=360)
    assert alarm["cleared_at"] is None and "bms.t_max = 56" in alarm["message"]
    assert not rule_alarms(conn, other, "HOT_CELLS")
    assert alert_rules.evaluate_rules(conn, now=now)["samples"] == 0  # the watermark held


def test_raise_time_is_the_sample_where_the_duration_is_reached(conn, fleet_ids):
    rulco = fleet_ids["Rulco"]
    device = fleet.register_device(conn, system_scope("test"), site_id=rulco["sites"][1],
                                   serial="Rulco-fresh", model="HES-L")
    conn.execute("INSERT INTO device_points (device_id, point_id) SELECT %s, id FROM points "
                 "WHERE name = 'bms.t_max'", (device,))
    rule_id = rule_store.create_rule(conn, admin_of(rulco["company"]), rulco["company"],
                                     {**RULE, "name": "Warm", "code": "WARM", "threshold": 30,
                                      "clear_threshold": 25, "duration_s": 120,
                                      "all_sites": False, "site_ids": [rulco["sites"][1]]})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    alert_rules.evaluate_rules(conn, now=now)  # the first run sets the watermark
    base = now + dt.timedelta(seconds=1)
    values = [31, 32, 29, 31, 32, 33, 34, 26, 24, 35]
    write_samples(conn, device, [(base + dt.timedelta(seconds=60 * n), v)
                                 for n, v in enumerate(values)])
    alert_rules.evaluate_rules(conn, now=base + dt.timedelta(minutes=11))
    [alarm] = rule_alarms(conn, device, "WARM")
    # 29 at minute 2 ends the first wait; 31 at minute 3 starts another, 120 s later
    # (minute 5) it raises; 26 is not below 25, 24 at minute 8 clears
    assert alarm["raised_at"] == base + dt.timedelta(minutes=5)
    assert alarm["cleared_at"] == base + dt.timedelta(minutes=8)
    assert alarm["rule_id"] == rule_id and alarm["severity"] == "critical"
    state = conn.execute("SELECT * FROM alert_rule_state WHERE rule_id = %s AND device_id = %s",
                         (rule_id, device)).fetchone()
    assert state["phase"] == "pending" and state["last_sample_at"] == base + dt.timedelta(
        minutes=9)


def test_disabling_a_rule_clears_its_alarms(conn, fleet_ids):
    rulco = fleet_ids["Rulco"]
    device = rulco["devices"][1]
    admin = admin_of(rulco["company"])
    rule_id = rule_store.create_rule(conn, admin, rulco["company"],
                                     {**RULE, "name": "Instant", "code": "INSTANT",
                                      "duration_s": 0})
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=30)
    write_samples(conn, device, [(now, 60.0)])
    alert_rules.evaluate_rules(conn, now=now)
    assert rule_alarms(conn, device, "INSTANT")[-1]["cleared_at"] is None
    rule_store.update_rule(conn, admin, rule_id, {**RULE, "name": "Instant", "enabled": False})
    assert rule_alarms(conn, device, "INSTANT")[-1]["cleared_at"] is not None
    audit = conn.execute("SELECT action FROM audit_log WHERE target = %s ORDER BY id",
                         (f"alert_rule:{rule_id}",)).fetchall()
    assert [a["action"] for a in audit] == ["alert_rule.create", "alert_rule.update"]


def test_rules_are_company_private(conn, fleet_ids):
    rulco, other = fleet_ids["Rulco"], fleet_ids["Otherco"]
    rule_id = rule_store.create_rule(conn, admin_of(rulco["company"]), rulco["company"],
                                     {**RULE, "name": "Private", "code": "PRIVATE"})
    stranger = admin_of(other["company"])
    with pytest.raises(AccessDenied):
        rule_store.get_rule(conn, stranger, rule_id)
    with pytest.raises(AccessDenied):
        rule_store.update_rule(conn, stranger, rule_id, RULE)
    with pytest.raises(AccessDenied):
        rule_store.delete_rule(conn, stranger, rule_id)
    with pytest.raises(AccessDenied):  # a site of another company
        rule_store.create_rule(conn, stranger, other["company"],
                               {**RULE, "all_sites": False, "site_ids": [rulco["sites"][0]]})
    with pytest.raises(AccessDenied):
        rule_store.create_rule(conn, stranger, rulco["company"], RULE)
    viewer = AccessScope(role="viewer", company_id=rulco["company"], site_ids=frozenset())
    with pytest.raises(AccessDenied):
        rule_store.create_rule(conn, viewer, rulco["company"], {**RULE, "code": "V"})
    assert all(r["company_id"] == other["company"]
               for r in rule_store.list_rules(conn, stranger))
    with pytest.raises(RuleError, match="already has a rule"):
        rule_store.create_rule(conn, admin_of(rulco["company"]), rulco["company"],
                               {**RULE, "name": "Again", "code": "PRIVATE"})


def test_worker_job_evaluates_rules(kw_env, conn, fleet_ids):
    other = fleet_ids["Otherco"]
    rule_store.create_rule(conn, admin_of(other["company"]), other["company"],
                           {**RULE, "name": "Job", "code": "JOB_HOT", "duration_s": 0})
    write_samples(conn, other["devices"][0], [(dt.datetime.now(dt.UTC), 70.0)])
    result = subprocess.run(["kilowatch", "worker", "--once", "--job", "alert_rules"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert rule_alarms(conn, other["devices"][0], "JOB_HOT")
