"""The collector's Redis side: latest values and device states, off the writer's path.

The writer hands each committed batch's newest values to :class:`LiveUpdater`,
which writes them to Redis in its own thread, merging batches while it is behind,
so a slow or hung Redis never holds the database writer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import redis

from collector.backlog import Item
from collector.logs import RateLimitedLog
from collector.metrics import Metrics
from kilowatch.telemetry import ingest, live

if TYPE_CHECKING:
    from collector.writer import BatchResult

log = logging.getLogger(__name__)


class LiveUpdater(threading.Thread):
    """Write latest values to Redis off the writer's path, merging batches when behind."""

    def __init__(self, client: redis.Redis, metrics: Metrics) -> None:
        super().__init__(name="collector-live", daemon=True)
        self.writer = live.LiveWriter(client)
        self.metrics = metrics
        self._cond = threading.Condition()
        self._updates: dict[int, tuple] = {}
        self._states: dict[int, bool] = {}
        self._committed_at = 0.0
        self._stopping = False
        self._log = RateLimitedLog(log, interval_s=30)
        self._last_trace = -60.0

    def submit(self, updates: dict[int, tuple], states: dict[int, bool],
               committed_at: float) -> None:
        """Queue one batch's latest values and device states, merged with pending ones."""
        with self._cond:
            for device_id, update in updates.items():
                pending = self._updates.get(device_id)
                self._updates[device_id] = update if pending is None else _merge(pending, update)
            self._states.update(states)
            self._committed_at = committed_at
            self._cond.notify()

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._updates and not self._states and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._updates and not self._states:
                    return
                updates, states, committed_at = self._updates, self._states, self._committed_at
                self._updates, self._states = {}, {}
            self._write(updates, states, committed_at)

    def _write(self, updates: dict, states: dict[int, bool], committed_at: float) -> None:
        offline = [d for d, online in states.items() if not online]
        online = [d for d, up in states.items() if up and d not in updates]
        try:
            self.writer.write(updates, last_seen=committed_at, committed_at=committed_at,
                              offline=offline, online=online)
        except redis.RedisError as error:
            self.metrics.redis_errors.inc()
            self._log.warning("redis", "could not write live values: %s", error)
        except Exception:  # a bug here must not end the thread: live values would freeze
            self.metrics.redis_errors.inc()
            if time.monotonic() - self._last_trace >= 60:  # the traceback, once a minute
                self._last_trace = time.monotonic()
                log.exception("could not write live values of %d devices", len(updates))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is pending, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self.join(timeout_s)


def _merge(older: tuple, newer: tuple) -> tuple:
    """Merge two (newest ts, seq, values) updates of one device; newer samples win."""
    if newer[0] < older[0]:
        older, newer = newer, older
    seq = max((s for s in (older[1], newer[1]) if s is not None), default=None)
    return newer[0], seq, {**older[2], **newer[2]}


def latest_values(batch: list[Item], result: BatchResult,
                  devices: dict[str, ingest.Device]) -> dict:
    """Merge each device's samples in time order: device → (newest ts, seq, values)."""
    samples: dict[int, list] = defaultdict(list)
    seqs: dict[int, int] = {}
    for index, item in enumerate(batch):
        if item.kind != "telemetry" or index in result.refused:
            continue
        device_id = devices[item.serial].id
        samples[device_id].extend(item.body.samples)
        seqs[device_id] = max(seqs.get(device_id, -1), item.body.seq)
    updates = {}
    for device_id, items in samples.items():
        items.sort(key=lambda s: s[0])
        values: dict[str, float] = {}
        for _, sample_values in items:
            values.update(sample_values)
        updates[device_id] = (items[-1][0], seqs[device_id], values)
    return updates
