"""Alert rules: a company's thresholds on a point, with hysteresis and a minimum duration.

A rule such as ``bms.t_max > 45 for 300 s, clear below 40`` raises an alarm
(source ``rule``, the rule's code and severity) on a device once every sample
of that point has breached the threshold for at least the duration, and
clears it at the first sample on the safe side of the clear threshold.

Evaluation is a pure state machine (:func:`step`, :func:`evaluate`) driven by
the ``alert_rules`` worker job (:func:`evaluate_rules`), which reads the
samples stored since each (rule, device) watermark — the newest sample time
already evaluated — in time order. It reads the collector's committed rows
and never touches the collector: a sample that arrives older than one already
evaluated for that device is not evaluated (rules judge the present, not
replays of the past). A company's administrators list, create, change and delete
its rules through :mod:`kilowatch.alarms.rule_store`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import operator
import re
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from kilowatch.alarms import events as alarms
from kilowatch.ids import parse_id

log = logging.getLogger(__name__)

COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
POINT_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MAX_DURATION_S = 86_400
LOOKBACK_S = 60  # how far back a new (rule, device) pair starts, beyond the duration
MAX_SAMPLES_PER_DEVICE = 5_000  # per run; a backlog is worked through over several runs
RESERVED_CODES = ("COMM_LOST",)


class RuleError(ValueError):
    """A rule with a value the platform does not accept."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rule:
    """One alert rule as evaluated: the point, the comparison and the thresholds."""

    point: str
    comparison: str
    threshold: float
    clear_threshold: float
    duration_s: int = 0
    id: int | None = None
    company_id: int | None = None
    name: str = ""
    code: str = ""
    severity: str = "major"
    all_sites: bool = True
    site_ids: tuple[int, ...] = ()
    enabled: bool = True

    def breaches(self, value: float) -> bool:
        """Say whether a value is on the alarm side of the threshold."""
        return COMPARISONS[self.comparison](value, self.threshold)

    def recovered(self, value: float) -> bool:
        """Say whether a value is on the safe side of the clear threshold."""
        if self.comparison in (">", ">="):
            return value < self.clear_threshold
        return value > self.clear_threshold

    def describe(self) -> str:
        """Say the rule in one line: ``bms.t_max > 45 for 5 min, clear below 40``."""
        side = "below" if self.comparison in (">", ">=") else "above"
        duration = f" for {format_duration(self.duration_s)}" if self.duration_s else ""
        return (f"{self.point} {self.comparison} {self.threshold:g}{duration}, "
                f"clear {side} {self.clear_threshold:g}")


@dataclasses.dataclass(frozen=True)
class RuleState:
    """Where a rule stands on one device: ``normal``, ``pending`` (breaching) or ``active``."""

    phase: str = "normal"
    pending_since: dt.datetime | None = None
    last_sample_at: dt.datetime | None = None
    last_value: float | None = None


@dataclasses.dataclass(frozen=True)
class Change:
    """A raise or a clear decided at the sample of time ``at``."""

    kind: str  # "raise" or "clear"
    at: dt.datetime
    value: float
    since: dt.datetime | None = None


