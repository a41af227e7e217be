"""Decode and validate device messages against the protocol's JSON Schemas, without the database.

The schemas in ``kilowatch/schemas`` are the protocol's only definition: every
message is validated with them, compiled once by jsonschema-rs (a 10,000-value
telemetry message takes one to two milliseconds). Where a schema error lies names
its reason (:data:`_REASON_AT`). What a JSON Schema cannot say is checked in
code after it, and each such check is listed in :data:`BEYOND_SCHEMA`;
``tests/collector/test_protocol_schemas.py`` proves that every schema rule is
enforced and that no other rule is. Every refusal carries one of :data:`REASONS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson

REASONS = (
    "bad_topic",          # not {prefix}/{serial}/telemetry|alarms|status|schedule/ack|plan/ack
    "bad_json",           # not UTF-8 JSON
    "bad_schema",         # does not match the message's JSON Schema
    "bad_timestamp",      # ts neither RFC 3339 with an offset nor epoch milliseconds
    "bad_point_name",     # a point name outside [a-z][a-z0-9_]*(\.[a-z0-9_]+)*, ≤ 64 chars
    "bad_value",          # a value that is not a finite number, boolean or null
    "future_timestamp",   # a sample more than 5 minutes ahead of the platform's clock
    "too_old",            # a sample older than the raw retention
    "too_many_samples",   # more than 10,000 point values in one message
    "unknown_serial",     # no registered device has this serial
    "too_many_points",    # the device would exceed its catalog bound of point names
    "unknown_revision",   # a schedule or plan ack for a revision the device was never sent
    "store_failed",       # the database refused the message (logged with details)
)
KINDS = ("telemetry", "alarms", "status", "schedule/ack", "plan/ack")
SCHEMA_FILES = {"telemetry": "telemetry.json", "alarms": "alarm.json",
                "status": "status.json", "schedule/ack": "schedule_ack.json",
                "plan/ack": "plan_ack.json"}
MAX_POINT_VALUES = 10_000
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# The rules no JSON Schema can express, each with the reason it refuses with.
BEYOND_SCHEMA = {
    "future": ("future_timestamp",
               "a time more than 5 minutes ahead of the platform's clock (a schema has no clock)"),
    "retention": ("too_old",
                  "a telemetry sample older than the raw retention (a setting of the platform)"),
    "point_values": ("too_many_samples",
                     "more than 10,000 point values in all samples together (the telemetry "
                     "schema says so in words; a schema can only bound each array)"),
    "datetime": ("bad_timestamp",
                 "a leap second (:60) or a time outside the years 1-9999 in UTC: RFC 3339 "
                 "allows them, a Python datetime cannot hold them"),
    "nul": ("bad_schema",
            "a NUL character in a text field the platform stores (PostgreSQL text cannot "
            "hold one)"),
}

# Where a schema error lies (its keyword's location, through $refs) names the reason;
# any other schema error is bad_schema.
_REASON_AT = (
    ("telemetry.json#/$defs/timestamp/", "bad_timestamp"),
    ("telemetry.json#/properties/samples/maxItems", "too_many_samples"),
    ("telemetry.json#/properties/samples/items/properties/v/propertyNames", "bad_point_name"),
    ("telemetry.json#/properties/samples/items/properties/v/additionalProperties/",
     "bad_value"),
)


def load_schema(name: str) -> dict:
    """Return one of the protocol's JSON Schemas from ``kilowatch/schemas``."""
    return json.loads(resources.files("kilowatch").joinpath("schemas", name).read_text())


# parse_ts also checks a ts on its own, by the telemetry schema's rules.
_TEXT_TS, _EPOCH_TS = load_schema("telemetry.json")["$defs"]["timestamp"]["oneOf"]
_RFC3339 = re.compile(_TEXT_TS["pattern"])


