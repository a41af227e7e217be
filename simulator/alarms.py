"""Device alarms of a simulated storage system: raised at random, cleared some minutes later."""

from __future__ import annotations

import dataclasses
import math
import random


@dataclasses.dataclass(frozen=True)
class AlarmKind:
    """One alarm a device can raise: its code, severity and message."""

    code: str
    severity: str
    message: str  # formatted with the alarm's measured ``value``
    value_range: tuple[float, float]
    trips_pcs: bool  # the PCS stops (state 4, no power) while it is active
    cleared_message: str


CATALOG = (
    AlarmKind("BMS_OVERTEMP", "critical", "Cell temperature {value:.0f} °C", (58, 65), True,
              "Cell temperature back below 45 °C"),
    AlarmKind("PCS_GRID_FAULT", "major", "Grid voltage out of range: {value:.0f} V",
              (440, 470), True, "Grid voltage back in range"),
    AlarmKind("BMS_INSULATION_LOW", "major", "Insulation resistance {value:.0f} kΩ",
              (50, 400), True, "Insulation resistance normal"),
    AlarmKind("BMS_CELL_IMBALANCE", "minor", "Cell voltage spread {value:.0f} mV", (60, 120),
              False, "Cells balanced"),
    AlarmKind("METER_COMM_ERROR", "minor", "No answer from the grid meter for {value:.0f} s",
              (30, 300), False, "Grid meter answering again"),
    AlarmKind("PCS_FAN_FAILURE", "warning", "Cooling fan {value:.0f} not turning", (1, 4),
              False, "Cooling fans running"),
)
KINDS = {kind.code: kind for kind in CATALOG}
_CLEAR_AFTER_S = (120.0, 1800.0)


@dataclasses.dataclass(frozen=True)
class ActiveAlarm:
    """An alarm that is raised and not yet cleared."""

    kind: AlarmKind
    value: float
    clear_at: float


@dataclasses.dataclass(frozen=True)
class AlarmEvent:
    """A raise or a clear, at epoch ``t``, as the device reports it."""

    t: float
    code: str
    severity: str
    state: str
    message: str


class AlarmGenerator:
    """Raises alarms at ``rate_per_hour`` on average and clears each a few minutes later."""

    def __init__(self, rng: random.Random, rate_per_hour: float) -> None:
        self._rng = rng
        self._rate_per_hour = rate_per_hour
        self.active: dict[str, ActiveAlarm] = {}

    @property
    def pcs_tripped(self) -> bool:
        """True while an active alarm keeps the PCS stopped."""
        return any(alarm.kind.trips_pcs for alarm in self.active.values())

    def advance(self, t: float, dt_s: float) -> list[AlarmEvent]:
        """Clear what is due, maybe raise a new alarm, and return the events at ``t``."""
        events = [self._clear(code, t) for code, alarm in list(self.active.items())
                  if alarm.clear_at <= t]
        if self._rng.random() < self._rate_per_hour * dt_s / 3600.0:
            kind = self._rng.choice(CATALOG)
            if kind.code not in self.active:
                events.append(self._raise(kind, t))
        return events

    def hold(self, code: str, t: float) -> list[AlarmEvent]:
        """Raise the catalog alarm ``code`` at ``t`` (if not active) and never clear it."""
        events = [] if code in self.active else [self._raise(KINDS[code], t)]
        self.active[code] = dataclasses.replace(self.active[code], clear_at=math.inf)
        return events

    def _raise(self, kind: AlarmKind, t: float) -> AlarmEvent:
        value = self._rng.uniform(*kind.value_range)
        self.active[kind.code] = ActiveAlarm(kind, value, t + self._rng.uniform(*_CLEAR_AFTER_S))
        return AlarmEvent(t, kind.code, kind.severity, "raised", kind.message.format(value=value))

    def _clear(self, code: str, t: float) -> AlarmEvent:
        kind = self.active.pop(code).kind
        return AlarmEvent(t, code, kind.severity, "cleared", kind.cleared_message)
