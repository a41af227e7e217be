"""The JSON Schemas are the device protocol: the collector enforces every rule in them, and
no other rule than those it lists in ``BEYOND_SCHEMA``.

Payloads are made from the schemas themselves: for each constraint keyword one that
breaks it, for each keyword values at its bounds, and random mutations. Each is judged
by an independent validator (the ``jsonschema`` package, with RFC 3339 date-times
checked here) and must be judged the same way by the collector.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import functools
import json
import random
import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

from collector.validation import (
    BEYOND_SCHEMA,
    REASONS,
    SCHEMA_FILES,
    Invalid,
    Validator,
    decode_json,
    load_schema,
)

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
TS = "2026-11-22T09:59:00Z"
EPOCH_MS = int((NOW - dt.timedelta(seconds=30)).timestamp() * 1000)

# Valid messages carrying every optional property, one per branch of a oneOf.
BASES = {
    "telemetry": [
        {"seq": 0, "samples": [{"ts": EPOCH_MS, "v": {"a": 1}}], "extra": "ignored"},
        {"seq": 5, "samples": [{"ts": TS, "v": {"pcs.p": 1.5, "bms.ok": True, "x.y": None}}]},
    ],
    "alarms": [
        {"ts": TS, "code": "BMS_OVERTEMP", "severity": "critical", "state": "raised",
         "message": "Cell temperature 61 °C"},
        {"ts": EPOCH_MS, "code": "X", "state": "cleared"},
    ],
    "status": [{"ts": TS, "state": "online", "firmware": "2.4.1"},
               {"ts": EPOCH_MS, "state": "offline"}],
    "schedule/ack": [{"revision": 7, "status": "rejected", "reason": "power too high",
                      "ts": TS},
                     {"revision": 1, "status": "applied", "ts": EPOCH_MS}],
    "plan/ack": [{"revision": 12, "status": "rejected", "reason": "power too high", "ts": TS},
                 {"revision": 1, "status": "applied", "ts": EPOCH_MS}],
}

# A schema-valid message each rule of BEYOND_SCHEMA refuses.
BEYOND_EXAMPLES = {
    "future": ("telemetry", {"seq": 1, "samples": [{"ts": "2026-11-22T10:06:00Z", "v": {}}]}),
    "retention": ("telemetry", {"seq": 1, "samples": [{"ts": "2026-10-01T10:00:00Z",
                                                       "v": {"a": 1}}]}),
    "point_values": ("telemetry", {"seq": 1, "samples": [
        {"ts": TS, "v": {f"p.x{i}": 1.0 for i in range(5001)}},
        {"ts": TS, "v": {f"p.y{i}": 1.0 for i in range(5000)}}]}),
    "datetime": ("status", {"ts": "2026-11-21T23:59:60Z", "state": "online"}),
    "nul": ("status", {"state": "online", "firmware": "2.4\u00001"}),
}

# Schema rules no JSON payload can break, and why.
UNBREAKABLE = {
    "telemetry.json#/$defs/point_name/type": "JSON object keys are always strings",
}

_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs"}
_CONSTRAINTS = {"type", "enum", "const", "required", "minimum", "maximum", "minLength",
                "maxLength", "pattern", "format", "minItems", "maxItems"}
_ZOO = ["text", "", 1.5, 7, 7.0, -3, 0, True, False, None, [], {}, [1], {"a": 1}]


# ---- the independent judge -------------------------------------------------------------

def _date_time(text: object) -> bool:
    """Say whether text is an RFC 3339 date-time (leap second at 23:59:60 UTC included)."""
    if not isinstance(text, str):
        return True
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?"
                         r"(?:[Zz]|([+-])(\d\d):(\d\d))", text)
    if not match:
        return False
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    sign, off_h, off_m = match.group(8), int(match.group(9) or 0), int(match.group(10) or 0)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    if not (1 <= month <= 12 and 1 <= day <= days[month - 1] and hour <= 23
            and minute <= 59 and second <= 60 and off_h <= 23 and off_m <= 59):
        return False
    offset = (off_h * 60 + off_m) * (-1 if sign == "-" else 1)
    return second < 60 or (hour * 60 + minute - offset) % 1440 == 23 * 60 + 59


@functools.cache
def _ecma(pattern: str) -> re.Pattern:
    # JSON Schema patterns are ECMA 262: "$" ends the text, where Python's also matches
    # before a final newline.
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _ecma_pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _ecma(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(_date_time)
_Judge = jsonschema.validators.extend(jsonschema.Draft202012Validator,
                                      {"pattern": _ecma_pattern})
_SCHEMAS = {name: load_schema(name) for name in SCHEMA_FILES.values()}
_REGISTRY = Registry().with_resources(
    (s["$id"], Resource.from_contents(s)) for s in _SCHEMAS.values())


def schema_accepts(kind: str, body: Any) -> bool:
    """The independent judge's verdict."""
    judge = _Judge(_SCHEMAS[SCHEMA_FILES[kind]], registry=_REGISTRY, format_checker=_FORMATS)
    return judge.is_valid(body)


