"""The simulated device's dispatch plans: checked, acked, followed in optimized times, expired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from kilowatch.dispatch import message
from kilowatch.dispatch.plan import make_plan
from simulator.controller import BuiltInProgram
from simulator.plan_follower import PlanFollower
from simulator.schedule_follower import ScheduleFollower
from simulator.sites import make_sites
from tests.kilowatch.dispatch import helpers
from tests.simulator.conftest import RecordingLink

SITE = next(s for s in make_sites(20, seed=9) if s.model == "HES-L")  # 50 kW
ARRIVED = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(minutes=15)
# Optimized on weekdays 06:00-22:00 local, idle otherwise.
SCHEDULE = {"revision": 2, "timezone": "UTC", "default_mode": "idle",
            "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "06:00",
                         "end": "22:00", "mode": "optimized"}]}


def stored_plan(first: datetime, modes: list[tuple[str, dict, float]]) -> dict:
    """A stored plan body (Plan.to_json's shape) of consecutive steps from ``first``."""
    return {"steps": [{"start": (first + k * STEP).isoformat(), "mode": mode, **params,
                       "battery_kw": battery_kw, "soc": 50.0, "grid_kw": 1.0, "cost": 0.1}
                      for k, (mode, params, battery_kw) in enumerate(modes)]}


THREE_STEPS = [("charge", {"power_kw": 40.0, "soc_max": 90.0}, -40.0),
               ("discharge", {"power_kw": 20.0, "soc_min": 15.0}, 20.0),
               ("peak_shaving", {"grid_limit_kw": 30.0, "soc_min": 10.0, "soc_max": 95.0}, 5.0)]


@pytest.fixture
def device():
    link = RecordingLink(SITE.serial)
    follower = ScheduleFollower(SITE, BuiltInProgram(SITE), clock=ARRIVED.timestamp,
                                plans=PlanFollower(SITE.serial, SITE.rated_power_kw,
                                                   clock=ARRIVED.timestamp))
    follower.attach(link)
    link.deliver("schedule", SCHEDULE)
    return follower, link


def plan_message(revision: int, first: datetime, modes=THREE_STEPS, **share) -> dict:
    kw = share or {"device_kw": SITE.rated_power_kw, "site_kw": SITE.rated_power_kw}
    return message.device_message(revision, first - STEP, stored_plan(first, modes), **kw)


def test_a_plan_is_acked_and_its_steps_run_in_optimized_times_until_it_expires(device):
    follower, link = device
    first = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)  # a Wednesday, optimized 06-22
    link.deliver("plan", plan_message(7, first))
    assert link.acks() == [{"revision": 7, "status": "applied"}]
    assert follower.mode_at(first + timedelta(minutes=5)) == ("charge",
                                                              {"power_kw": 40, "soc_max": 90})
    assert follower.mode_at(first + STEP)[0] == "discharge"
    assert follower.mode_at(first + 2 * STEP + timedelta(minutes=14))[0] == "peak_shaving"
    # The last step holds until the plan expires, an hour after its start.
    assert follower.mode_at(first + 2 * STEP + timedelta(minutes=59))[0] == "peak_shaving"
    assert follower.mode_at(first + 3 * STEP + timedelta(hours=1)) == ("optimized", {})
    assert follower.mode_at(first - timedelta(minutes=1)) == ("optimized", {})  # before it


def test_a_plan_never_overrides_the_schedules_other_modes(device):
    follower, link = device
    first = datetime(2026, 7, 1, 21, 45, tzinfo=UTC)  # the last optimized step of the day
    link.deliver("plan", plan_message(8, first, THREE_STEPS * 2))
    assert follower.mode_at(first)[0] == "charge"
    assert follower.mode_at(first + STEP) == ("idle", {})  # 22:00: the schedule's idle