class Invalid(Exception):
    """A message the platform refuses, with the reason and a short human detail.

    ``rule`` names what refused it: the schema keyword's location
    (``telemetry.json#/properties/seq/type``) or a key of :data:`BEYOND_SCHEMA`.
    """

    def __init__(self, reason: str, detail: str, *, rule: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.rule = rule


def _beyond(rule: str, detail: str) -> Invalid:
    return Invalid(BEYOND_SCHEMA[rule][0], detail, rule=rule)


@dataclasses.dataclass(slots=True)
class Telemetry:
    """A valid telemetry message: samples as (UTC time, {point: value}) in message order."""

    seq: int
    samples: list[tuple[dt.datetime, dict[str, float]]]
    points: int
    oldest: dt.datetime
    newest: dt.datetime


def parse_topic(topic: str, prefix: str) -> tuple[str, str]:
    """Split ``{prefix}/{serial}/{kind}`` into (serial, kind) or raise Invalid."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise Invalid("bad_topic", "topic outside the prefix")
    serial, _, kind = topic[len(head):].partition("/")
    if kind not in KINDS:
        raise Invalid("bad_topic", f"unknown message kind {kind[:40]!r}")
    if not SERIAL.match(serial):
        raise Invalid("unknown_serial", "a serial is 1-64 letters, digits, '-' or '_'")
    return serial, kind


def decode_json(payload: bytes) -> Any:
    """Parse a payload as strict UTF-8 JSON (no NaN/Infinity) or raise Invalid('bad_json')."""
    try:
        return orjson.loads(payload)
    except (orjson.JSONDecodeError, RecursionError) as error:
        raise Invalid("bad_json", str(error)[:200]) from None


def parse_ts(raw: Any) -> dt.datetime:
    """Return an aware UTC datetime from RFC 3339 text or epoch milliseconds.

    As in JSON Schema, a float without a fraction (``1.5e12``) is an integer.
    """
    if type(raw) is float and raw.is_integer():
        raw = int(raw)
    if type(raw) is int:
        if not _EPOCH_TS["minimum"] <= raw <= _EPOCH_TS["maximum"]:
            raise Invalid("bad_timestamp", f"epoch milliseconds out of range: {raw}")
        return dt.datetime.fromtimestamp(raw / 1000, dt.UTC)
    if isinstance(raw, str) and _RFC3339.fullmatch(raw):
        try:
            return dt.datetime.fromisoformat(raw.upper()).astimezone(dt.UTC)
        except (ValueError, OverflowError):
            raise _beyond("datetime", f"no such time: {raw[:40]!r}") from None
    raise Invalid("bad_timestamp", f"not RFC 3339 with an offset nor epoch ms: {str(raw)[:40]!r}")


def _schema_ts(raw: str | int | float) -> dt.datetime:
    """Parse a ts the schema accepted (its pattern need not be matched again: it is slow)."""
    if type(raw) is str:
        try:
            return dt.datetime.fromisoformat(raw).astimezone(dt.UTC)
        except (ValueError, OverflowError):
            pass  # a lower-case t or z, or a time a datetime cannot hold
    return parse_ts(raw)


class Validator:
    """Validate messages against the protocol, with a clock and the raw retention."""

    def __init__(self, *, retention_days: int) -> None:
        self.retention = dt.timedelta(days=retention_days)

    def check_time(self, ts: dt.datetime, now: dt.datetime) -> None:
        """Refuse a sample time too far in the future or older than the raw retention."""
        if ts > now + FUTURE_TOLERANCE:
            raise _beyond("future", f"{ts.isoformat()} is ahead of the platform clock")
        if ts < now - self.retention:
            raise _beyond("retention", f"{ts.isoformat()} is older than the raw retention")

    def telemetry(self, body: Any, now: dt.datetime) -> Telemetry:
        """Validate a decoded telemetry message; raise Invalid with the first problem."""
        check_schema("telemetry", body)
        samples = body["samples"]
        total = sum(len(sample["v"]) for sample in samples)
        if total > MAX_POINT_VALUES:
            raise _beyond("point_values", f"{total} point values (at most {MAX_POINT_VALUES})")
        parsed = []
        earliest, latest = now - self.retention, now + FUTURE_TOLERANCE
        for sample in samples:
            ts = _schema_ts(sample["ts"])
            if not earliest <= ts <= latest:
                self.check_time(ts, now)
            parsed.append((ts, _values(sample["v"])))
        times = [p[0] for p in parsed]
        points = sum(len(p[1]) for p in parsed)
        return Telemetry(int(body["seq"]), parsed, points, min(times), max(times))

    def small(self, kind: str, body: Any, now: dt.datetime) -> dict:
        """Validate an alarm, status, schedule-ack or plan-ack message; return it with ``at``."""
        check_schema(kind, body)
        texts, integers = _typed_fields(kind)
        for name in texts:
            if "\x00" in body.get(name, ""):
                raise _beyond("nul", f"{name}: text fields may not contain NUL characters")
        message = dict(body)
        for name in integers & body.keys():
            message[name] = int(body[name])  # 7.0 is an integer to JSON Schema
        message["at"] = parse_ts(body["ts"]) if "ts" in body else now
        if message["at"] > now + FUTURE_TOLERANCE:
            raise _beyond("future", f"{message['at'].isoformat()} is ahead")
        return message


def _values(raw: dict) -> dict[str, float]:
    """Convert ints and booleans to floats and drop nulls, in place."""
    nulls: list[str] = []
    for name, value in raw.items():
        if type(value) is float:
            continue
        if value is None:
            nulls.append(name)
        else:  # an int or a boolean: the schema allows nothing else; orjson's ints fit a float
            raw[name] = float(value)  # replacing a value while iterating is safe
    for name in nulls:
        del raw[name]
    return raw


def check_schema(kind: str, body: Any) -> None:
    """Raise Invalid, with the reason where the error lies, unless ``body`` fits the schema."""
    try:
        _validator(kind).validate(body)
    except jsonschema_rs.ValidationError as error:
        rule = (error.absolute_keyword_location or "").rpartition("/schemas/")[2]
        reason = next((r for at, r in _REASON_AT if rule.startswith(at)), "bad_schema")
        where = "/".join(str(p) for p in error.instance_path) or "message"
        message = error.message
        if len(message) > 200:  # the message quotes the whole value: name the rule instead
            message = f"breaks the schema's {rule.rpartition('/')[2]!r} rule"
        raise Invalid(reason, f"{where}: {message}"[:300], rule=rule) from None


@cache
def _validator(kind: str) -> jsonschema_rs.Validator:
    schemas = [load_schema(name) for name in SCHEMA_FILES.values()]
    registry = jsonschema_rs.Registry([(schema["$id"], schema) for schema in schemas])
    # Formats are assertions here (date-time is a real date and time); offline: the
    # schemas refer to each other by $id and nothing is fetched.
    return jsonschema_rs.validator_for(load_schema(SCHEMA_FILES[kind]), registry=registry,
                                       validate_formats=True, ignore_unknown_formats=False,
                                       offline=True)


@cache
def _typed_fields(kind: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """Return the top-level text fields and integer fields of a message kind's schema."""
    properties = load_schema(SCHEMA_FILES[kind])["properties"]
    texts = tuple(n for n, p in properties.items() if p.get("type") == "string")
    integers = frozenset(n for n, p in properties.items() if p.get("type") == "integer")
    return texts, integers
