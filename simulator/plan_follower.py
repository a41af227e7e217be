"""A simulated device's dispatch plan: received, checked, acknowledged, and read by time.

The follower subscribes to ``{prefix}/{serial}/plan`` (retained, so the latest plan
arrives on connect), checks each plan as the equipment would — against
``kilowatch/schemas/plan.json`` and its own rated power, never the platform's
database — and answers on ``…/plan/ack`` with ``applied`` or ``rejected`` and a
reason. :meth:`PlanFollower.setpoint_at` gives the applied plan's step at a time,
or None before its first step, from its expiry on, or without a plan; the schedule
follower (:mod:`simulator.schedule_follower`) asks it only while the schedule is in
the ``optimized`` mode. A rejected plan leaves the previous one in force.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable

from kilowatch.dispatch import message
from kilowatch.schedules.program import Setpoint
from simulator import payloads
from simulator.controller import DeviceLink

log = logging.getLogger(__name__)


class PlanFollower:
    """Keeps the newest plan the device accepted and answers every plan it receives."""

    def __init__(self, serial: str, rated_power_kw: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.serial = serial
        self.rated_power_kw = rated_power_kw
        self._clock = clock
        self._link: DeviceLink | None = None
        self._lock = threading.Lock()
        self.applied: message.DevicePlan | None = None

    def attach(self, link: DeviceLink) -> None:
        """Listen for plans on the device's link."""
        self._link = link
        link.subscribe("plan", self.receive)

    def receive(self, payload: bytes) -> None:
        """Check a plan message, apply it or not, and acknowledge it; never raises."""
        if not payload:
            return  # the retained plan was removed: keep the current one until it expires
        try:
            body = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            body = None
        revision = body.get("revision") if isinstance(body, dict) else None
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            log.warning("%s: ignored a plan message without a usable revision", self.serial)
            return
        with self._lock:
            current = self.applied
            if current is not None and revision < current.revision:
                self._ack(revision, "rejected", f"older than revision {current.revision}, "
                                                "which is in force")
                return
            try:
                plan = message.check_message(body, rated_power_kw=self.rated_power_kw)
            except message.PlanInvalid as error:
                log.warning("%s: rejected plan revision %d: %s", self.serial, revision, error)
                self._ack(revision, "rejected", str(error))
                return
            self.applied = plan
            log.info("%s: applied plan revision %d (%d steps, expires %s)", self.serial,
                     revision, len(plan.setpoints), plan.expires.isoformat())
            self._ack(revision, "applied")

    def setpoint_at(self, t: dt.datetime) -> Setpoint | None:
        """The applied plan's step at ``t``; None without a plan, before it or once expired."""
        plan = self.applied
        return None if plan is None else plan.step_at(t)

    def _ack(self, revision: int, status: str, reason: str | None = None) -> None:
        if self._link is not None:
            self._link.publish("plan/ack", payloads.ack(self._clock(), revision, status, reason))
