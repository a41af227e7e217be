"""``kilowatch simulate`` against the real broker: payload shapes, seq, status, will, backfill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

import kilowatch
from simulator.model import COUNTERS, extra_point_names
from tests.simulator.conftest import Inbox, run_simulate, simulate_command
from tests.simulator.test_model import CANONICAL, POINT_NAME

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SCHEMAS = Path(kilowatch.__file__).parent / "schemas"
SCHEMA_FILES = {"telemetry": "telemetry.json", "status": "status.json", "alarms": "alarm.json",
                "schedule": "schedule.json", "ack": "schedule_ack.json"}  # by the topic's end


def protocol_errors(messages: list[tuple[str, dict, bool]]) -> list[str]:
    """Check messages against the protocol's JSON Schemas; return what does not conform."""
    schemas = {kind: json.loads((SCHEMAS / name).read_text())
               for kind, name in SCHEMA_FILES.items()}
    registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values())
    errors = []
    for topic, payload, _ in messages:
        kind = topic.rsplit("/", 1)[1]
        if not payload:  # an emptied retained message
            continue
        validator = Draft202012Validator(schemas[kind], registry=registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors += [f"{topic}: {error.message}" for error in validator.iter_errors(payload)]
    return errors


def epoch(ts: str) -> float:
    """Parse a simulator timestamp."""
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def samples_of(messages: list[dict]) -> list[dict]:
    """Every sample of a device's telemetry messages, in order."""
    return [sample for message in messages for sample in message["samples"]]


def assert_physics(samples: list[dict]) -> None:
    """Check the power balance and that counters grow by power × time between samples."""
    for sample in samples:
        v = sample["v"]
        assert v["meter.grid.p"] == pytest.approx(
            v["meter.load.p"] - v["meter.pv.p"] - v["pcs.p"], abs=1e-3)
    for before, after in pairwise(samples):
        hours = (epoch(after["ts"]) - epoch(before["ts"])) / 3600
        grow = {name: after["v"][name] - before["v"][name] for name in COUNTERS}
        v = after["v"]
        assert grow["meter.load.e"] == pytest.approx(v["meter.load.p"] * hours, abs=2e-3)
        assert grow["pcs.e_discharge"] - grow["pcs.e_charge"] == pytest.approx(
            v["pcs.p"] * hours, abs=2e-3)
        assert grow["meter.grid.e_import"] - grow["meter.grid.e_export"] == pytest.approx(
            v["meter.grid.p"] * hours, abs=2e-3)


def test_live_devices_publish_status_then_numbered_telemetry_then_offline(kw_env, inbox):
    result = run_simulate(kw_env, "--sites", "2", "--interval", "0.5", "--duration", "2",
                          "--seed", "5", "--serial-prefix", "LIVE", "--extra-points", "3")
    assert result.returncode == 0, result.stderr
    for serial in ("LIVE-0001", "LIVE-0002"):
        assert inbox.wait_for(lambda box, s=serial: len(box.on("status", s)) >= 2)
        statuses = inbox.on("status", serial)
        assert [s["state"] for s in statuses] == ["online", "offline"]
        assert all(set(s) == {"ts", "state", "firmware"} and TS.match(s["ts"])
                   for s in statuses)
        telemetry = inbox.on("telemetry", serial)
        assert [m["seq"] for m in telemetry] == list(range(1, len(telemetry) + 1))
        assert 4 <= len(telemetry) <= 6
        for message in telemetry:
            assert set(message) == {"seq", "samples"} and len(message["samples"]) == 1
            sample = message["samples"][0]
            assert set(sample) == {"ts", "v"} and TS.match(sample["ts"])
            assert set(sample["v"]) == CANONICAL | set(extra_point_names(3))
            assert all(POINT_NAME.match(name) for name in sample["v"])
            assert all(isinstance(value, int | float) for value in sample["v"].values())
        assert_physics(samples_of(telemetry))
    assert protocol_errors(inbox.messages) == []
    retained = Inbox(f"{kw_env['KILOWATCH_MQTT_PREFIX']}/LIVE-0001/status")
    try:
        assert retained.wait_for(lambda box: box.messages, 5)
        _, payload, was_retained = retained.messages[0]
        assert was_retained and payload["state"] == "offline"
    finally:
        retained.close()


def test_status_is_retained_online_and_the_will_says_offline_when_the_device_dies(kw_env,
                                                                                    inbox):
    process = subprocess.Popen(
        simulate_command("--sites", "1", "--interval", "0.5", "--serial-prefix", "WILL"),
        env={**os.environ, **kw_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert inbox.wait_for(lambda box: box.on("telemetry", "WILL-0001"))
        late = Inbox(f"{kw_env['KILOWATCH_MQTT_PREFIX']}/WILL-0001/status")
        assert late.wait_for(lambda box: box.messages, 5)
        _, payload, was_retained = late.messages[0]
        late.close()
        assert was_retained and payload["state"] == "online" and payload["firmware"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert inbox.wait_for(lambda box: len(box.on("status", "WILL-0001")) >= 2, 10)
    will = inbox.on("status", "WILL-0001")[-1]
    assert will["state"] == "offline" and set(will) == {"ts", "state", "firmware"}


def test_sigterm_stops_cleanly_with_an_offline_status(kw_env, inbox):
    process = subprocess.Popen(
        simulate_command("--sites", "1", "--interval", "0.5", "--serial-prefix", "TERM"),
        env={**os.environ, **kw_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    try:
        assert inbox.wait_for(lambda box: len(box.on("telemetry", "TERM-0001")) >= 2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    last_seq = int(re.search(r"TERM-0001: stopped at seq (\d+)", stderr).group(1))
    assert inbox.wait_for(lambda box: box.on("status", "TERM-0001")[-1]["state"] == "offline")
    assert [m["seq"] for m in inbox.on("telemetry", "TERM-0001")] == list(
        range(1, last_seq + 1))


def test_backfill_replays_consistent_history_with_alarms_then_goes_live(kw_env, inbox):
    result = run_simulate(kw_env, "--sites", "1", "--backfill", "0.25", "--duration", "0",
                          "--backfill-interval", "60", "--fault-rate", "10", "--seed", "8",
                          "--serial-prefix", "BACK")
    assert result.returncode == 0, result.stderr
    assert "backfill" in result.stderr
    assert inbox.wait_for(lambda box: box.on("status", "BACK-0001")[-1:] and
                          box.on("status", "BACK-0001")[-1]["state"] == "offline")
    telemetry = inbox.on("telemetry", "BACK-0001")
    assert [m["seq"] for m in telemetry] == list(range(1, len(telemetry) + 1))
    samples = samples_of(telemetry)
    times = [epoch(s["ts"]) for s in samples]
    assert times == sorted(times)
    assert times[-1] - times[0] == pytest.approx(0.25 * 86400, abs=180)
    steps = {round(b - a) for a, b in pairwise(times[:-1])}
    assert steps == {60}
    assert all(len(m["samples"]) <= 6_000 // 20 for m in telemetry)
    assert_physics(samples)
    alarms = inbox.on("alarms", "BACK-0001")
    assert {a["state"] for a in alarms} == {"raised", "cleared"}
    for alarm in alarms:
        assert set(alarm) == {"ts", "code", "severity", "state", "message"}
        assert alarm["severity"] in ("critical", "major", "minor", "warning")
        assert times[0] - 60 <= epoch(alarm["ts"]) <= times[-1]
    assert protocol_errors(inbox.messages) == []


def test_drop_rate_skips_sequence_numbers(kw_env, inbox):
    result = run_simulate(kw_env, "--sites", "1", "--interval", "0.1", "--duration", "3",
                          "--drop-rate", "0.4", "--serial-prefix", "DROP")
    assert result.returncode == 0, result.stderr
    assert inbox.wait_for(lambda box: len(box.on("status", "DROP-0001")) >= 2)
    seqs = [m["seq"] for m in inbox.on("telemetry", "DROP-0001")]
    assert seqs == sorted(set(seqs))
    missing = set(range(1, seqs[-1] + 1)) - set(seqs)
    assert len(seqs) >= 5 and len(missing) >= 3


def test_outage_goes_silent_without_a_will_then_resumes(kw_env, inbox):
    result = run_simulate(kw_env, "--sites", "1", "--interval", "0.25", "--duration", "4",
                          "--outage", "2", "--outage-after", "1", "--serial-prefix", "GAP")
    assert result.returncode == 0, result.stderr
    assert inbox.wait_for(lambda box: len(box.on("status", "GAP-0001")) >= 2)
    assert [s["state"] for s in inbox.on("status", "GAP-0001")] == ["online", "offline"]
    telemetry = inbox.on("telemetry", "GAP-0001")
    assert [m["seq"] for m in telemetry] == list(range(1, len(telemetry) + 1))
    times = [epoch(m["samples"][0]["ts"]) for m in telemetry]
    gaps = [b - a for a, b in pairwise(times)]
    assert max(gaps) >= 1.7
    assert sorted(gaps)[-2] < 1.0, "only one silent period"


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--serial-prefix", "bad/prefix"], {}, "--serial-prefix"),
    (["--backfill", "40"], {}, "raw retention"),
    (["--sites", "0"], {}, "--sites"),
    (["--drop-rate", "2"], {}, "--drop-rate"),
    ([], {"KILOWATCH_SIMULATOR_MQTT_URL": "mqtt://127.0.0.1:9"}, "cannot reach the MQTT broker"),
    (["--extra-points", "10000"], {}, "--extra-points"),
    (["--register"], {"KILOWATCH_DATABASE_URL": "postgresql://kilowatch@127.0.0.1:9/none"},
     "kilowatch company create: cannot reach the database"),
])
def test_bad_arguments_give_one_clear_line(kw_env, args, env, message):
    result = run_simulate({**kw_env, **env}, "--duration", "0", *args, timeout_s=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
