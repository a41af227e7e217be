"""Controllers: what operating mode a simulated storage system runs at a given time.

A site's battery asks its controller ``mode_at(t)`` at every step. The default
controller keeps one mode forever (self-consumption between 10 and 95 % SoC).

A controller that needs the device's MQTT link (for example one that follows
the schedules received on ``{prefix}/{serial}/schedule`` and acknowledges them
on ``…/schedule/ack``) also implements :class:`LinkedController`: the simulator
calls ``attach(link)`` once the device is connected, before any ``mode_at``.
Controllers are created per device by a factory ``(SiteSpec) -> Controller``
given to the simulator, so each device can hold its own schedule.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from kilowatch import battery
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


ControllerFactory = Callable[[SiteSpec], Controller]


def default_controller(site: SiteSpec) -> Controller:
    """Return the default controller: self-consumption between 10 and 95 % SoC."""
    return ConstantController()