def wire(body: Any) -> Any:
    """Return a body as the collector decodes it from the wire."""
    return decode_json(json.dumps(body).encode())


def collector_refusal(kind: str, body: Any) -> Invalid | None:
    """Send a body through the collector's decoding and validation; return its refusal."""
    validator = Validator(retention_days=31)
    try:
        decoded = wire(body)
        if kind == "telemetry":
            validator.telemetry(decoded, NOW)
        else:
            validator.small(kind, decoded, NOW)
    except Invalid as refusal:
        assert refusal.reason in REASONS
        return refusal
    return None


def beyond_rules(kind: str, body: dict) -> set[str]:
    """The BEYOND_SCHEMA rules a schema-valid message breaks, worked out on their own."""
    rules = set()
    if kind == "telemetry":
        stamps = [sample["ts"] for sample in body["samples"]]
        if sum(len(sample["v"]) for sample in body["samples"]) > 10_000:
            rules.add("point_values")
    else:
        stamps = [body["ts"]] if "ts" in body else []
        stored = {"alarms": ("code", "message"), "status": ("firmware",),
                  "schedule/ack": ("reason",), "plan/ack": ("reason",)}[kind]
        if any("\x00" in body.get(name, "") for name in stored):
            rules.add("nul")
    for ts in stamps:
        try:
            moment = (dt.datetime.fromisoformat(ts.upper()).astimezone(dt.UTC)
                      if isinstance(ts, str) else
                      dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ts))
        except (ValueError, OverflowError):
            rules.add("datetime")
            continue
        if moment > NOW + dt.timedelta(minutes=5):
            rules.add("future")
        if kind == "telemetry" and moment < NOW - dt.timedelta(days=31):
            rules.add("retention")
    return rules


def assert_judged_alike(kind: str, body: Any, why: object = "") -> bool:
    """Assert the collector refuses exactly what the schema or a listed rule refuses."""
    body = wire(body)
    refusal = collector_refusal(kind, body)
    if not schema_accepts(kind, body):
        assert refusal is not None, f"schema rule not enforced {why}: {body}"
        assert refusal.rule not in BEYOND_SCHEMA, (why, refusal)
        return False
    beyond = beyond_rules(kind, body)
    if beyond:
        assert refusal is not None and refusal.rule in beyond, (why, beyond, refusal)
    else:
        assert refusal is None, f"a rule not in the schema {why}: {refusal}"
    return True


# ---- payloads made from the schemas --------------------------------------------------------

@dataclasses.dataclass
class Case:
    """A payload made to break (or to fit) one keyword at one place."""

    rule: str  # the keyword's location, e.g. telemetry.json#/properties/seq/maximum
    path: tuple  # where in the message, ("key", name) for a property name
    body: Any


def _resolve(ref: str, here: str) -> tuple[str, Any]:
    file, _, pointer = ref.partition("#")
    file = file or here.partition("#")[0]
    node = _SCHEMAS[file]
    for part in pointer.strip("/").split("/") if pointer.strip("/") else []:
        node = node[part]
    return f"{file}#{pointer}", node


def _json_types(value: Any) -> set[str]:
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return {"integer", "number"}
    return {float: {"number"}, str: {"string"}, type(None): {"null"}, list: {"array"},
            dict: {"object"}}[type(value)]


def _breaking(keyword: str, rule: Any, x: Any) -> list:
    """Values that break one keyword, given the valid value x at its place."""
    if keyword == "type":
        allowed = {rule} if isinstance(rule, str) else set(rule)
        return [v for v in _ZOO if not _json_types(v) & allowed]
    if keyword == "enum":
        return ["__unknown__", *(v.upper() for v in rule if v.upper() not in rule)]
    if keyword == "const":
        return [f"{rule}_"]
    if keyword in ("minimum", "maximum"):
        return [rule - 1 if keyword == "minimum" else rule + 1]
    if keyword == "minLength":
        return ["a" * (rule - 1)]
    if keyword == "maxLength":
        return [(x or "a")[0] * (rule + 1)]
    if keyword == "pattern":
        tries = [x + " ", " " + x, "", x + "\n", x.upper(), "é" + x, x.replace(".", "..")]
        return [t for t in tries if not _ecma(rule).search(t)]
    if keyword == "format":
        return ["2026-02-29T10:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T10:60:00Z",
                "2026-11-22T10:00:00+24:00", "2026-11-22T10:59:60Z"]
    if keyword == "minItems":
        return [x[: rule - 1]]
    if keyword == "maxItems":
        return [x + [x[-1]] * (rule + 1 - len(x))]
    raise AssertionError(keyword)