def format_duration(seconds: float) -> str:
    """Say a duration briefly: ``45 s``, ``5 min``, ``2 h 10 min``, ``3 d 4 h``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


# ---- evaluation (pure) ------------------------------------------------------------------------

def step(rule: Rule, state: RuleState, at: dt.datetime,
         value: float | None) -> tuple[RuleState, Change | None]:
    """Feed one sample to the state machine; return the new state and a raise/clear if any."""
    if value is None or not math.isfinite(value):
        return dataclasses.replace(state, last_sample_at=at), None
    if state.phase == "active":
        if rule.recovered(value):
            return RuleState("normal", None, at, value), Change("clear", at, value)
        return RuleState("active", state.pending_since, at, value), None
    if not rule.breaches(value):
        return RuleState("normal", None, at, value), None
    since = state.pending_since if state.phase == "pending" else at
    if (at - since).total_seconds() >= rule.duration_s:
        return RuleState("active", since, at, value), Change("raise", at, value, since)
    return RuleState("pending", since, at, value), None


def evaluate(rule: Rule, state: RuleState,
             samples: Iterable[tuple[dt.datetime, float | None]]) -> tuple[RuleState, list[Change]]:
    """Feed samples in time order; return the final state and every raise and clear."""
    changes: list[Change] = []
    for at, value in samples:
        state, change = step(rule, state, at, value)
        if change is not None:
            changes.append(change)
    return state, changes


# ---- validation -----------------------------------------------------------------------------

def _number(fields: Mapping[str, Any], name: str, label: str) -> float:
    raw = fields.get(name)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RuleError(f"{label} must be a number") from None
    if not math.isfinite(value):
        raise RuleError(f"{label} must be a finite number")
    return value


def _duration(fields: Mapping[str, Any]) -> int:
    raw = fields.get("duration_s") or 0
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RuleError("the duration must be a number of seconds") from None
    if not 0 <= value <= MAX_DURATION_S or not value.is_integer():
        raise RuleError(f"the duration is a whole number of seconds from 0 to {MAX_DURATION_S}")
    return int(value)


def _code(fields: Mapping[str, Any]) -> str:
    code = str(fields.get("code") or "").strip().upper()
    if not code:
        code = re.sub(r"[^A-Z0-9]+", "_", str(fields.get("name") or "").upper()).strip("_")
        code = code if code[:1].isalpha() else f"RULE_{code}"
    if not CODE_PATTERN.match(code) or code in RESERVED_CODES:
        raise RuleError("the code is 2-64 capital letters, digits or '_', starting with a "
                        "letter, and not COMM_LOST")
    return code


def validate_rule(fields: Mapping[str, Any]) -> Rule:
    """Check a rule's fields (from a form, the CLI or JSON) and return the rule."""
    name = str(fields.get("name") or "").strip()
    if not 1 <= len(name) <= 120:
        raise RuleError("give the rule a name (at most 120 characters)")
    point = str(fields.get("point") or "").strip()
    if not POINT_PATTERN.match(point) or len(point) > 64:
        raise RuleError("the point is a point name such as bms.t_max")
    comparison = fields.get("comparison")
    if not isinstance(comparison, str) or comparison not in COMPARISONS:
        raise RuleError(f"the comparison is one of {' '.join(COMPARISONS)}")
    threshold = _number(fields, "threshold", "the threshold")
    clear = fields.get("clear_threshold")
    clear = threshold if clear in (None, "") else _number(fields, "clear_threshold",
                                                           "the clear threshold")
    if (comparison in (">", ">=") and clear > threshold) or (
            comparison in ("<", "<=") and clear < threshold):
        side = "at or below" if comparison in (">", ">=") else "at or above"
        raise RuleError(f"the clear threshold must be {side} the threshold (hysteresis)")
    severity = fields.get("severity")
    if not isinstance(severity, str) or severity not in alarms.SEVERITIES:
        raise RuleError(f"the severity is one of {', '.join(alarms.SEVERITIES)}")
    site_ids = tuple(sorted({parse_id(s) for s in fields.get("site_ids") or ()}))
    if None in site_ids:
        raise RuleError("sites are given by their ids")
    all_sites = bool(fields.get("all_sites", not site_ids))
    if not all_sites and not site_ids:
        raise RuleError("pick the sites the rule applies to, or all sites")
    return Rule(name=name, code=_code(fields), point=point, comparison=comparison,
                threshold=threshold, clear_threshold=clear, duration_s=_duration(fields),
                severity=severity, all_sites=all_sites, site_ids=() if all_sites else site_ids,
                enabled=bool(fields.get("enabled", True)))


# ---- stored rules (shared with kilowatch.alarms.rule_store) ----------------------------------

def from_row(row: Mapping[str, Any]) -> Rule:
    """Return the rule of a stored row (from ``rule_store.list_rules`` or ``get_rule``)."""
    return Rule(id=row["id"], company_id=row["company_id"], name=row["name"], code=row["code"],
                point=row["point"], comparison=row["comparison"], threshold=row["threshold"],
                clear_threshold=row["clear_threshold"], duration_s=row["duration_s"],
                severity=row["severity"], all_sites=row["all_sites"],
                site_ids=tuple(row["site_ids"] or ()), enabled=row["enabled"])


_RULES_SELECT = """
SELECT r.*, coalesce((SELECT array_agg(rs.site_id ORDER BY rs.site_id) FROM alert_rule_sites rs
                      WHERE rs.rule_id = r.id), '{{}}') AS site_ids,
       c.name AS company_name
FROM alert_rules r JOIN companies c ON c.id = r.company_id
"""


def _covered_devices(conn: psycopg.Connection, rule: Rule) -> list[int]:
    """Return the devices a rule watches: on its sites and sending its point."""
    if not rule.enabled:
        return []
    rows = conn.execute(
        """SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id
           JOIN device_points dp ON dp.device_id = d.id JOIN points p ON p.id = dp.point_id
           WHERE s.company_id = %s AND p.name = %s
             AND (%s OR s.id = ANY(%s::int[])) ORDER BY d.id""",
        (rule.company_id, rule.point, rule.all_sites, list(rule.site_ids))).fetchall()
    return [row["id"] for row in rows]


# ---- evaluation against stored samples (the worker job) --------------------------------------

_SAMPLES_SQL = """
SELECT w.device_id, t.time, t.value
FROM unnest(%(devices)s::int[], %(since)s::timestamptz[]) AS w (device_id, since)
CROSS JOIN LATERAL (
    SELECT x.time, x.value FROM telemetry x
    WHERE x.device_id = w.device_id AND x.point_id = %(point_id)s AND x.time > w.since
    ORDER BY x.time LIMIT %(limit)s
) t
ORDER BY w.device_id, t.time
"""


