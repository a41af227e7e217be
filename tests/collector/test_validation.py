"""Message validation, handed straight to the validator (no broker needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from collector.validation import (
    REASONS,
    SCHEMA_FILES,
    Invalid,
    Validator,
    decode_json,
    load_schema,
    parse_topic,
    parse_ts,
)

NOW = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.UTC)
TS = "2026-11-22T09:59:00Z"


@pytest.fixture
def validator():
    return Validator(retention_days=31)


def reason_of(call) -> str:
    with pytest.raises(Invalid) as refused:
        call()
    assert refused.value.reason in REASONS
    return refused.value.reason


def test_topics_split_into_serial_and_kind():
    assert parse_topic("a/ess/SN-1/telemetry", "a/ess") == ("SN-1", "telemetry")
    assert parse_topic("ess/SN_2/schedule/ack", "ess") == ("SN_2", "schedule/ack")
    assert reason_of(lambda: parse_topic("ess/SN-1/other", "ess")) == "bad_topic"
    assert reason_of(lambda: parse_topic("ess/bad serial/status", "ess")) == "unknown_serial"


def test_timestamps_rfc3339_with_offset_or_epoch_ms():
    assert parse_ts("2026-11-22T11:00:00+01:00") == dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    assert parse_ts("2026-11-22t10:00:00.250z") == dt.datetime(2026, 11, 22, 10, 0, 0, 250000,
                                                                tzinfo=dt.UTC)
    assert parse_ts(1_795_341_600_000) == dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    # JSON Schema counts a number without a fraction as an integer, whatever its notation.
    assert parse_ts(1.7953416e12) == dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)
    for bad in ("2026-11-22T10:00:00", "2026-11-22", "yesterday", 1.5, True, -1, None,
                "2026-13-40T10:00:00Z"):
        assert reason_of(lambda bad=bad: parse_ts(bad)) == "bad_timestamp", bad


def test_values_booleans_count_nulls_are_dropped(validator):
    message = validator.telemetry({"seq": 1, "samples": [
        {"ts": TS, "v": {"pcs.state": 3, "bms.ok": True, "bms.soc": None, "pcs.p": -1.5}}]},
        NOW)
    assert message.samples == [(dt.datetime(2026, 11, 22, 9, 59, tzinfo=dt.UTC),
                                {"pcs.state": 3.0, "bms.ok": 1.0, "pcs.p": -1.5})]
    assert message.points == 3 and message.seq == 1


@pytest.mark.parametrize(("body", "reason"), [
    ([], "bad_schema"),
    ({"samples": [{"ts": TS, "v": {}}]}, "bad_schema"),
    ({"seq": -1, "samples": [{"ts": TS, "v": {}}]}, "bad_schema"),
    ({"seq": True, "samples": [{"ts": TS, "v": {}}]}, "bad_schema"),
    ({"seq": 1, "samples": []}, "bad_schema"),
    ({"seq": 1, "samples": [{"ts": TS, "v": []}]}, "bad_schema"),
    ({"seq": 1, "samples": [{"v": {}}]}, "bad_schema"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"Pcs.P": 1.0}}]}, "bad_point_name"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"pcs..p": 1.0}}]}, "bad_point_name"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"p" * 65: 1.0}}]}, "bad_point_name"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"pcs.p": "1.0"}}]}, "bad_value"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"pcs.p": float("nan")}}]}, "bad_value"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"pcs.p": float("inf")}}]}, "bad_value"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {"pcs.p": {"x": 1}}}]}, "bad_value"),
    ({"seq": 1, "samples": [{"ts": "2026-11-22T10:06:00Z", "v": {"a": 1.0}}]},
     "future_timestamp"),
    ({"seq": 1, "samples": [{"ts": "2026-10-01T10:00:00Z", "v": {"a": 1.0}}]}, "too_old"),
    ({"seq": 1, "samples": [{"ts": TS, "v": {f"p.x{i}": 1.0 for i in range(5001)}},
                            {"ts": TS, "v": {f"p.y{i}": 1.0 for i in range(5000)}}]},
     "too_many_samples"),
])
def test_invalid_telemetry_has_its_reason(validator, body, reason):
    assert reason_of(lambda: validator.telemetry(body, NOW)) == reason


def test_ten_thousand_values_are_accepted(validator):
    body = {"seq": 1, "samples": [{"ts": TS, "v": {f"p.x{i}": 1.0 for i in range(10_000)}}]}
    assert validator.telemetry(body, NOW).points == 10_000


def test_bad_json_covers_syntax_encoding_and_non_finite_literals():
    for payload in (b"{", b"\xff\xfe", b'{"a": NaN}', b"", b"[" * 100_000):
        assert reason_of(lambda payload=payload: decode_json(payload)) == "bad_json"
    assert decode_json(b'{"seq": 1}') == {"seq": 1}


@pytest.mark.parametrize(("kind", "body", "ok"), [
    ("alarms", {"ts": TS, "code": "BMS_OVERTEMP", "severity": "critical", "state": "raised",
                "message": "61 °C"}, True),
    ("alarms", {"ts": TS, "code": "BMS_OVERTEMP", "state": "cleared"}, True),
    ("alarms", {"ts": TS, "code": "BMS_OVERTEMP", "state": "raised"}, False),
    ("alarms", {"ts": TS, "code": "BMS OVERTEMP", "severity": "major", "state": "raised"},
     False),
    ("alarms", {"code": "X", "severity": "major", "state": "raised"}, False),
    ("status", {"ts": TS, "state": "online", "firmware": "2.4.1"}, True),
    ("status", {"state": "offline"}, True),
    ("status", {"ts": TS, "state": "sleeping"}, False),
    ("schedule/ack", {"revision": 7, "status": "applied"}, True),
    ("schedule/ack", {"revision": 7, "status": "rejected", "reason": "power too high"}, True),
    ("schedule/ack", {"revision": 0, "status": "applied"}, False),
    ("schedule/ack", {"revision": "7", "status": "applied"}, False),
    ("schedule/ack", {"revision": 7, "status": "maybe"}, False),
    ("schedule/ack", "applied", False),
    ("status", {"state": "online", "firmware": "2.4\u00001"}, False),
])
def test_small_messages_follow_their_schemas(validator, kind, body, ok):
    if ok:
        message = validator.small(kind, body, NOW)
        assert message["at"].tzinfo is not None
    else:
        assert reason_of(lambda: validator.small(kind, body, NOW)) == "bad_schema"


def test_schemas_are_valid_json_schema_documents():
    from jsonschema.validators import Draft202012Validator

    for name in SCHEMA_FILES.values():
        schema = load_schema(name)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name


def test_protocol_page_publishes_every_device_schema_as_it_is():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    protocol = (root / "docs" / "protocol.md").read_text()
    schemas = sorted((root / "kilowatch" / "schemas").glob("*.json"))
    assert {"telemetry.json", "alarm.json", "status.json", "schedule.json",
            "schedule_ack.json", "plan.json", "plan_ack.json"} <= {path.name for path in schemas}
    for path in schemas:
        assert f"```json\n{path.read_text().strip()}\n```" in protocol, path.name



def test_numbers_without_a_fraction_are_integers_as_in_json_schema(validator):
    message = validator.telemetry(decode_json(
        b'{"seq": 3.0, "samples": [{"ts": 1.79534154e12, "v": {"a": 1}}]}'), NOW)
    assert (message.seq, type(message.seq)) == (3, int)
    assert message.oldest == dt.datetime(2026, 11, 22, 9, 59, tzinfo=dt.UTC)
    ack = validator.small("schedule/ack", decode_json(b'{"revision": 7.0, "status": "applied"}'),
                          NOW)
    assert (ack["revision"], type(ack["revision"])) == (7, int)


@pytest.mark.parametrize("kind", ["alarms", "status", "schedule/ack"])
def test_a_bad_ts_is_bad_timestamp_in_every_kind(validator, kind):
    body = {"alarms": {"code": "X", "state": "cleared"}, "status": {"state": "online"},
            "schedule/ack": {"revision": 7, "status": "applied"}}[kind]
    assert validator.small(kind, {**body, "ts": TS}, NOW)
    assert reason_of(lambda: validator.small(kind, {**body, "ts": "2026-11-22 09:59"},
                                             NOW)) == "bad_timestamp"


def test_a_refusal_names_the_place_and_stays_short(validator):
    body = {"seq": 1, "samples": [{"ts": TS, "v": {"a": 1.0}}] * 10_001}
    with pytest.raises(Invalid) as refused:
        validator.telemetry(body, NOW)
    assert refused.value.reason == "too_many_samples"
    assert refused.value.detail == "samples: breaks the schema's 'maxItems' rule"
    with pytest.raises(Invalid) as refused:
        validator.telemetry({"seq": 1, "samples": [{"ts": TS, "v": {"Pcs.P": 1.0}}]}, NOW)
    assert refused.value.detail.startswith('samples/0/v: "Pcs.P" does not match')
