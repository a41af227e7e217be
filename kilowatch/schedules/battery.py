"""The battery model: how a storage system obeys its operating mode for one time step.

Pure functions without I/O, shared by the device simulator and the schedule
preview. Power is AC power at the PCS from the site's point of view: > 0
discharge, < 0 charge. State of charge (SoC) is in percent of the usable
capacity. Charging stores ``power × time × charge_efficiency``; discharging
takes ``power × time / discharge_efficiency`` out of the battery.

Modes and their parameters (docs/schedules.md, "Operating schedules"):

- ``idle``: no power.
- ``charge``: ``power_kw``, ``soc_max``.
- ``discharge``: ``power_kw``, ``soc_min``.
- ``peak_shaving``: ``grid_limit_kw``, ``soc_min``; discharges what the site
  would import above the limit, and recharges from the headroom below it up to
  the optional ``soc_max`` (default 100) so that the next peak finds it full.
- ``self_consumption``: ``soc_min``, ``soc_max``; charges from PV surplus,
  discharges to cover the load, never exports nor imports for itself.
- ``optimized``: without a dispatch plan, behaves as ``self_consumption`` with
  the optional ``soc_min``/``soc_max`` (default 10 and 95).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from kilowatch.schedules.model import MODE_PARAMS, MODES

_DEFAULTS: dict[str, dict[str, float]] = {
    "peak_shaving": {"soc_max": 100.0},
    "optimized": {"soc_min": 10.0, "soc_max": 95.0},
}


class BatteryModeError(ValueError):
    """A mode or a mode parameter the battery cannot follow."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Battery:
    """A storage system's ratings: AC power limit, usable capacity, one-way efficiencies."""

    rated_power_kw: float
    capacity_kwh: float
    charge_efficiency: float = 0.96
    discharge_efficiency: float = 0.96

    def __post_init__(self) -> None:
        if not self.rated_power_kw > 0 or not self.capacity_kwh > 0:
            raise ValueError("rated power and capacity must be positive")
        for efficiency in (self.charge_efficiency, self.discharge_efficiency):
            if not 0 < efficiency <= 1:
                raise ValueError("efficiencies must be in (0, 1]")


@dataclasses.dataclass(frozen=True)
class BatteryStep:
    """The outcome of one step: AC power (kW, > 0 discharge) and the SoC after it (%)."""

    power_kw: float
    soc: float


def check_mode(mode: str, params: Mapping[str, float] | None) -> dict[str, float]:
    """Return the mode's parameters with defaults filled in, or raise BatteryModeError."""
    if mode not in MODES:
        raise BatteryModeError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    values = {**_DEFAULTS.get(mode, {}), **dict(params or {})}
    for name in MODE_PARAMS[mode]:
        if name not in values:
            raise BatteryModeError(f"mode {mode} needs {name}")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
                value):
            raise BatteryModeError(f"{name} must be a number")
        if name.startswith("soc_") and not 0 <= value <= 100:
            raise BatteryModeError(f"{name} must be between 0 and 100")
        if name == "power_kw" and value < 0:
            raise BatteryModeError("power_kw must not be negative")
    if values.get("soc_min", 0) > values.get("soc_max", 100):
        raise BatteryModeError("soc_min must not be above soc_max")
    return values


def step(battery: Battery, soc: float, mode: str, params: Mapping[str, float] | None, *,
         load_kw: float, pv_kw: float, dt_s: float) -> BatteryStep:
    """Run the battery for ``dt_s`` seconds in ``mode`` and return its power and new SoC."""
    if not dt_s > 0:
        raise ValueError("dt_s must be positive")
    values = check_mode(mode, params)
    wanted = _wanted_power_kw(mode, values, load_kw - pv_kw)
    wanted = max(-battery.rated_power_kw, min(battery.rated_power_kw, wanted))
    return _apply(battery, soc, wanted, values, dt_s)


def _wanted_power_kw(mode: str, values: dict[str, float], net_load_kw: float) -> float:
    """The power the mode asks for before the battery's limits (> 0 discharge)."""
    if mode == "charge":
        return -values["power_kw"]
    if mode == "discharge":
        return values["power_kw"]
    if mode == "peak_shaving":
        return net_load_kw - values["grid_limit_kw"]
    if mode in ("self_consumption", "optimized"):
        return net_load_kw
    return 0.0


def _apply(battery: Battery, soc: float, wanted_kw: float, values: dict[str, float],
           dt_s: float) -> BatteryStep:
    """Limit the wanted power by the SoC bounds and integrate the SoC."""
    hours = dt_s / 3600.0
    if wanted_kw > 0:
        limit = max(0.0, values.get("soc_min", 0.0))
        available_kwh = max(0.0, soc - limit) / 100.0 * battery.capacity_kwh
        power = min(wanted_kw, available_kwh * battery.discharge_efficiency / hours)
        bound = max
    elif wanted_kw < 0:
        limit = min(100.0, values.get("soc_max", 100.0))
        room_kwh = max(0.0, limit - soc) / 100.0 * battery.capacity_kwh
        power = max(wanted_kw, -room_kwh / battery.charge_efficiency / hours)
        bound = min
    else:
        power = 0.0
    if power == 0:
        return BatteryStep(0.0, soc)
    # Clamp so that float rounding never leaves the SoC a hair past its limit.
    return BatteryStep(power, bound(soc + soc_change(battery, power, dt_s), limit))


def soc_change(battery: Battery, power_kw: float, dt_s: float) -> float:
    """Return the SoC change (percentage points) that ``power_kw`` for ``dt_s`` causes."""
    hours = dt_s / 3600.0
    if power_kw >= 0:
        stored_kwh = -power_kw * hours / battery.discharge_efficiency
    else:
        stored_kwh = -power_kw * hours * battery.charge_efficiency
    return stored_kwh / battery.capacity_kwh * 100.0
