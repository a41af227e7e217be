"""Decode and validate device messages without touching the database.

Telemetry is checked by hand-written code equivalent to
``kilowatch/schemas/telemetry.json`` (a generic validator is far too slow for
hundreds of thousands of points a second; ``tests/collector`` checks both
agree); the small messages (alarms, status, schedule acks) are checked with
their JSON Schemas. Every refusal carries one of :data:`REASONS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import orjson
from referencing import Registry, Resource

REASONS = (
    "bad_topic",          # not {prefix}/{serial}/telemetry|alarms|status|schedule/ack
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
    "unknown_revision",   # a schedule ack for a revision the device's site does not have
    "store_failed",       # the database refused the message (logged with details)
)
KINDS = ("telemetry", "alarms", "status", "schedule/ack")
MAX_POINT_VALUES = 10_000
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
SERIAL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POINT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_MAX_EPOCH_MS = 253_402_300_799_999
_NAME_CACHE_MAX = 100_000


class Invalid(Exception):
    """A message the platform refuses, with the reason and a short human detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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
    """Return an aware UTC datetime from RFC 3339 text or epoch milliseconds."""
    if type(raw) is int:
        if not 0 <= raw <= _MAX_EPOCH_MS:
            raise Invalid("bad_timestamp", f"epoch milliseconds out of range: {raw}")
        return dt.datetime.fromtimestamp(raw / 1000, dt.UTC)
    if isinstance(raw, str) and _RFC3339.match(raw):
        try:
            return dt.datetime.fromisoformat(raw.upper()).astimezone(dt.UTC)
        except ValueError:
            pass
    raise Invalid("bad_timestamp", f"not RFC 3339 with an offset nor epoch ms: {str(raw)[:40]!r}")


class Validator:
    """Validate messages against the protocol, with a clock and the raw retention."""

    def __init__(self, *, retention_days: int) -> None:
        self.retention = dt.timedelta(days=retention_days)
        self._good_names: set[str] = set()

    def check_time(self, ts: dt.datetime, now: dt.datetime) -> None:
        """Refuse a sample time too far in the future or older than the raw retention."""
        if ts > now + FUTURE_TOLERANCE:
            raise Invalid("future_timestamp", f"{ts.isoformat()} is ahead of the platform clock")
        if ts < now - self.retention:
            raise Invalid("too_old", f"{ts.isoformat()} is older than the raw retention")

    def telemetry(self, body: Any, now: dt.datetime) -> Telemetry:
        """Validate a decoded telemetry message; raise Invalid with the first problem."""
        if type(body) is not dict:
            raise Invalid("bad_schema", "a telemetry message is a JSON object")
        seq, samples = body.get("seq"), body.get("samples")
        if type(seq) is not int or not 0 <= seq < 2**63:
            raise Invalid("bad_schema", "seq must be a whole number ≥ 0")
        if type(samples) is not list or not samples:
            raise Invalid("bad_schema", "samples must be a non-empty array")
        total = 0
        for sample in samples:
            if type(sample) is not dict or "ts" not in sample or type(sample.get("v")) is not dict:
                raise Invalid("bad_schema", "each sample is an object with ts and v (an object)")
            total += len(sample["v"])
        if total > MAX_POINT_VALUES or len(samples) > MAX_POINT_VALUES:
            raise Invalid("too_many_samples", f"{total} point values (at most {MAX_POINT_VALUES})")
        parsed = []
        for sample in samples:
            ts = parse_ts(sample["ts"])
            self.check_time(ts, now)
            parsed.append((ts, self._values(sample["v"])))
        times = [p[0] for p in parsed]
        points = sum(len(p[1]) for p in parsed)
        return Telemetry(seq, parsed, points, min(times), max(times))

    def _values(self, raw: dict) -> dict[str, float]:
        """Check names and values; convert ints/booleans to floats and drop nulls, in place."""
        names = self._good_names
        if not raw.keys() <= names:
            for name in raw:
                if name not in names:
                    if type(name) is not str or len(name) > 64 or not POINT_NAME.match(name):
                        raise Invalid("bad_point_name", f"{str(name)[:80]!r}")
                    if len(names) >= _NAME_CACHE_MAX:
                        names.clear()
                    names.add(name)
        nulls: list[str] = []
        for name, value in raw.items():
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN or ±infinity
                    raise Invalid("bad_value", f"{name}: {value} is not a finite number")
            elif kind is int or kind is bool:
                try:
                    raw[name] = float(value)  # replacing a value while iterating is safe
                except OverflowError:
                    raise Invalid("bad_value", f"{name}: integer too large") from None
            elif value is None:
                nulls.append(name)
            else:
                raise Invalid("bad_value", f"{name}: {str(value)[:40]!r} is not a number")
        for name in nulls:
            del raw[name]
        return raw

    def small(self, kind: str, body: Any, now: dt.datetime) -> dict:
        """Validate an alarm, status or schedule-ack message; return it with ``at`` parsed."""
        error = jsonschema.exceptions.best_match(_validator(kind).iter_errors(body))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "message"
            raise Invalid("bad_schema", f"{where}: {error.message}"[:300])
        if any(isinstance(v, str) and "\x00" in v for v in body.values()):
            raise Invalid("bad_schema", "text fields may not contain NUL characters")
        message = dict(body)
        message["at"] = parse_ts(body["ts"]) if "ts" in body else now
        if message["at"] > now + FUTURE_TOLERANCE:
            raise Invalid("future_timestamp", f"{message['at'].isoformat()} is ahead")
        return message


_SCHEMA_FILES = {"telemetry": "telemetry.json", "alarms": "alarm.json",
                 "status": "status.json", "schedule/ack": "schedule_ack.json"}


def load_schema(name: str) -> dict:
    """Return one of the protocol's JSON Schemas from ``kilowatch/schemas``."""
    return json.loads(resources.files("kilowatch").joinpath("schemas", name).read_text())


@cache
def _registry() -> Registry:
    schemas = [load_schema(f) for f in _SCHEMA_FILES.values()]
    return Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas)


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    schema = load_schema(_SCHEMA_FILES[kind])
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)


def schema_validator(kind: str) -> jsonschema.protocols.Validator:
    """Return the JSON Schema validator of a message kind (tests compare it with ours)."""
    return _validator(kind)
