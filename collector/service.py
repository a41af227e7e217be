"""The collector service: an MQTT 5 client whose ``on_message`` only decodes,
validates and enqueues, and a writer thread that stores and then acknowledges.

The session is persistent (session expiry) and messages are acknowledged by
hand after their rows are committed, so the broker keeps and redelivers
whatever the collector had not stored when it stopped or crashed. The client's
Receive Maximum bounds how many unacknowledged messages the broker sends at
once; throughput is that window divided by the commit latency.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from collector.backlog import PAYLOAD_KEEP, Backlog, Item
from collector.logs import RateLimitedLog
from collector.metrics import Metrics
from collector.validation import KINDS, Invalid, Validator, decode_json, parse_topic
from collector.writer import Writer
from kilowatch.mqtt import broker_address, surviving
from kilowatch.redis_client import get_redis
from kilowatch.settings import Settings, redact_url

log = logging.getLogger("collector")


def default_client_id() -> str:
    """Return a stable client id for this host, so the broker session survives restarts."""
    return f"kilowatch-collector-{socket.gethostname()}"[:64]


def decode_message(message: mqtt.MQTTMessage, *, prefix: str, validator: Validator,
                   generation: int) -> Item:
    """Decode and validate one MQTT message into a backlog item; never raises."""
    try:
        topic = message.topic
    except UnicodeDecodeError:
        topic = "(topic is not UTF-8)"
    # The head of the payload stays with the item: the writer may refuse it later too
    # (unknown serial, too many points …) and support must see what was sent.
    item = Item(mid=message.mid, qos=message.qos, generation=generation, topic=topic,
                serial=None, kind=None, received_at=time.time(),
                payload=message.payload[:PAYLOAD_KEEP], retained=bool(message.retain))
    try:
        item.serial, item.kind = parse_topic(topic, prefix)
        body = decode_json(message.payload)
        now = dt.datetime.now(dt.UTC)
        if item.kind == "telemetry":
            item.body = validator.telemetry(body, now)
            item.points = item.body.points
        else:
            item.body = validator.small(item.kind, body, now)
    except Invalid as refusal:
        item.reason, item.detail = refusal.reason, refusal.detail
    except Exception as error:  # a validator bug must not stop the collector
        log.exception("could not validate a message on %s", topic)
        item.reason, item.detail = "bad_schema", f"unexpected: {error}"[:300]
    if item.reason:
        item.body, item.points = None, 0
    return item


class CollectorError(RuntimeError):
    """The collector cannot start as configured."""


class Collector:
    """Receive device messages and hand them to the writer; stop cleanly on request."""

    def __init__(self, settings: Settings, *, client_id: str | None = None,
                 receive_maximum: int = 1000, session_expiry_s: int = 7 * 86400,
                 max_backlog_points: int = 500_000, batch_points: int = 50_000,
                 linger_s: float = 0.05, dead_letter_limit: int = 10_000,
                 metrics_port: int | None = None) -> None:
        self.settings = settings
        self.client_id = client_id or default_client_id()
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.metrics_port = metrics_port
        self.metrics = Metrics()
        self.backlog = Backlog(max_backlog_points)
        self.validator = Validator(retention_days=settings.raw_retention_days)
        self.refusals = RateLimitedLog(log, interval_s=60)
        self._broker_log = RateLimitedLog(log, interval_s=30)
        self.stop_event = threading.Event()
        self._accepting = True
        self._generation = 0
        self._connected = False
        self._state_lock = threading.Lock()
        self.writer = Writer(settings=settings, backlog=self.backlog, metrics=self.metrics,
                             ack=self._ack, refusals=self.refusals, batch_points=batch_points,
                             linger_s=linger_s, dead_letter_limit=dead_letter_limit,
                             redis_client=get_redis(settings), client_id=self.client_id,
                             subscribed=lambda: self._connected)
        self.client = self._make_client()

    # ---- MQTT -------------------------------------------------------------------------

    def topics(self) -> list[str]:
        """Return the subscriptions, shared when a share group is configured."""
        topics = [f"{self.settings.mqtt_prefix}/+/{kind}" for kind in KINDS]
        group = self.settings.mqtt_share_group
        return [f"$share/{group}/{t}" for t in topics] if group else topics

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        broker = broker_address(self.settings.mqtt_url)
        if broker.tls:
            client.tls_set()
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        # An exception in a callback is logged and the network thread carries on (a message
        # whose handling failed stays unacknowledged: the broker sends it again on reconnect).
        client.on_connect = surviving(self._on_connect, log)
        client.on_subscribe = surviving(self._on_subscribe, log)
        client.on_disconnect = surviving(self._on_disconnect, log)
        client.on_message = surviving(self._on_message, log)
        client.on_connect_fail = surviving(self._on_connect_fail, log)
        client.reconnect_delay_set(1, 30)
        return client

    def _on_connect_fail(self, client, userdata) -> None:
        self._broker_log.warning("connect", "cannot reach the broker at %s; retrying",
                                 redact_url(self.settings.mqtt_url))

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        with self._state_lock:
            self._generation += 1
            self._connected = True
        options = SubscribeOptions(qos=1,
                                   retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        client.subscribe([(topic, options) for topic in self.topics()])
        log.info("connected to the broker client_id=%s session_present=%s topics=%s",
                 self.client_id, flags.session_present, ",".join(self.topics()))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # Connected counts from the SUBACK: from then on no device message is missed.
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            log.error("broker refused subscriptions: %s", ", ".join(refused))
        self.metrics.connected.set(1)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._state_lock:
            self._connected = False
        self.metrics.connected.set(0)
        if not self.stop_event.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if not self._accepting:
            return  # shutting down: left unacknowledged, the broker redelivers it
        item = decode_message(message, prefix=self.settings.mqtt_prefix,
                              validator=self.validator, generation=self._generation)
        self.metrics.messages_received.labels(item.kind or "unknown").inc()
        if item.reason:
            self.metrics.rejected.labels(item.reason).inc()
            self.refusals.warning((item.serial, item.reason), "refused %s from %s: %s (%s)",
                                  item.kind, item.serial, item.reason, item.detail)
        else:
            self.metrics.points_received.inc(item.points)
        self.backlog.put(item, self.stop_event)

    def _ack(self, item: Item) -> None:
        """Acknowledge a stored message, unless it came on an earlier connection."""
        if item.qos == 0:
            return
        with self._state_lock:
            if self._connected and item.generation == self._generation:
                self.client.ack(item.mid, item.qos)

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the metrics server, the writer and the MQTT network thread."""
        if self.metrics_port:
            try:
                self.metrics.serve(self.metrics_port, self.settings.metrics_host)
            except OSError as error:
                raise CollectorError(f"cannot serve /metrics on {self.settings.metrics_host} "
                                     f"port {self.metrics_port}: "
                                     f"{error.strerror or error}") from None
        self.writer.start()
        broker = broker_address(self.settings.mqtt_url)
        self.client.connect_async(broker.host, broker.port, keepalive=30,
                                  clean_start=False, properties=self._connect_properties())
        self.client.loop_start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking messages, store and acknowledge the backlog, then disconnect."""
        self._accepting = False
        self.stop_event.set()
        self.writer.stop()
        self.writer.join(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()

    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM."""
        done = threading.Event()

        def _stop(signum, frame) -> None:
            log.info("signal %s: stopping", signum)
            done.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        self.start()
        log.info("collector running; metrics on %s:%s", self.settings.metrics_host,
                 self.metrics_port)
        failed = False
        while not done.wait(1.0):
            if not self.writer.is_alive():
                log.error("writer thread died; stopping so a supervisor restarts us")
                failed = True
                break
        self.stop()
        if failed:
            raise SystemExit(1)

