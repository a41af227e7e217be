"""Run a simulated fleet: replay history fast (backfill), then publish live at an interval."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import random
import threading
import time
from collections.abc import Callable

from tqdm import tqdm

from simulator import payloads
from simulator.alarms import AlarmEvent
from simulator.controller import ControllerFactory, default_controller
from simulator.link import MqttLink
from simulator.model import CANONICAL_POINTS, Sample, SiteModel
from simulator.sites import SiteSpec

log = logging.getLogger(__name__)
# The protocol allows 10,000 values a message; 6,000 keeps the JSON well under the
# broker's 256 KB packet limit even with long point names.
MAX_VALUES_PER_MESSAGE = 6_000
MAX_SAMPLES_PER_MESSAGE = 360
BACKFILL_IN_FLIGHT = 16  # messages per device awaiting PUBACK (each up to ~250 kB)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How the fleet behaves: timing, faults, losses and extra points."""

    interval_s: float = 10.0
    backfill_days: float = 0.0
    backfill_interval_s: float = 60.0
    duration_s: float | None = None
    fault_rate: float = 0.02
    drop_rate: float = 0.0
    extra_points: int = 0
    outage_s: float = 0.0
    outage_after_s: float = 60.0
    stuck_alarms: tuple[tuple[str, str], ...] = ()  # (serial, code) raised live, never cleared


class Device:
    """One simulated storage device: its site model, MQTT link and telemetry sequence."""

    def __init__(self, site: SiteSpec, link: MqttLink, options: RunOptions,
                 controller_factory: ControllerFactory = default_controller) -> None:
        self.site = site
        self.link = link
        self.controller = controller_factory(site)
        self.model = SiteModel(site, self.controller, fault_rate=options.fault_rate,
                               extra_points=options.extra_points)
        self.drop_rate = options.drop_rate
        self.seq = 0
        self.last_t: float | None = None
        self.held_alarms: list[AlarmEvent] = []
        self._drops = random.Random(f"drops:{site.seed}:{site.index}")

    def attach_controller(self) -> None:
        """Give the controller the device's link when it wants one (schedule followers)."""
        attach = getattr(self.controller, "attach", None)
        if callable(attach):
            attach(self.link)

    def advance(self, t: float, first_dt_s: float) -> Sample:
        """Step the site model to epoch ``t``."""
        dt_s = first_dt_s if self.last_t is None else t - self.last_t
        self.last_t = t
        return self.model.step(t, max(dt_s, 1e-3))

    def send(self, samples: list[Sample]) -> None:
        """Publish alarms and one telemetry message; drop it at ``drop_rate`` (seq still moves)."""
        for event in self.held_alarms + [e for s in samples for e in s.alarms]:
            self.link.publish("alarms", payloads.alarm(event))
        self.held_alarms = []
        self.seq += 1
        if self.drop_rate and self._drops.random() < self.drop_rate:
            return
        self.link.publish("telemetry", payloads.telemetry(self.seq, samples))

    def hold(self, samples: list[Sample]) -> None:
        """Keep the alarms of samples taken while silent, to report them afterwards."""
        self.held_alarms.extend(e for s in samples for e in s.alarms)


def samples_per_message(extra_points: int) -> int:
    """Return how many samples a backfill message carries (≤ 6,000 values)."""
    values = len(CANONICAL_POINTS) + extra_points
    return max(1, min(MAX_SAMPLES_PER_MESSAGE, MAX_VALUES_PER_MESSAGE // values))


def backfill(devices: list[Device], options: RunOptions, stop: threading.Event,
             now: Callable[[], float] = time.time) -> None:
    """Publish ``backfill_days`` of history as fast as the broker takes it, with a progress bar.

    History runs up to the moment the backfill ends (catching up on the time it
    took), so that live samples continue it without a gap.
    """
    interval = options.backfill_interval_s
    t = math.floor((now() - options.backfill_days * 86_400) / interval) * interval
    chunk = samples_per_message(options.extra_points)
    expected = int((now() - t) // interval) * len(devices)
    with tqdm(total=expected, unit="sample", desc="backfill", mininterval=1.0) as progress:
        while not stop.is_set():
            limit, times = now(), []
            while len(times) < chunk and t + interval <= limit:
                t += interval
                times.append(t)
            if not times:
                return
            for device in devices:
                device.send([device.advance(sample_t, interval) for sample_t in times])
                device.link.wait_pending(BACKFILL_IN_FLIGHT)
            progress.total = max(progress.total, progress.n + len(times) * len(devices))
            progress.update(len(times) * len(devices))


def live(devices: list[Device], options: RunOptions, stop: threading.Event) -> None:
    """Publish one sample per device every ``interval_s`` until stopped or the duration ends."""
    started, was_silent = time.monotonic(), False
    hold_stuck_alarms(devices, options.stuck_alarms, time.time())
    for tick in itertools.count():
        elapsed = tick * options.interval_s
        if stop.wait(max(0.0, started + elapsed - time.monotonic())):
            return
        silent = options.outage_s > 0 and (
            options.outage_after_s <= elapsed < options.outage_after_s + options.outage_s)
        if silent != was_silent:
            log.info("outage %s", f"begins for {options.outage_s:.0f} s" if silent else "ends")
            was_silent = silent
        t = time.time()
        for device in devices:
            sample = device.advance(t, options.interval_s)
            if silent:
                device.hold([sample])
            else:
                device.send([sample])
        if options.duration_s is not None and elapsed + options.interval_s > (
                options.duration_s + 1e-6):
            return


def hold_stuck_alarms(devices: list[Device], stuck: tuple[tuple[str, str], ...],
                      t: float) -> None:
    """Raise each (serial, code) alarm on its device, reported with the next sample."""
    for device in devices:
        for serial, code in stuck:
            if serial == device.site.serial:
                device.held_alarms.extend(device.model.alarms.hold(code, t))


def make_devices(sites: list[SiteSpec], links: list[MqttLink], options: RunOptions,
                 controller_factory: ControllerFactory = default_controller) -> list[Device]:
    """Pair each site with its connected link and give its controller the link if it wants."""
    devices = [Device(site, link, options, controller_factory)
               for site, link in zip(sites, links, strict=True)]
    for device in devices:
        device.attach_controller()
    return devices


def run(devices: list[Device], options: RunOptions, stop: threading.Event) -> None:
    """Simulate the fleet: backfill if asked, then live."""
    if options.backfill_days > 0:
        backfill(devices, options, stop)
    if not stop.is_set():
        log.info("publishing %d device(s) every %.1f s", len(devices), options.interval_s)
        live(devices, options, stop)