def _fitting(keyword: str, rule: Any, x: Any) -> list:
    """Values at the bounds of one keyword, most of them valid."""
    if keyword == "type":
        return list(_ZOO)
    if keyword in ("enum", "const"):
        return list(rule) if keyword == "enum" else [rule]
    if keyword in ("minimum", "maximum"):
        return [rule, float(rule)] if abs(rule) < 2**53 else [rule]
    if keyword in ("minLength", "maxLength"):
        return [(x or "a")[0] * rule]
    if keyword == "pattern":
        return [x.lower(), x + "_9"]
    if keyword == "format":
        return ["2026-11-22t09:59:00.123456789z", "2026-11-22T10:04:00+01:00",
                "2024-02-29T09:00:00-00:00", "2026-11-21T23:59:60Z",
                "2026-11-22T00:59:60+01:00", "2026-11-22T10:05:00Z",
                "2026-11-22T10:05:00.001Z", "2026-10-22T10:00:00Z",
                "2026-10-22T09:59:59.999Z", "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00Z"]
    if keyword == "minItems":
        return [x[:rule]]
    if keyword == "maxItems":
        return [x + [x[-1]] * (rule - len(x))]
    return []


def cases(schema: dict, here: str, x: Any, rebuild: Callable[[Any], Any], path: tuple,
          make: Callable[[str, Any, Any], list]) -> Iterator[Case]:
    """Walk a schema beside a valid value; yield a Case for each value ``make`` gives."""
    for keyword, rule in schema.items():
        at = f"{here}/{keyword}"
        if keyword in _ANNOTATIONS or keyword == "if":
            continue
        if keyword == "$ref":
            target, node = _resolve(rule, here)
            yield from cases(node, target, x, rebuild, path, make)
        elif keyword == "properties":
            for name, sub in rule.items():
                if isinstance(x, dict) and name in x:
                    yield from cases(sub, f"{at}/{name}", x[name],
                                     lambda new, n=name: rebuild({**x, n: new}),
                                     (*path, name), make)
        elif keyword == "additionalProperties":
            for name in [n for n in x if n not in schema.get("properties", {})]:
                yield from cases(rule, at, x[name], lambda new, n=name: rebuild({**x, n: new}),
                                 (*path, name), make)
        elif keyword == "propertyNames":
            for name in x:
                yield from cases(rule, at, name, lambda new, n=name: rebuild(
                    {(new if k == n else k): v for k, v in x.items()}), (*path, ("key", name)),
                    make)
        elif keyword == "items":
            yield from cases(rule, at, x[0], lambda new: rebuild([new, *x[1:]]), (*path, 0),
                             make)
        elif keyword in ("oneOf", "anyOf"):
            for index, branch in enumerate(rule):
                if jsonschema.Draft202012Validator(branch, format_checker=_FORMATS).is_valid(x):
                    yield from cases(branch, f"{at}/{index}", x, rebuild, path, make)
        elif keyword == "then":
            if jsonschema.Draft202012Validator(schema["if"]).is_valid(x):
                yield from cases(rule, at, x, rebuild, path, make)
        elif keyword == "required":
            for name in rule:
                yield Case(at, path, rebuild({k: v for k, v in x.items() if k != name}))
        elif keyword in _CONSTRAINTS:
            is_name = bool(path) and isinstance(path[-1], tuple)
            for value in make(keyword, rule, x):
                if isinstance(value, str) or not is_name:  # a property name is a string
                    yield Case(at, path, rebuild(value))
        else:
            raise AssertionError(f"{at}: teach this test how to break {keyword!r}")


def all_cases(kind: str, make: Callable[[str, Any, Any], list]) -> list[Case]:
    """Cases of one message kind: each keyword at each place from the first base reaching it."""
    name = SCHEMA_FILES[kind]
    chosen, first = [], {}
    for index, base in enumerate(BASES[kind]):
        for case in cases(_SCHEMAS[name], f"{name}#", base, lambda new: new, (), make):
            if first.setdefault((case.rule, case.path), index) == index:
                chosen.append(case)
    return chosen


def constraint_rules(schema: dict, here: str, seen: set[str]) -> set[str]:
    """Every constraint keyword's location reachable from a schema, through $refs."""
    rules: set[str] = set()
    for keyword, rule in schema.items():
        at = f"{here}/{keyword}"
        if keyword == "$ref":
            target, node = _resolve(rule, here)
            if target not in seen:
                rules |= constraint_rules(node, target, seen | {target})
        elif keyword in _CONSTRAINTS:
            rules.add(at)
        elif keyword in ("properties",):
            for name, sub in rule.items():
                rules |= constraint_rules(sub, f"{at}/{name}", seen)
        elif keyword in ("oneOf", "anyOf"):
            for index, sub in enumerate(rule):
                rules |= constraint_rules(sub, f"{at}/{index}", seen)
        elif keyword in ("items", "additionalProperties", "propertyNames", "then"):
            rules |= constraint_rules(rule, at, seen)
    return rules


