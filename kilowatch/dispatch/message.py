"""The plan message on ``{prefix}/{serial}/plan``: made from a stored plan, checked, read by time.

Pure (no I/O). The platform makes one message per storage device from a stored plan
(:func:`device_message`), splitting power between the site's devices by rating as
schedules do; a device checks a message against ``kilowatch/schemas/plan.json`` and
its own rating (:func:`check_message`) and runs the step holding the current time
(:func:`step_at`) until the plan expires.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

from kilowatch.schedules import battery
from kilowatch.schedules.program import Setpoint, device_params

STEP = dt.timedelta(minutes=15)
STEP_MINUTES = 15
EXPIRES_AFTER_LAST_STEP = dt.timedelta(hours=1)
_PARAMS = ("power_kw", "grid_limit_kw", "soc_min", "soc_max")
PLAN_MODES = ("idle", "charge", "discharge", "peak_shaving", "self_consumption")


class PlanInvalid(ValueError):
    """A plan message a device cannot run; the message is the reason it sends back."""


def expires_at(last_start: dt.datetime) -> dt.datetime:
    """When a plan whose last step starts at ``last_start`` stops applying."""
    return last_start + EXPIRES_AFTER_LAST_STEP


def device_message(revision: int, created: dt.datetime, plan: dict, *, device_kw: float,
                   site_kw: float) -> dict[str, Any]:
    """Return one storage device's plan message from a stored plan body (``Plan.to_json``).

    The device gets ``device_kw / site_kw`` of each step's power, grid limit and
    expected battery power, like its share of a schedule.
    """
    share = device_kw / site_kw if 0 < device_kw < site_kw else 1.0
    steps = []
    for step in plan["steps"]:
        params = {k: step[k] for k in _PARAMS if k in step}
        steps.append({"start": _utc(dt.datetime.fromisoformat(step["start"])),
                      "mode": step["mode"], **device_params(params, device_kw, site_kw),
                      "battery_kw": round(step["battery_kw"] * share, 3)})
    last = dt.datetime.fromisoformat(plan["steps"][-1]["start"])
    return {"revision": revision, "created": _utc(created), "expires": _utc(expires_at(last)),
            "step_minutes": STEP_MINUTES, "steps": steps}


def device_json(revision: int, created: dt.datetime, plan: dict, *, device_kw: float,
                site_kw: float) -> str:
    """Return :func:`device_message` as the JSON text that is published."""
    return json.dumps(device_message(revision, created, plan, device_kw=device_kw,
                                     site_kw=site_kw))


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class DevicePlan:
    """A checked plan: its revision, when it was made and expires, and its steps in order."""

    revision: int
    created: dt.datetime
    expires: dt.datetime
    first: dt.datetime
    setpoints: tuple[Setpoint, ...]

    def step_at(self, t: dt.datetime) -> Setpoint | None:
        """The step in force at ``t``, the last one until expiry; None before or after."""
        if t < self.first or t >= self.expires:
            return None
        index = int((t - self.first) / STEP)
        return self.setpoints[min(index, len(self.setpoints) - 1)]


def check_message(body: Any, *, rated_power_kw: float) -> DevicePlan:
    """Check a decoded plan message as a device would; return it or raise PlanInvalid."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: list(e.instance_path))
    if errors:
        path = list(errors[0].instance_path)
        where = "/".join(str(p) for p in path) or "message"
        text = errors[0].message
        if len(path) == 2 and path[0] == "steps" and "oneOf" in text:
            text = _step_problem(body["steps"][path[1]])
        raise PlanInvalid(f"{where}: {text}"[:300])
    try:
        starts = [_time(step["start"]) for step in body["steps"]]
        created, expires = _time(body["created"]), _time(body["expires"])
    except (ValueError, OverflowError):
        raise PlanInvalid("a time the device cannot read (a leap second?)") from None
    for index, (before, after) in enumerate(itertools.pairwise(starts), 1):
        if after - before != STEP:
            raise PlanInvalid(f"steps/{index}: starts {after - before} after the step before "
                              "(steps are 15 minutes apart)")
    setpoints = []
    for index, step in enumerate(body["steps"]):
        params = {k: float(step[k]) for k in _PARAMS if k in step}
        if params.get("power_kw", 0) > rated_power_kw:
            raise PlanInvalid(f"steps/{index}: power {params['power_kw']:g} kW is above this "
                              f"device's rated power of {rated_power_kw:g} kW")
        try:
            battery.check_mode(step["mode"], params)
        except battery.BatteryModeError as error:
            raise PlanInvalid(f"steps/{index}: {error}") from None
        setpoints.append(Setpoint(step["mode"], params))
    if expires <= starts[0]:
        raise PlanInvalid("expires before its first step starts")
    return DevicePlan(body["revision"], created, expires, starts[0], tuple(setpoints))


def _step_problem(step: dict) -> str:
    """Say in words why a step fits none of the modes (the schema's oneOf says only that)."""
    mode = step.get("mode")
    if mode not in PLAN_MODES:
        return f"unknown mode {mode!r} (a plan step runs {', '.join(PLAN_MODES)})"
    try:
        battery.check_mode(mode, {k: step[k] for k in _PARAMS if k in step})
    except battery.BatteryModeError as error:
        return str(error)
    return f"the {mode} step's parameters break plan.json"


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(dt.UTC)


def load_plan_schema() -> dict:
    """Return the plan message's JSON Schema (``kilowatch/schemas/plan.json``)."""
    return json.loads(resources.files("kilowatch").joinpath("schemas", "plan.json").read_text())


@cache
def _validator() -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(load_plan_schema(), validate_formats=True, offline=True)
