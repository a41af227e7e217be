"""The collector's Prometheus metrics, in their own registry, served on ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from collector.validation import REASONS
from kilowatch.probes import SUBSCRIBED_GAUGE
from kilowatch.probes import collector_is_subscribed as is_subscribed

# is_subscribed lives in the core (the demo, which may not import the collector, waits on
# it); it is offered here too beside the gauge it reads.
__all__ = ["Metrics", "is_subscribed"]


class Metrics:
    """Every figure the collector exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages_received = Counter(
            "kilowatch_collector_messages_received_total", "Messages received, by kind",
            ["kind"], registry=r)
        self.points_received = Counter(
            "kilowatch_collector_points_received_total",
            "Point values in valid telemetry messages", registry=r)
        self.messages_stored = Counter(
            "kilowatch_collector_messages_stored_total",
            "Valid messages whose content is committed (redeliveries included), by kind",
            ["kind"], registry=r)
        self.points_stored = Counter(
            "kilowatch_collector_points_stored_total", "New raw rows committed", registry=r)
        self.points_duplicate = Counter(
            "kilowatch_collector_points_duplicate_total",
            "Point values already stored (redelivered messages)", registry=r)
        self.rejected = Counter(
            "kilowatch_collector_messages_rejected_total", "Messages refused, by reason",
            ["reason"], registry=r)
        for reason in REASONS:
            self.rejected.labels(reason)
        self.batch_points = Histogram(
            "kilowatch_collector_batch_points", "Point values per committed batch",
            buckets=(10, 100, 1000, 5000, 10_000, 25_000, 50_000, 100_000), registry=r)
        self.commit_seconds = Histogram(
            "kilowatch_collector_commit_seconds", "Time to store and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)
        self.backlog_messages = Gauge(
            "kilowatch_collector_backlog_messages", "Messages waiting to be written", registry=r)
        self.backlog_points = Gauge(
            "kilowatch_collector_backlog_points", "Point values waiting to be written",
            registry=r)
        self.last_commit = Gauge(
            "kilowatch_collector_last_commit_timestamp_seconds",
            "Unix time of the last committed batch", registry=r)
        self.seq_missing = Counter(
            "kilowatch_collector_seq_missing_total",
            "Telemetry messages missing according to per-device seq", registry=r)
        self.db_errors = Counter(
            "kilowatch_collector_database_errors_total",
            "Batches retried because the database failed", registry=r)
        self.redis_errors = Counter(
            "kilowatch_collector_redis_errors_total", "Failed live-value writes", registry=r)
        self.connected = Gauge(
            SUBSCRIBED_GAUGE, "1 while connected to the broker and subscribed",
            registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (loopback by default)."""
        start_http_server(port, addr=host, registry=self.registry)

