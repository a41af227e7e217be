"""The schedule follower: device-side checks, acks, time zones, exceptions, and its fallback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kilowatch.schedules.model import DAYS
from simulator.controller import BuiltInProgram, DeviceLink, LinkedController
from simulator.schedule_follower import REASON_MAX, ScheduleFollower
from simulator.sites import make_sites

SITE = next(s for s in make_sites(20, seed=9) if s.model == "HES-L")  # 50 kW, Europe or US
ARRIVED = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
NEW_YORK = {
    "revision": 3, "timezone": "America/New_York", "default_mode": "idle",
    "periods": [
        {"days": ["mon"], "start": "17:00", "end": "21:00", "mode": "discharge",
         "power_kw": 40, "soc_min": 20},
        {"days": ["tue"], "start": "00:00", "end": "01:00", "mode": "peak_shaving",
         "grid_limit_kw": 30, "soc_min": 15},
    ],
    "exceptions": [
        # Already past when the device gets it: a device does not reject old dates.
        {"date": "2026-06-15", "periods": []},
        {"date": "2026-07-13", "name": "Plant open day", "periods": [
            {"start": "20:00", "end": "24:00", "mode": "charge", "power_kw": 25,
             "soc_max": 90}]}],
}


class RecordingLink:
    """A device link that keeps what the follower publishes and hands it messages."""

    serial = SITE.serial

    def __init__(self) -> None:
        self.handlers = {}
        self.sent: list[tuple[str, dict, bool]] = []

    def subscribe(self, suffix, handler) -> None:
        self.handlers[suffix] = handler

    def publish(self, suffix, payload, *, retain=False) -> None:
        self.sent.append((suffix, dict(payload), retain))

    def deliver(self, body) -> None:
        """Hand the follower a schedule message as the broker would."""
        self.handlers["schedule"](body if isinstance(body, bytes) else json.dumps(body).encode())

    def acks(self) -> list[dict]:
        """The acks sent, without their timestamps."""
        assert all(suffix == "schedule/ack" and not retain for suffix, _, retain in self.sent)
        return [{k: v for k, v in ack.items() if k != "ts"} for _, ack, _ in self.sent]


@pytest.fixture
def device():
    """A follower attached to a recording link, its clock fixed at ARRIVED."""
    link = RecordingLink()
    follower = ScheduleFollower(SITE, BuiltInProgram(SITE), clock=lambda: ARRIVED)
    assert isinstance(link, DeviceLink) and isinstance(follower, LinkedController)
    follower.attach(link)
    return follower, link


def at(text: str) -> datetime:
    """An aware UTC time from ``YYYY-MM-DD HH:MM``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_applied_schedule_is_acked_and_followed_in_its_own_time_zone(device):
    follower, link = device
    link.deliver(NEW_YORK)
    assert link.acks() == [{"revision": 3, "status": "applied"}]
    assert link.sent[0][1]["ts"] == "2026-07-01T12:00:00.000Z"
    # Monday 2026-07-06, 17:30 in New York (EDT, UTC−4) is 21:30 UTC.
    assert follower.mode_at(at("2026-07-06 21:30")) == ("discharge",
                                                         {"power_kw": 40, "soc_min": 20})
    assert follower.mode_at(at("2026-07-06 20:59")) == ("idle", {})  # 16:59 in New York
    assert follower.mode_at(at("2026-07-07 01:00")) == ("idle", {})  # 21:00, end excluded
    # Tuesday 00:30 in New York while it is already Tuesday 04:30 in UTC.
    assert follower.mode_at(at("2026-07-07 04:30")) == ("peak_shaving",
                                                         {"grid_limit_kw": 30, "soc_min": 15})


def test_wall_clock_periods_keep_their_local_hours_across_dst(device):
    follower, link = device
    link.deliver({"revision": 1, "timezone": "Europe/Paris", "default_mode": "idle",
                  "periods": [{"days": ["mon"], "start": "18:00", "end": "19:00",
                               "mode": "charge", "power_kw": 10, "soc_max": 80}]})
    assert follower.mode_at(at("2026-07-06 16:30"))[0] == "charge"  # 18:30 CEST
    assert follower.mode_at(at("2026-07-06 17:30"))[0] == "idle"  # 19:30 CEST
    assert follower.mode_at(at("2027-01-11 17:30"))[0] == "charge"  # 18:30 CET
    assert follower.mode_at(at("2027-01-11 16:30"))[0] == "idle"  # 17:30 CET


def test_an_exception_replaces_the_week_on_its_local_date(device):
    follower, link = device
    link.deliver(NEW_YORK)
    # 2026-07-13 is a Monday: the exception's program replaces the discharge window.
    assert follower.mode_at(at("2026-07-13 21:30")) == ("idle", {})  # 17:30 in New York
    # 23:30 in New York on the exception's date, already the 14th in UTC.
    assert follower.mode_at(at("2026-07-14 03:30")) == ("charge",
                                                        {"power_kw": 25, "soc_max": 90})
    # 00:30 on Tuesday in New York: the weekly program again.
    assert follower.mode_at(at("2026-07-14 04:30"))[0] == "peak_shaving"
    # The Monday after runs the weekly program.
    assert follower.mode_at(at("2026-07-20 21:30"))[0] == "discharge"