def _load_states(conn: psycopg.Connection, rule_id: int,
                 devices: list[int]) -> dict[int, RuleState]:
    rows = conn.execute("SELECT * FROM alert_rule_state WHERE rule_id = %s "
                        "AND device_id = ANY(%s)", (rule_id, devices)).fetchall()
    return {r["device_id"]: RuleState(r["phase"], r["pending_since"], r["last_sample_at"],
                                      r["last_value"]) for r in rows}


def _save_states(conn: psycopg.Connection, rule_id: int, states: dict[int, RuleState]) -> None:
    if not states:
        return
    ids = sorted(states)
    conn.execute(
        """INSERT INTO alert_rule_state (rule_id, device_id, last_sample_at, phase,
                                         pending_since, last_value)
           SELECT %s, unnest(%s::int[]), unnest(%s::timestamptz[]), unnest(%s::text[]),
                  unnest(%s::timestamptz[]), unnest(%s::float8[])
           ON CONFLICT (rule_id, device_id) DO UPDATE
           SET last_sample_at = excluded.last_sample_at, phase = excluded.phase,
               pending_since = excluded.pending_since, last_value = excluded.last_value,
               updated_at = now()""",
        (rule_id, ids, [states[i].last_sample_at for i in ids], [states[i].phase for i in ids],
         [states[i].pending_since for i in ids], [states[i].last_value for i in ids]))


def _message(rule: Rule, change: Change, unit: str | None) -> str:
    unit = f" {unit}" if unit else ""
    if change.kind == "clear":
        side = "below" if rule.comparison in (">", ">=") else "above"
        return f"{rule.point} = {change.value:g}{unit}, back {side} {rule.clear_threshold:g}{unit}"
    held = f" for {format_duration((change.at - change.since).total_seconds())}" \
        if rule.duration_s else ""
    return (f"{rule.name}: {rule.point} = {change.value:g}{unit} "
            f"({rule.comparison} {rule.threshold:g}{unit}{held})")


def _apply(conn: psycopg.Connection, rule: Rule, device_id: int, changes: list[Change],
           unit: str | None) -> tuple[int, int]:
    raised = cleared = 0
    for change in changes:
        if change.kind == "raise":
            alarms.raise_alarm(conn, device_id=device_id, code=rule.code, severity=rule.severity,
                               source="rule", message=_message(rule, change, unit),
                               at=change.at, rule_id=rule.id)
            raised += 1
        elif alarms.clear_alarm(conn, device_id=device_id, code=rule.code, at=change.at,
                                message=_message(rule, change, unit)) is not None:
            cleared += 1
    return raised, cleared


def evaluate_rule(conn: psycopg.Connection, rule: Rule, *, now: dt.datetime,
                  limit: int = MAX_SAMPLES_PER_DEVICE) -> dict[str, int]:
    """Evaluate one rule on the samples stored since each device's watermark, atomically."""
    point = conn.execute("SELECT id, unit FROM points WHERE name = %s",
                         (rule.point,)).fetchone()
    devices = _covered_devices(conn, rule)
    if point is None or not devices:
        return {"samples": 0, "raised": 0, "cleared": 0}
    start = now - dt.timedelta(seconds=rule.duration_s + LOOKBACK_S)
    totals = {"samples": 0, "raised": 0, "cleared": 0}
    with conn.transaction():
        states = _load_states(conn, rule.id, devices)
        since = [states[d].last_sample_at if d in states else start for d in devices]
        rows = conn.execute(_SAMPLES_SQL, {"devices": devices, "since": since, "limit": limit,
                                           "point_id": point["id"]}).fetchall()
        by_device: dict[int, list[tuple]] = {}
        for row in rows:
            by_device.setdefault(row["device_id"], []).append((row["time"], row["value"]))
        # a device seen for the first time keeps its start as watermark even without samples
        changed = {d: RuleState(last_sample_at=start) for d in devices if d not in states}
        for device_id, samples in by_device.items():
            state, changes = evaluate(rule, states.get(device_id, RuleState()), samples)
            changed[device_id] = state
            raised, cleared = _apply(conn, rule, device_id, changes, point["unit"])
            totals["samples"] += len(samples)
            totals["raised"] += raised
            totals["cleared"] += cleared
        _save_states(conn, rule.id, changed)
    return totals


def evaluate_rules(conn: psycopg.Connection, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Evaluate every enabled rule of every company (the worker's ``alert_rules`` job)."""
    now = now or dt.datetime.now(dt.UTC)
    rows = conn.execute(sql.SQL(_RULES_SELECT + "WHERE r.enabled ORDER BY r.id").format()
                        ).fetchall()
    totals = {"rules": len(rows), "samples": 0, "raised": 0, "cleared": 0}
    for row in rows:
        try:
            counts = evaluate_rule(conn, from_row(row), now=now)
        except psycopg.OperationalError:
            raise
        except Exception:  # one broken rule must not stop the others
            log.exception("alert rule %s (%s) failed; retried next run", row["id"], row["code"])
            continue
        for name, count in counts.items():
            totals[name] += count
    return totals