def test_without_a_schedule_in_optimized_the_plan_waits(device):
    follower, link = device
    link.deliver("schedule", {**SCHEDULE, "revision": 3, "periods": []})  # idle all week
    first = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    link.deliver("plan", plan_message(9, first))
    assert link.acks() == [{"revision": 9, "status": "applied"}]
    assert follower.mode_at(first) == ("idle", {})


def test_each_device_of_a_site_gets_its_share_and_expires_an_hour_after_the_last_step():
    first = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    body = plan_message(4, first, device_kw=50.0, site_kw=175.0)
    assert body["expires"] == "2026-07-01T15:30:00Z" and body["step_minutes"] == 15
    assert body["steps"][0] == {"start": "2026-07-01T14:00:00Z", "mode": "charge",
                                "power_kw": 11.43, "soc_max": 90.0, "battery_kw": -11.429}
    assert body["steps"][2]["grid_limit_kw"] == 8.57


@pytest.mark.parametrize(("change", "reason"), [
    (lambda m: m["steps"][1].update(power_kw=80.0),
     "steps/1: power 80 kW is above this device's rated power of 50 kW"),
    (lambda m: m["steps"][2].update(start="2026-07-01T14:45:00Z"),
     "steps/2: starts 0:30:00 after the step before (steps are 15 minutes apart)"),
    (lambda m: m["steps"][2].pop("soc_max"), "steps/2: mode charge needs soc_max"),
    (lambda m: m.update(step_minutes=5), "step_minutes: 15 was expected"),
    (lambda m: m.update(steps=[]), "steps: "),
    (lambda m: m["steps"][1].update(mode="optimized"), "steps/1: unknown mode 'optimized'"),
    (lambda m: m.update(expires="tomorrow"), "expires: "),
    (lambda m: m.update(expires="2026-07-01T13:00:00Z"), "expires before its first step"),
    (lambda m: m["steps"][0].update(soc_max=120),
     "steps/0: soc_max must be between 0 and 100"),
])
def test_a_plan_the_device_cannot_run_is_rejected_and_the_previous_one_stays(device, change,
                                                                           reason):
    follower, link = device
    first = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    link.deliver("plan", plan_message(7, first))
    bad = plan_message(8, first, THREE_STEPS[::-1])
    change(bad)
    link.deliver("plan", bad)
    [applied, rejected] = link.acks()
    assert applied == {"revision": 7, "status": "applied"}
    assert rejected["revision"] == 8 and rejected["status"] == "rejected"
    assert rejected["reason"].startswith(reason)
    assert follower.mode_at(first)[0] == "charge"  # revision 7 still runs


def test_an_older_plan_is_rejected_and_unreadable_messages_are_ignored(device):
    follower, link = device
    first = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    link.deliver("plan", plan_message(7, first))
    link.deliver("plan", plan_message(6, first, [("idle", {}, 0.0)]))
    for junk in (b"not json", b"[1, 2]", json.dumps({"revision": "7"}).encode(), b""):
        link.deliver("plan", junk)
    assert link.acks() == [{"revision": 7, "status": "applied"},
                           {"revision": 6, "status": "rejected",
                            "reason": "older than revision 7, which is in force"}]
    assert follower.mode_at(first)[0] == "charge"


def test_the_platforms_own_plan_passes_the_devices_check():
    load, pv = np.r_[np.full(8, 30.0), np.full(8, 80.0)], np.zeros(16)
    tariff = helpers.tariff((0.10, 0.40), expensive=range(2, 4))
    made = make_plan(helpers.problem(tariff, load, pv, rated=50.0, capacity=100.0))
    body = message.device_message(3, helpers.JUNE, made.to_json(), device_kw=50.0,
                                  site_kw=50.0)
    checked = message.check_message(json.loads(json.dumps(body)), rated_power_kw=50.0)
    assert [s.mode for s in checked.setpoints] == [s.mode for s in made.steps]
    assert checked.step_at(helpers.JUNE + 9 * STEP) == (made.steps[9].mode,
                                                        made.steps[9].params)
    assert {s.mode for s in made.steps} & {"charge", "discharge", "peak_shaving"}