def test_the_built_in_program_runs_before_a_schedule_arrives_and_for_history(device):
    follower, link = device
    program = BuiltInProgram(SITE)
    monday_evening = at("2026-06-29 21:30")  # before ARRIVED: replayed history
    assert follower.mode_at(monday_evening) == program.mode_at(monday_evening)
    link.deliver({"revision": 5, "timezone": SITE.timezone, "default_mode": "idle",
                  "periods": []})
    assert follower.mode_at(monday_evening) == program.mode_at(monday_evening)
    assert follower.mode_at(datetime.fromtimestamp(ARRIVED, UTC)) == ("idle", {})


@pytest.mark.parametrize(("change", "reason"), [
    ({"periods": [{"days": ["mon", "tue"], "start": "17:00", "end": "21:00",
                   "mode": "discharge", "power_kw": 80, "soc_min": 20}]},
     "period 1 (Mon, Tue 17:00–21:00): power 80 kW is above this device's rated power "
     "of 50 kW"),
    ({"default_mode": "charge", "default_params": {"power_kw": 51, "soc_max": 90}},
     "default mode: power 51 kW is above this device's rated power of 50 kW"),
    ({"exceptions": [{"date": "2026-12-25", "periods": [
        {"start": "08:00", "end": "09:00", "mode": "discharge", "power_kw": 500,
         "soc_min": 10}]}]},
     "exception 2026-12-25, period 1 (08:00–09:00): power 500 kW is above this device's "
     "rated power of 50 kW"),
    ({"timezone": "Mars/Olympus"},
     "unknown time zone 'Mars/Olympus' (expected an IANA name such as Europe/Paris)"),
    ({"timezone": None}, "unknown time zone None"),
    ({"periods": [{"days": ["mon"], "start": "17:00", "end": "21:00",
                   "mode": "self_consumption", "soc_min": 20, "soc_max": 120}]},
     "period 1 (Monday 17:00–21:00): SoC max 120 % is outside 0–100 %"),
    ({"periods": [{"days": ["sat"], "start": "10:00", "end": "11:00", "mode": "turbo"}]},
     "period 1 (Saturday 10:00–11:00): unknown mode 'turbo'"),
    ({"periods": [{"days": ["fri"], "start": "10:00", "end": "12:00", "mode": "idle"},
                  {"days": ["fri"], "start": "11:00", "end": "13:00", "mode": "idle"}]},
     "Friday 10:00–12:00 overlaps Friday 11:00–13:00"),
])
def test_an_impossible_schedule_is_rejected_with_its_reason_and_changes_nothing(
        device, change, reason):
    follower, link = device
    link.deliver(NEW_YORK)
    link.deliver({**NEW_YORK, "revision": 4, **change})
    assert link.acks()[0] == {"revision": 3, "status": "applied"}
    rejected = link.acks()[1]
    assert rejected["revision"] == 4 and rejected["status"] == "rejected"
    assert reason in rejected["reason"]
    assert follower.applied.revision == 3
    assert follower.mode_at(at("2026-07-06 21:30"))[0] == "discharge"


def test_a_long_reason_is_cut_to_what_the_ack_schema_allows(device):
    follower, link = device
    periods = [{"days": [day], "start": f"{hour:02d}:00", "end": f"{hour + 1:02d}:00",
                "mode": "charge", "power_kw": 900, "soc_max": 90}
               for day in DAYS for hour in range(10)]
    link.deliver({"revision": 9, "timezone": "UTC", "default_mode": "idle", "periods": periods})
    reason = link.acks()[0]["reason"]
    assert len(reason) == REASON_MAX and reason.endswith("…")
    assert follower.applied is None


@pytest.mark.parametrize("payload", [
    b"{not json", b"\xff\xfe", b"[1, 2]", b'"schedule"',
    json.dumps({**NEW_YORK, "revision": "3"}).encode(),
    json.dumps({**NEW_YORK, "revision": 0}).encode(),
    json.dumps({**NEW_YORK, "revision": True}).encode(),
    json.dumps({k: v for k, v in NEW_YORK.items() if k != "revision"}).encode(),
    b"",  # a retained schedule being removed
])
def test_a_message_without_a_usable_revision_is_ignored_without_an_ack(device, payload):
    follower, link = device
    link.deliver(payload)
    assert link.sent == [] and follower.applied is None


def test_a_redelivered_schedule_is_acked_again_and_keeps_its_start():
    now = [ARRIVED]
    link = RecordingLink()
    follower = ScheduleFollower(SITE, BuiltInProgram(SITE), clock=lambda: now[0])
    follower.attach(link)
    link.deliver(NEW_YORK)
    now[0] += 600
    link.deliver(NEW_YORK)  # the broker hands the retained message over again on reconnect
    assert link.acks() == [{"revision": 3, "status": "applied"}] * 2
    assert follower.applied.since == ARRIVED
    link.deliver({**NEW_YORK, "revision": 4, "exceptions": []})
    assert follower.applied.revision == 4 and follower.applied.since == ARRIVED + 600
