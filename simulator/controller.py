"""Controllers: what operating mode a simulated storage system runs at a given time.

A site's battery asks its controller ``mode_at(t)`` at every step. The default
controller is the device's built-in program (:class:`BuiltInProgram`): PV
self-consumption by day, peak shaving of the evening load, and a slow charge
from the grid at night on weekdays. ``kilowatch simulate`` wraps it in a
schedule follower (:mod:`simulator.schedule_follower`) that runs the schedules
the platform sends and falls back to the built-in program until one arrives.

A controller that needs the device's MQTT link (for example one that follows
the schedules received on ``{prefix}/{serial}/schedule`` and the dispatch plans on
``…/plan``, and acknowledges them on ``…/schedule/ack`` and ``…/plan/ack``) also
implements :class:`LinkedController`: the simulator calls ``attach(link)`` once the
device is connected, before any ``mode_at``.
Controllers are created per device by a factory ``(SiteSpec) -> Controller``
given to the simulator, so each device can hold its own schedule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from kilowatch.schedules import battery
from simulator.sites import SiteSpec

ModeAndParams = tuple[str, Mapping[str, float]]


@runtime_checkable
class Controller(Protocol):
    """Decides the battery's operating mode and its parameters at a moment."""

    def mode_at(self, t: datetime) -> ModeAndParams:
        """Return ``(mode, params)`` for the aware datetime ``t``."""


@runtime_checkable
class DeviceLink(Protocol):
    """A device's own MQTT connection, as a controller may use it."""

    serial: str

    def subscribe(self, suffix: str, handler: Callable[[bytes], None]) -> None:
        """Call ``handler(payload)`` for messages on ``{prefix}/{serial}/{suffix}``."""

    def publish(self, suffix: str, payload: Mapping[str, Any], *, retain: bool = False) -> None:
        """Publish a JSON payload on ``{prefix}/{serial}/{suffix}`` with QoS 1."""


@runtime_checkable
class LinkedController(Controller, Protocol):
    """A controller that talks to the platform through its device's MQTT link."""

    def attach(self, link: DeviceLink) -> None:
        """Start listening on the link (called once, after the device connects)."""


@dataclasses.dataclass(frozen=True)
class ConstantController:
    """Runs one mode with fixed parameters at every moment."""

    mode: str = "self_consumption"
    params: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"soc_min": 10.0, "soc_max": 95.0})

    def __post_init__(self) -> None:
        battery.check_mode(self.mode, self.params)

    def mode_at(self, t: datetime) -> ModeAndParams:
        """Return the fixed mode and parameters."""
        return self.mode, self.params


class BuiltInProgram:
    """The device's own program, in the site's local time, sized from its ratings and load.

    Weekdays: 00:00–06:00 charge slowly from the grid (capacity / 8 kW) up to
    60 % SoC while energy is cheap; 06:00–16:00 self-consumption between 50 and
    95 % (PV surplus is stored, and half the battery stays in reserve for the
    evening); 16:00–22:00 peak shaving that keeps the grid import at or below
    half the site's peak load, down to 10 % SoC; 22:00–24:00 idle. Weekends:
    self-consumption between 10 and 95 % all day.
    """

    NIGHT_END_H, EVENING_START_H, EVENING_END_H = 6, 16, 22
    NIGHT_SOC_MAX = 60.0
    DAY_RESERVE_SOC = 50.0
    SOC_MIN, SOC_MAX = 10.0, 95.0
    PEAK_LIMIT_SHARE = 0.5  # of the site's peak load

    def __init__(self, site: SiteSpec) -> None:
        self._zone = ZoneInfo(site.timezone)
        self.night_charge = {"power_kw": min(site.rated_power_kw, site.capacity_kwh / 8),
                             "soc_max": self.NIGHT_SOC_MAX}
        self.day = {"soc_min": self.DAY_RESERVE_SOC, "soc_max": self.SOC_MAX}
        # soc_max = soc_min: shave only; never recharge from the grid at evening prices.
        self.evening = {"grid_limit_kw": round(site.load_peak_kw * self.PEAK_LIMIT_SHARE, 1),
                        "soc_min": self.SOC_MIN, "soc_max": self.SOC_MIN}
        self.weekend = {"soc_min": self.SOC_MIN, "soc_max": self.SOC_MAX}

    def mode_at(self, t: datetime) -> ModeAndParams:
        """Return the program's mode at ``t`` (read in the site's time zone)."""
        local = t.astimezone(self._zone)
        if local.weekday() >= 5:
            return "self_consumption", self.weekend
        if local.hour < self.NIGHT_END_H:
            return "charge", self.night_charge
        if local.hour < self.EVENING_START_H:
            return "self_consumption", self.day
        if local.hour < self.EVENING_END_H:
            return "peak_shaving", self.evening
        return "idle", {}


ControllerFactory = Callable[[SiteSpec], Controller]


def default_controller(site: SiteSpec) -> Controller:
    """Return the device's built-in program (see :class:`BuiltInProgram`)."""
    return BuiltInProgram(site)
