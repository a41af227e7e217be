"""The writer thread: the only place the collector touches the database.

It takes batches from the backlog, stores them in one transaction (raw rows by
binary COPY, dirty rollup buckets, seq gaps, and through ``collector.handlers``
device state, device alarms, schedule acks, dead letters), commits, and only
then acknowledges the messages to the broker and writes the latest values to
Redis. When the database fails it keeps the batch, retries with backoff, and the
backlog fills until ``on_message`` stops reading: the broker holds everything
meanwhile. Between batches, while the collector is subscribed, it writes the
heartbeat (``collector_heartbeats``) by which the worker tells a platform outage
from silent devices.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import psycopg
import redis

from collector import handlers
from collector.backlog import Backlog, Item
from collector.live_updater import LiveUpdater, latest_values
from collector.logs import RateLimitedLog
from collector.metrics import Metrics
from kilowatch import db
from kilowatch.settings import Settings
from kilowatch.telemetry import ingest
from kilowatch.telemetry import storage as telemetry

log = logging.getLogger(__name__)

_DIRECT_PAUSE_S = 10.0  # after duplicates, skip the direct COPY path for a while
_HEARTBEAT_S = 5.0  # how often the heartbeat is written, at most
_CONFLICT_PAUSE_S = (0.01, 2.0)  # first and longest pause before retrying a rolled-back batch


def conflict_pause(attempt: int) -> float:
    """Return a random pause before retry ``attempt`` (1, 2, …) of a rolled-back batch.

    "Full jitter": anywhere up to a doubling ceiling, so that writers that collided
    once do not collide again in step.
    """
    first, longest = _CONFLICT_PAUSE_S
    return random.uniform(0, min(longest, first * 2 ** attempt))


class BatchResult:
    """What one committed batch changed, for acks, Redis and metrics."""

    def __init__(self) -> None:
        self.refused: dict[int, tuple[str, str]] = {}  # index in batch → (reason, detail)
        self.inserted = 0
        self.rows = 0
        self.gaps: list[tuple] = []
        self.states: dict[int, tuple[bool, list]] = {}
        self.letters = 0


class Writer(threading.Thread):
    """Store batches from the backlog; acknowledge through ``ack`` after each commit."""

    def __init__(self, *, settings: Settings, backlog: Backlog, metrics: Metrics,
                 ack: Callable[[Item], None], refusals: RateLimitedLog,
                 batch_points: int = 50_000, batch_messages: int = 5_000,
                 linger_s: float = 0.05, dead_letter_limit: int = 10_000,
                 redis_client: redis.Redis | None = None, client_id: str = "collector",
                 subscribed: Callable[[], bool] = lambda: True) -> None:
        super().__init__(name="collector-writer", daemon=True)
        self.client_id = client_id
        self.subscribed = subscribed
        # Well within the offline delay, so a live platform never looks silent.
        self._beat_every_s = min(_HEARTBEAT_S, settings.offline_after / 4)
        self._last_beat = -_HEARTBEAT_S
        self.settings = settings
        self.backlog = backlog
        self.metrics = metrics
        self.ack = ack
        self.refusals = refusals
        self.batch_points = batch_points
        self.batch_messages = batch_messages
        self.linger_s = linger_s
        self.dead_letter_limit = dead_letter_limit
        self.stop_event = threading.Event()
        self._conn: psycopg.Connection | None = None
        self._devices: dict[str, ingest.Device] = {}
        self._points: dict[int, dict[str, int]] = {}
        self._direct_after = 0.0
        self._last_trim = 0.0
        self._totals = [0, 0, 0]  # messages, rows stored, refused since the last stats line
        self._last_stats = time.time()
        self.live = LiveUpdater(redis_client, metrics) if redis_client is not None else None
        self._db_log = RateLimitedLog(log, interval_s=30)

    # ---- loop ---------------------------------------------------------------------------

    def run(self) -> None:
        if self.live is not None:
            self.live.start()
        while not (self.stop_event.is_set() and self.backlog.sizes()[0] == 0):
            batch = self.backlog.take(max_points=self.batch_points,
                                      max_items=self.batch_messages,
                                      linger_s=self.linger_s, timeout_s=0.2)
            queued, points = self.backlog.sizes()
            self.metrics.backlog_messages.set(queued)
            self.metrics.backlog_points.set(points)
            self._beat()
            if not batch:
                continue
            try:
                self.write_batch(batch)
            finally:
                self.backlog.done(batch)
        self.close()
        if self.live is not None:
            self.live.stop()

    def write_batch(self, batch: list[Item]) -> BatchResult | None:
        """Store a batch (retrying while the database is away), then acknowledge it.

        Returns what the batch changed, or None when stopped before it could be stored.
        """
        result = self._write_with_retry(batch)
        if result is not None:
            self._after_commit(batch, result)
        return result

    def stop(self) -> None:
        """Ask the thread to finish the backlog and exit (retries give up when stopping)."""
        self.stop_event.set()

    def close(self) -> None:
        """Close the database connection (the next batch opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _beat(self) -> None:
        """Write the heartbeat that tells the worker the platform ingests (see ``jobs.offline``).

        Only while subscribed: with the broker or the database away, or this thread
        stuck retrying a batch, the heartbeat stops and the platform counts as down.
        """
        now = time.monotonic()
        if now - self._last_beat < self._beat_every_s or not self.subscribed():
            return
        self._last_beat = now
        try:
            ingest.record_heartbeat(self._connection(), self.client_id)
        except psycopg.Error as error:
            self._db_log.warning("database", "could not write the heartbeat: %s",
                                 str(error).strip()[:200])
            self.close()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.settings.database_url, autocommit=True)
        return self._conn

    def _write_with_retry(self, batch: list[Item]) -> BatchResult | None:
        delay = 0.5
        conflicts = 0
        while True:
            started = time.monotonic()
            try:
                result = self._store(self._connection(), batch)
                self.metrics.commit_seconds.observe(time.monotonic() - started)
                return result
            except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                self.metrics.db_errors.inc()
                self._db_log.warning("database", "database unavailable, batch kept, retrying "
                                     "in %.1f s: %s", delay, str(error).strip()[:200])
                self.close()
            except psycopg.errors.TransactionRollback as error:
                # Deadlock or serialization failure (two collectors on the same rows): try
                # again after a random pause, longer each time, so they stop colliding.
                conflicts += 1
                pause = conflict_pause(conflicts)
                self._db_log.warning("conflict", "batch rolled back (%s), retrying in %.2f s",
                                     type(error).__name__, pause)
                if self.stop_event.wait(pause):
                    log.warning("stopping with %d messages not stored; the broker keeps them",
                                len(batch))
                    return None
                continue
            except Exception:
                log.exception("batch failed; storing its %d messages one by one", len(batch))
                self.close()
                return self._store_each(batch)
            if self.stop_event.wait(delay):
                log.warning("stopping with %d messages not stored; the broker keeps them",
                            len(batch))
                return None
            delay = min(delay * 2, 30.0)

    def _store_each(self, batch: list[Item]) -> BatchResult:
        """Store messages one at a time, refusing those the database rejects."""
        total = BatchResult()
        for index, item in enumerate(batch):
            try:
                part = self._store(self._connection(), [item])
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception as error:
                log.exception("message on %s refused by the database", item.topic)
                self.close()
                item.reason, item.detail = "store_failed", str(error).strip()[:300]
                part = self._store(self._connection(), [item])
            total.inserted += part.inserted
            total.rows += part.rows
            total.gaps += part.gaps
            total.states.update(part.states)
            total.letters += part.letters
            for refusal in part.refused.values():
                total.refused[index] = refusal
        return total

    # ---- one batch ------------------------------------------------------------------------

    def _store(self, conn: psycopg.Connection, batch: list[Item]) -> BatchResult:
        result = BatchResult()
        for index, item in enumerate(batch):
            if item.reason:
                result.refused[index] = (item.reason, item.detail or "")
        self._resolve_devices(conn, batch, result)
        self._register_points(conn, batch, result)
        with conn.transaction():
            watermarks = telemetry.read_watermarks(conn)
            self._store_telemetry(conn, batch, result, watermarks)
            result.refused.update(handlers.store_alarms_and_acks(
                conn, batch, self._devices, result.refused))
            result.states = ingest.apply_activity(conn, handlers.activity(
                batch, self._devices, offline_after_s=self.settings.offline_after))
            result.letters = handlers.store_dead_letters(conn, batch, self._devices,
                                                         result.refused)
        return result

    def _resolve_devices(self, conn, batch: list[Item], result: BatchResult) -> None:
        missing = {i.serial for i in batch if i.serial and i.serial not in self._devices}
        if missing:
            self._devices.update(ingest.find_devices(conn, missing))
        for index, item in enumerate(batch):
            if index not in result.refused and item.serial not in self._devices:
                result.refused[index] = ("unknown_serial", f"no device {item.serial!r}")

    def _register_points(self, conn, batch: list[Item], result: BatchResult) -> None:
        telemetry_items = [(i, item) for i, item in enumerate(batch)
                           if item.kind == "telemetry" and i not in result.refused]
        devices = {self._devices[item.serial].id for _, item in telemetry_items}
        unseen = [d for d in devices if d not in self._points]
        if unseen:
            self._points.update(ingest.device_point_ids(conn, unseen))
        wanted: dict[int, list[str]] = defaultdict(list)
        for _, item in telemetry_items:
            device_id = self._devices[item.serial].id
            known = self._points[device_id]
            for _, values in item.body.samples:
                if not values.keys() <= known.keys():
                    wanted[device_id].extend(n for n in values if n not in known)
        wanted = {d: names for d, names in wanted.items() if names}
        if wanted:
            self._points.update(ingest.register_points(
                conn, wanted, limit=self.settings.max_points_per_device))
        for index, item in enumerate(batch):
            if item.kind != "telemetry" or index in result.refused:
                continue
            known = self._points[self._devices[item.serial].id].keys()
            unknown = {n for _, values in item.body.samples if not values.keys() <= known
                       for n in values if n not in known}
            if unknown:
                result.refused[index] = (
                    "too_many_points",
                    f"{len(unknown)} new point names beyond the device's bound of "
                    f"{self.settings.max_points_per_device}, e.g. {sorted(unknown)[0]!r}")

    def _store_telemetry(self, conn, batch: list[Item], result: BatchResult,
                         watermarks: dict) -> None:
        encoder = telemetry.CopyEncoder()
        seqs: dict[int, list[int]] = defaultdict(list)
        dirty: dict[str, set] = defaultdict(set)
        for index, item in enumerate(batch):
            if item.kind != "telemetry" or index in result.refused:
                continue
            device_id = self._devices[item.serial].id
            ids = self._points[device_id]
            seqs[device_id].append(item.body.seq)
            for ts, values in item.body.samples:
                encoder.add(ts, device_id, values, ids)
            self._mark(item, device_id, watermarks, dirty)
        try_direct = time.monotonic() >= self._direct_after
        result.inserted, duplicates = telemetry.store_samples(conn, encoder,
                                                              try_direct=try_direct)
        result.rows = encoder.rows
        if duplicates:
            self._direct_after = time.monotonic() + _DIRECT_PAUSE_S
        for rollup, pairs in dirty.items():
            telemetry.mark_dirty(conn, rollup, pairs)
        result.gaps = ingest.track_seq(conn, seqs)

    @staticmethod
    def _mark(item: Item, device_id: int, watermarks: dict, dirty: dict) -> None:
        for rollup in telemetry.ROLLUPS:
            watermark = watermarks.get(rollup.name)
            if watermark is None or item.body.oldest >= watermark:
                continue
            for ts, values in item.body.samples:
                if ts < watermark and values:
                    dirty[rollup.name].add((device_id, rollup.floor(ts)))

    # ---- after the commit ---------------------------------------------------------------------

    def _after_commit(self, batch: list[Item], result: BatchResult) -> None:
        committed_at = time.time()
        for item in batch:
            self.ack(item)
        self._count(batch, result, committed_at)
        self._write_live(batch, result, committed_at)
        if result.letters and committed_at - self._last_trim > 10:
            self._last_trim = committed_at
            try:
                ingest.trim_dead_letters(self._connection(), self.dead_letter_limit)
            except psycopg.Error as error:
                log.warning("could not trim dead letters: %s", error)

    def _count(self, batch: list[Item], result: BatchResult, committed_at: float) -> None:
        m = self.metrics
        m.points_stored.inc(result.inserted)
        for index, item in enumerate(batch):
            if index not in result.refused:
                m.messages_stored.labels(item.kind or "unknown").inc()
        m.points_duplicate.inc(result.rows - result.inserted)
        m.batch_points.observe(result.rows)
        m.last_commit.set(committed_at)
        for index, (reason, detail) in result.refused.items():
            item = batch[index]
            if not item.reason:  # refusals found by on_message are counted there
                m.rejected.labels(reason).inc()
                self.refusals.warning((item.serial, reason), "refused %s from %s: %s (%s)",
                                      item.kind, item.serial, reason, detail)
        for device_id, first, last in result.gaps:
            m.seq_missing.inc(last - first + 1)
            log.warning("seq gap device=%s missing=%s..%s", device_id, first, last)
        log.debug("batch stored messages=%d rows=%d new=%d refused=%d", len(batch),
                  result.rows, result.inserted, len(result.refused))
        totals = self._totals
        totals[0] += len(batch)
        totals[1] += result.inserted
        totals[2] += len(result.refused)
        if committed_at - self._last_stats >= 60:
            queued, points = self.backlog.sizes()
            log.info("ingest messages=%d rows_stored=%d refused=%d backlog_messages=%d "
                     "backlog_points=%d (last %.0f s)", *totals, queued, points,
                     committed_at - self._last_stats)
            self._totals, self._last_stats = [0, 0, 0], committed_at

    def _write_live(self, batch: list[Item], result: BatchResult, committed_at: float) -> None:
        if self.live is not None:
            states = {d: online for d, (online, _) in result.states.items()}
            self.live.submit(latest_values(batch, result, self._devices), states, committed_at)
