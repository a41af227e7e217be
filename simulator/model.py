"""One simulated site stepped through time: weather, load, battery, meters and BMS readings.

Each step covers the interval that ends at the sample's time: the powers are
the interval's averages and the cumulative counters grow by exactly power ×
duration, so counters and powers always agree, and
``meter.grid.p = meter.load.p − meter.pv.p − pcs.p`` holds at every sample.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from datetime import UTC, datetime

from kilowatch.schedules import battery
from simulator import physics
from simulator.alarms import AlarmEvent, AlarmGenerator
from simulator.controller import Controller
from simulator.sites import SiteSpec

log = logging.getLogger(__name__)

CANONICAL_POINTS = (
    "meter.grid.p", "meter.grid.e_import", "meter.grid.e_export", "meter.load.p",
    "meter.load.e", "meter.pv.p", "meter.pv.e", "pcs.p", "pcs.q", "pcs.e_charge",
    "pcs.e_discharge", "pcs.state", "bms.soc", "bms.soh", "bms.v", "bms.i", "bms.t_min",
    "bms.t_max", "bms.cell_v_min", "bms.cell_v_max",
)
COUNTERS = ("meter.grid.e_import", "meter.grid.e_export", "meter.load.e", "meter.pv.e",
            "pcs.e_charge", "pcs.e_discharge")
STANDBY_BELOW_KW = 0.01


@dataclasses.dataclass(frozen=True)
class Sample:
    """Every point's value at epoch ``t``, and the alarms raised or cleared at that step."""

    t: float
    values: dict[str, float]
    alarms: list[AlarmEvent]


def extra_point_names(count: int) -> list[str]:
    """Return the names of ``count`` extra per-cell voltage points (``bms.cell.v_001`` …)."""
    width = max(3, len(str(count)))
    return [f"bms.cell.v_{number:0{width}d}" for number in range(1, count + 1)]


class SiteModel:
    """The state of one site (SoC, counters, alarms) and the step that advances it."""

    def __init__(self, site: SiteSpec, controller: Controller, *, fault_rate: float = 0.0,
                 extra_points: int = 0) -> None:
        self.site = site
        self.controller = controller
        self.battery = battery.Battery(rated_power_kw=site.rated_power_kw,
                                       capacity_kwh=site.capacity_kwh)
        self.soc = site.initial_soc
        self.counters = dict(site.initial_counters_kwh)
        self.alarms = AlarmGenerator(random.Random(f"alarms:{site.seed}:{site.index}"),
                                     fault_rate)
        self._extra_names = extra_point_names(extra_points)
        self._cell_offsets = [physics.unit_hash(site.seed, site.index, "cell", n)
                              for n in range(extra_points)]
        self._bad_mode_logged = False

    def step(self, t: float, dt_s: float) -> Sample:
        """Advance the site by ``dt_s`` seconds to epoch ``t`` and return the sample at ``t``."""
        events = self.alarms.advance(t, dt_s)
        load_kw = physics.load_power_kw(self.site, t)
        pv_kw = physics.pv_power_kw(self.site, t)
        result = self._battery_step(t, dt_s, load_kw, pv_kw)
        grid_kw = load_kw - pv_kw - result.power_kw
        self._count(dt_s, load_kw, pv_kw, grid_kw, result.power_kw)
        self.soc = result.soc
        values = {
            "meter.grid.p": grid_kw, "meter.load.p": load_kw, "meter.pv.p": pv_kw,
            "pcs.p": result.power_kw, **self.counters, **self._pcs_and_bms(t, result.power_kw),
        }
        return Sample(t, values, events)

    def _battery_step(self, t: float, dt_s: float, load_kw: float,
                      pv_kw: float) -> battery.BatteryStep:
        mode, params = ("idle", {}) if self.alarms.pcs_tripped else self._mode_at(t)
        return battery.step(self.battery, self.soc, mode, params, load_kw=load_kw,
                            pv_kw=pv_kw, dt_s=dt_s)

    def _mode_at(self, t: float):
        mode, params = self.controller.mode_at(datetime.fromtimestamp(t, UTC))
        try:
            battery.check_mode(mode, params)
        except battery.BatteryModeError as error:
            if not self._bad_mode_logged:
                log.warning("%s: controller asked for %s (%s); staying idle",
                            self.site.serial, mode, error)
                self._bad_mode_logged = True
            return "idle", {}
        return mode, params

    def _count(self, dt_s: float, load_kw: float, pv_kw: float, grid_kw: float,
               battery_kw: float) -> None:
        hours = dt_s / 3600.0
        self.counters["meter.grid.e_import"] += max(grid_kw, 0.0) * hours
        self.counters["meter.grid.e_export"] += max(-grid_kw, 0.0) * hours
        self.counters["meter.load.e"] += load_kw * hours
        self.counters["meter.pv.e"] += pv_kw * hours
        self.counters["pcs.e_charge"] += max(-battery_kw, 0.0) * hours
        self.counters["pcs.e_discharge"] += max(battery_kw, 0.0) * hours

    def _pcs_and_bms(self, t: float, power_kw: float) -> dict[str, float]:
        site, load_share = self.site, abs(power_kw) / self.site.rated_power_kw
        tripped = self.alarms.pcs_tripped
        if tripped:
            state = 4
        elif abs(power_kw) < STANDBY_BELOW_KW:
            state = 1
        else:
            state = 3 if power_kw > 0 else 2
        wobble = physics.value_noise(t, 300.0, site.seed, site.index, "bms") * 2 - 1
        cell_v = 3.05 + 0.30 * self.soc / 100 - 0.04 * power_kw / site.rated_power_kw
        spread_v = 0.006 + 0.010 * abs(self.soc - 50) / 50 + 0.002 * wobble
        if "BMS_CELL_IMBALANCE" in self.alarms.active:
            spread_v = self.alarms.active["BMS_CELL_IMBALANCE"].value / 1000
        pack_v = cell_v * site.cells_in_series
        t_max = (22 + 0.2 * (physics.ambient_temperature_c(site, t) - 20) + 7 * load_share
                 + 0.5 * wobble)
        if "BMS_OVERTEMP" in self.alarms.active:
            t_max = self.alarms.active["BMS_OVERTEMP"].value
        values = {
            "pcs.q": 0.0 if tripped else 0.02 * site.rated_power_kw * wobble,
            "pcs.state": state, "bms.soc": self.soc, "bms.soh": site.soh,
            "bms.v": pack_v, "bms.i": power_kw * 1000 / pack_v,
            "bms.t_min": t_max - 1.5 - 1.5 * load_share, "bms.t_max": t_max,
            "bms.cell_v_min": cell_v - 0.6 * spread_v, "bms.cell_v_max": cell_v + 0.4 * spread_v,
        }
        for name, offset in zip(self._extra_names, self._cell_offsets, strict=True):
            values[name] = cell_v + (offset - 0.6) * spread_v
        return values
