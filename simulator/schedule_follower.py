"""A simulated device that runs the operating schedules the platform sends it.

The follower subscribes to ``{prefix}/{serial}/schedule`` (retained, so the
latest revision arrives on connect), checks each schedule as the equipment
would — with nothing but its own ratings, never the platform's database — and
answers on ``…/schedule/ack`` with ``applied`` or ``rejected`` and a reason.
From the moment a schedule is applied, :meth:`ScheduleFollower.mode_at` follows
it in the schedule's own time zone, exceptions included; before that moment
(history replayed by ``--backfill``, or no schedule yet) the device runs its
built-in program. A rejected schedule leaves the previous program running.

While the schedule is in the ``optimized`` mode the device runs the step of its
dispatch plan (:mod:`simulator.plan_follower`) holding the current time; without a
plan, or once it has expired, ``optimized`` runs as self-consumption (the battery
model's fallback).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from zoneinfo import available_timezones

from kilowatch.schedules import model as schedules
from kilowatch.schedules import program as schedule_program
from simulator import payloads
from simulator.controller import Controller, DeviceLink, ModeAndParams, default_controller
from simulator.plan_follower import PlanFollower
from simulator.sites import SiteSpec

log = logging.getLogger(__name__)
REASON_MAX = payloads.REASON_MAX
# A device does not judge dates: an exception that passed while the message was
# on its way is simply never reached. Validating "as of" year 1 turns that rule off.
_NO_PAST = dt.datetime(1, 1, 2, tzinfo=dt.UTC)


class Rejected(ValueError):
    """The device cannot run a schedule; the message is the reason it sends back."""


@dataclasses.dataclass(frozen=True)
class AppliedSchedule:
    """A schedule the device runs: revision, message as received, normalised, applied since."""

    revision: int
    message: dict
    schedule: dict
    since: float


@lru_cache(maxsize=1)
def _iana_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def read_revision(payload: bytes) -> tuple[int | None, Any]:
    """Decode a schedule message; return (its revision or None when unusable, the body)."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None, None
    if not isinstance(body, dict):
        return None, body
    revision = body.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        return None, body
    return revision, body


def check_schedule(body: dict, *, rated_power_kw: float) -> dict:
    """Check a schedule against the device's own limits; return it normalised or raise Rejected."""
    timezone = body.get("timezone")
    if not isinstance(timezone, str) or timezone not in _iana_zones():
        raise Rejected(f"unknown time zone {timezone!r} (expected an IANA name such as "
                       "Europe/Paris)")
    limits = schedules.SiteLimits(timezone=timezone, has_optimizer=True)
    try:
        checked = schedules.validate(body, limits, now=_NO_PAST)
    except schedules.ScheduleInvalid as error:
        raise Rejected("; ".join(error.errors)) from None
    problems = power_problems(checked, rated_power_kw)
    if problems:
        raise Rejected("; ".join(problems))
    return checked


def power_problems(schedule: dict, rated_power_kw: float) -> list[str]:
    """Name every place of a valid schedule that asks for more than the rated power."""
    places = [("default mode", schedule.get("default_params", {}))]
    places += [(f"period {i} ({schedules.format_days(p['days'])} {p['start']}–{p['end']})", p)
               for i, p in enumerate(schedule["periods"], 1)]
    places += [(f"exception {e['date']}, period {i} ({p['start']}–{p['end']})", p)
               for e in schedule["exceptions"] for i, p in enumerate(e["periods"], 1)]
    return [f"{where}: power {params['power_kw']:g} kW is above this device's rated power "
            f"of {rated_power_kw:g} kW"
            for where, params in places if params.get("power_kw", 0) > rated_power_kw]


class ScheduleFollower:
    """Runs the latest schedule the device accepted, and its built-in program before that.

    In the schedule's ``optimized`` times it runs the dispatch plan's step, when
    ``plans`` holds one in force.
    """

    def __init__(self, site: SiteSpec, fallback: Controller, *,
                 clock: Callable[[], float] = time.time,
                 plans: PlanFollower | None = None) -> None:
        self.site = site
        self.fallback = fallback
        self.plans = plans
        self._clock = clock
        self._link: DeviceLink | None = None
        self._lock = threading.Lock()
        self.applied: AppliedSchedule | None = None

    def attach(self, link: DeviceLink) -> None:
        """Listen for schedules (and plans, with a plan follower) on the device's link."""
        self._link = link
        link.subscribe("schedule", self.receive)
        if self.plans is not None:
            self.plans.attach(link)

    def receive(self, payload: bytes) -> None:
        """Check a schedule message, apply it or not, and acknowledge it; never raises."""
        if not payload:
            return  # the retained schedule was removed: keep running the current program
        revision, body = read_revision(payload)
        if revision is None:
            log.warning("%s: ignored a schedule message without a usable revision",
                        self.site.serial)
            return
        with self._lock:
            current = self.applied
            if current is not None and body == current.message:
                self._ack(revision, "applied")  # the broker redelivered it (reconnect)
                return
            try:
                checked = check_schedule(body, rated_power_kw=self.site.rated_power_kw)
            except Rejected as error:
                log.warning("%s: rejected schedule revision %d: %s", self.site.serial,
                            revision, error)
                self._ack(revision, "rejected", str(error))
                return
            self.applied = AppliedSchedule(revision, body, checked, self._clock())
            log.info("%s: applied schedule revision %d", self.site.serial, revision)
            self._ack(revision, "applied")

    def mode_at(self, t: dt.datetime) -> ModeAndParams:
        """Return the applied schedule's mode at ``t`` (the plan's step in ``optimized``).

        Before a schedule is applied, the built-in program's mode.
        """
        applied = self.applied
        if applied is None or t.timestamp() < applied.since:
            return self.fallback.mode_at(t)
        setpoint = schedule_program.mode_at(applied.schedule, t)
        if setpoint.mode == "optimized" and self.plans is not None:
            step = self.plans.setpoint_at(t)
            if step is not None:
                return step
        return setpoint

    def _ack(self, revision: int, status: str, reason: str | None = None) -> None:
        if self._link is not None:
            self._link.publish("schedule/ack",
                               payloads.ack(self._clock(), revision, status, reason))


def following_controller(site: SiteSpec) -> ScheduleFollower:
    """Return a schedule and plan follower over the device's built-in program (``simulate``)."""
    return ScheduleFollower(site, default_controller(site),
                            plans=PlanFollower(site.serial, site.rated_power_kw))
