"""The alert rules of a company, listed, created, changed and deleted within an access scope.

Only the company's administrators (and superadmins) change its rules; every change is
audited. A change that narrows a rule, and a deletion, clear the rule's alarms on the
devices it no longer watches. Rules themselves and their evaluation are in
:mod:`kilowatch.alarms.rules`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, company_filter
from kilowatch.alarms import events as alarms
from kilowatch.alarms.rules import (
    _RULES_SELECT,
    Rule,
    RuleError,
    _covered_devices,
    from_row,
    validate_rule,
)
from kilowatch.ids import parse_id


def _require_admin(scope: AccessScope, company_id: int) -> None:
    if not scope.may_administer_company(company_id):
        raise AccessDenied("only the company's administrators manage its alert rules")


def list_rules(conn: psycopg.Connection, scope: AccessScope, *,
               company_id: int | None = None) -> list[dict]:
    """Return the alert rules of the caller's company (every company for platform staff)."""
    conditions = [company_filter(scope, sql.Identifier("r", "company_id"))]
    params: list[Any] = []
    if company_id is not None:
        conditions.append(sql.SQL("r.company_id = %s"))
        params.append(company_id)
    query = sql.SQL(_RULES_SELECT + "WHERE {} ORDER BY c.name, r.name").format(
        sql.SQL(" AND ").join(conditions))
    return conn.execute(query, params).fetchall()


def get_rule(conn: psycopg.Connection, scope: AccessScope, rule_id: object) -> dict:
    """Return one rule of the caller's company, or raise AccessDenied."""
    rule_id = parse_id(rule_id)
    if rule_id is None:
        raise AccessDenied("no such rule")
    query = sql.SQL(_RULES_SELECT + "WHERE r.id = %s AND {}").format(
        company_filter(scope, sql.Identifier("r", "company_id")))
    row = conn.execute(query, (rule_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such rule")
    return row


def rule_points(conn: psycopg.Connection, scope: AccessScope, company_id: int) -> list[dict]:
    """Return the points a rule of this company can watch: canonical ones and those sent."""
    _require_admin(scope, company_id)
    return conn.execute(
        """SELECT p.name, p.unit FROM points p
           WHERE p.description IS NOT NULL OR EXISTS (
               SELECT 1 FROM device_points dp JOIN devices d ON d.id = dp.device_id
               JOIN sites s ON s.id = d.site_id
               WHERE dp.point_id = p.id AND s.company_id = %s)
           ORDER BY p.name LIMIT 5000""", (company_id,)).fetchall()


def _public(rule: Rule) -> dict:
    return {k: v for k, v in dataclasses.asdict(rule).items() if k not in ("id", "company_id")}


def _check_sites(conn: psycopg.Connection, company_id: int, site_ids: tuple[int, ...]) -> None:
    found = conn.execute("SELECT count(*) AS n FROM sites WHERE company_id = %s AND id = ANY(%s)",
                         (company_id, list(site_ids))).fetchone()["n"]
    if found != len(site_ids):
        raise AccessDenied("a site of the rule is not one of the company's sites")


def _set_sites(conn: psycopg.Connection, rule_id: int, company_id: int,
               site_ids: tuple[int, ...]) -> None:
    conn.execute("DELETE FROM alert_rule_sites WHERE rule_id = %s", (rule_id,))
    conn.execute("INSERT INTO alert_rule_sites (rule_id, site_id, company_id) "
                 "SELECT %s, unnest(%s::int[]), %s", (rule_id, list(site_ids), company_id))


def create_rule(conn: psycopg.Connection, scope: AccessScope, company_id: int,
                fields: Mapping[str, Any]) -> int:
    """Create a rule for a company the caller administers; return its id."""
    _require_admin(scope, company_id)
    rule = validate_rule(fields)
    with conn.transaction():
        _check_sites(conn, company_id, rule.site_ids)
        try:
            rule_id = conn.execute(
                """INSERT INTO alert_rules (company_id, name, code, point, comparison, threshold,
                       clear_threshold, duration_s, severity, all_sites, enabled, created_by)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (company_id, rule.name, rule.code, rule.point, rule.comparison, rule.threshold,
                 rule.clear_threshold, rule.duration_s, rule.severity, rule.all_sites,
                 rule.enabled, scope.actor)).fetchone()["id"]
        except psycopg.errors.UniqueViolation:
            raise RuleError(f"the company already has a rule with the code {rule.code}") from None
        _set_sites(conn, rule_id, company_id, rule.site_ids)
        audit.record(conn, scope, "alert_rule.create", target=f"alert_rule:{rule_id}",
                     company_id=company_id, after=_public(rule))
    return rule_id


def update_rule(conn: psycopg.Connection, scope: AccessScope, rule_id: object,
                fields: Mapping[str, Any]) -> Rule:
    """Change a rule (its code stays); clear its alarms on devices it no longer covers."""
    before = get_rule(conn, scope, rule_id)
    _require_admin(scope, before["company_id"])
    rule = validate_rule({**fields, "code": before["code"]})
    with conn.transaction():
        _check_sites(conn, before["company_id"], rule.site_ids)
        conn.execute(
            """UPDATE alert_rules SET name = %s, point = %s, comparison = %s, threshold = %s,
                   clear_threshold = %s, duration_s = %s, severity = %s, all_sites = %s,
                   enabled = %s, updated_at = now() WHERE id = %s""",
            (rule.name, rule.point, rule.comparison, rule.threshold, rule.clear_threshold,
             rule.duration_s, rule.severity, rule.all_sites, rule.enabled, before["id"]))
        _set_sites(conn, before["id"], before["company_id"], rule.site_ids)
        if rule.point != before["point"]:
            conn.execute("DELETE FROM alert_rule_state WHERE rule_id = %s", (before["id"],))
        rule = dataclasses.replace(rule, id=before["id"], company_id=before["company_id"])
        _retire_uncovered(conn, rule, "rule changed")
        audit.record(conn, scope, "alert_rule.update", target=f"alert_rule:{before['id']}",
                     company_id=before["company_id"], before=_public(from_row(before)),
                     after=_public(rule))
    return rule


def delete_rule(conn: psycopg.Connection, scope: AccessScope, rule_id: object) -> None:
    """Delete a rule of a company the caller administers and clear its active alarms."""
    before = get_rule(conn, scope, rule_id)
    _require_admin(scope, before["company_id"])
    rule = dataclasses.replace(from_row(before), enabled=False)
    with conn.transaction():
        _retire_uncovered(conn, rule, "rule deleted")
        conn.execute("DELETE FROM alert_rules WHERE id = %s", (before["id"],))
        audit.record(conn, scope, "alert_rule.delete", target=f"alert_rule:{before['id']}",
                     company_id=before["company_id"], before=_public(rule))


def _retire_uncovered(conn: psycopg.Connection, rule: Rule, why: str) -> None:
    """Clear the rule's alarms and forget its state on devices it no longer watches."""
    covered = _covered_devices(conn, rule)
    now = dt.datetime.now(dt.UTC)
    active = conn.execute(
        "SELECT device_id FROM alarms WHERE rule_id = %s AND cleared_at IS NULL "
        "AND NOT device_id = ANY(%s::int[])", (rule.id, covered)).fetchall()
    for row in active:
        alarms.clear_alarm(conn, device_id=row["device_id"], code=rule.code, at=now, message=why)
    conn.execute("DELETE FROM alert_rule_state WHERE rule_id = %s "
                 "AND NOT device_id = ANY(%s::int[])", (rule.id, covered))