def expected_reason(case: Case) -> str:
    """The reason a device is told, from where in the message the schema is broken."""
    *_, last = case.path or ("",)
    if last == "ts":
        return "bad_timestamp"
    if case.path[:1] == ("samples",) and len(case.path) == 4:
        return "bad_point_name" if isinstance(last, tuple) else "bad_value"
    if case.path == ("samples",) and case.rule.endswith("/maxItems"):
        return "too_many_samples"
    return "bad_schema"


# ---- the tests ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", list(BASES))
def test_bases_are_valid_and_accepted(kind):
    for base in BASES[kind]:
        assert schema_accepts(kind, base), base
        assert collector_refusal(kind, base) is None, base


@pytest.mark.parametrize("kind", list(BASES))
def test_every_schema_rule_is_enforced_with_its_reason(kind):
    broken: set[str] = set()
    for case in all_cases(kind, _breaking):
        if schema_accepts(kind, wire(case.body)):
            continue  # e.g. 7 in place of a date-time is a valid epoch timestamp
        broken.add(case.rule)
        refusal = collector_refusal(kind, case.body)
        assert refusal is not None, f"{case.rule} not enforced: {json.dumps(case.body)[:200]}"
        assert refusal.rule not in BEYOND_SCHEMA, (case.rule, refusal)
        assert refusal.reason == expected_reason(case), (case.rule, case.path, refusal)
    name = SCHEMA_FILES[kind]
    every = constraint_rules(_SCHEMAS[name], f"{name}#", set())
    assert every - broken == set(UNBREAKABLE) & every, "rules no payload here breaks"


@pytest.mark.parametrize("kind", list(BASES))
def test_values_at_the_bounds_are_judged_like_the_schema(kind):
    valid = [assert_judged_alike(kind, case.body, case.rule)
             for case in all_cases(kind, _fitting)]
    assert sum(valid) >= 5


def _mutate(value: Any, rng: random.Random) -> Any:
    """Replace, drop or add one thing somewhere in a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        name = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.15:
            return {k: v for k, v in value.items() if k != name}
        if choice < 0.3:
            key = rng.choice(["Bad Key", "ok.name", "a" * 65, "é", name.upper(), "x.y\n"])
            return {**value, key: rng.choice([*_ZOO, 1.0])}
        return {**value, name: _mutate(value[name], rng)}
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        return [*value[:index], _mutate(value[index], rng), *value[index + 1:]]
    if isinstance(value, str) and rng.random() < 0.5:
        cut = rng.randrange(len(value) + 1)
        mark = rng.choice(["", " ", "Z", "9", ":", ".", "-", "\x00"])
        return value[:cut] + mark + value[cut + 1:]
    if isinstance(value, int | float) and not isinstance(value, bool) and rng.random() < 0.5:
        return rng.choice([value + 1, value - 1, -value, value * 1.5, 0, 2**63, -(2**63)])
    return rng.choice(_ZOO)


@pytest.mark.parametrize("kind", list(BASES))
def test_random_mutations_are_judged_like_the_schema(kind):
    rng = random.Random(f"protocol-{kind}")
    valid = 0
    for _ in range(600):
        body = copy.deepcopy(rng.choice(BASES[kind]))
        for _ in range(rng.randint(1, 3)):
            body = _mutate(body, rng)
        valid += assert_judged_alike(kind, body)
    assert 30 <= valid <= 570


def test_every_rule_beyond_the_schema_is_listed_and_refuses_a_schema_valid_message():
    assert set(BEYOND_EXAMPLES) == set(BEYOND_SCHEMA)
    for rule, (kind, body) in BEYOND_EXAMPLES.items():
        assert schema_accepts(kind, body), rule
        assert beyond_rules(kind, body) == {rule}
        refusal = collector_refusal(kind, body)
        assert refusal is not None and refusal.rule == rule, (rule, refusal)
        assert refusal.reason == BEYOND_SCHEMA[rule][0]


def test_the_collector_validates_every_device_schema():
    folder = resources.files("kilowatch").joinpath("schemas")
    names = {path.name for path in folder.iterdir() if path.name.endswith(".json")}
    # schedule.json and plan.json are what the platform sends; devices answer with the acks.
    assert set(SCHEMA_FILES.values()) == names - {"schedule.json", "plan.json"}
