"""A simulated device's MQTT connection: status and will, QoS 1 publishing, subscriptions.

Each device has its own connection (as real equipment does) so that its will
message, a retained ``{"state": "offline"}`` status, is published by the broker
when the device disappears without saying goodbye.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kilowatch.mqtt import broker_address, surviving
from simulator import payloads

log = logging.getLogger(__name__)
KEEPALIVE_S = 30


class LinkError(RuntimeError):
    """The device could not connect to the broker."""


class MqttLink:
    """One device's MQTT session under ``{prefix}/{serial}/…``."""

    def __init__(self, *, url: str, prefix: str, serial: str, firmware: str,
                 client_id: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        """Log in with ``url``'s user; an activated device passes ``client_id=serial``."""
        self.serial = serial
        self.firmware = firmware
        self._url = url
        self._tls = tls
        self._tls_ready = False
        self._base = f"{prefix}/{serial}"
        tag = hashlib.blake2b(prefix.encode(), digest_size=4).hexdigest()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"kwsim-{serial}-{tag}",
                                   protocol=mqtt.MQTTv5)
        self._client.max_inflight_messages_set(200)
        self._client.reconnect_delay_set(1, 30)
        self._client.will_set(self.topic("status"), self._status_json("offline"), qos=1,
                              retain=True)
        self._client.on_connect = surviving(self._on_connect, log)
        self._client.on_publish = surviving(self._on_publish, log)
        self._client.on_message = surviving(self._on_message, log)
        self._connected = threading.Event()
        self._refused: str | None = None
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()
        self._lock = threading.Condition()
        self._handlers: dict[str, Callable[[bytes], None]] = {}

    def topic(self, suffix: str) -> str:
        """Return the full topic of ``suffix`` for this device."""
        return f"{self._base}/{suffix}"

    def connect(self, timeout_s: float = 10.0) -> None:
        """Connect, announce ``online`` (retained), and keep the session alive in a thread."""
        host, port, tls, user, password = broker_address(self._url)
        if tls and not self._tls_ready:  # paho takes its TLS settings once
            if self._tls is not None:
                self._client.tls_set_context(self._tls)
            else:
                self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
            self._tls_ready = True
        if user:
            self._client.username_pw_set(user, password)
        try:
            self._client.connect(host, port, keepalive=KEEPALIVE_S)
        except OSError as error:
            raise LinkError(f"cannot reach the MQTT broker at {host}:{port} ({error})") from None
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._refused:
            self._client.loop_stop()
            reason = self._refused or "no answer"
            raise LinkError(f"the MQTT broker at {host}:{port} refused {self.serial}: {reason}")

    def reset(self) -> None:
        """Forget a refused connection attempt, so that :meth:`connect` may try again."""
        self._connected.clear()
        self._refused = None

    def publish(self, suffix: str, payload: Mapping[str, Any], *, retain: bool = False) -> None:
        """Publish a JSON payload with QoS 1 (queued while disconnected, sent on reconnect)."""
        info = self._client.publish(self.topic(suffix), json.dumps(payload), qos=1,
                                    retain=retain)
        with self._lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._pending.add(info.mid)

    def subscribe(self, suffix: str, handler: Callable[[bytes], None]) -> None:
        """Call ``handler(payload)`` for each message on this device's ``suffix`` topic."""
        self._handlers[self.topic(suffix)] = handler
        self._client.subscribe(self.topic(suffix), qos=1)

    def pending(self) -> int:
        """Return how many published messages the broker has not acknowledged yet."""
        with self._lock:
            return len(self._pending)

    def wait_pending(self, at_most: int, timeout_s: float | None = None) -> bool:
        """Wait until at most ``at_most`` messages are unacknowledged; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while len(self._pending) > at_most:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._lock.wait(1.0 if left is None else min(left, 1.0))
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Announce ``offline`` (retained), deliver what is pending, and disconnect."""
        self.publish("status", payloads.status(time.time(), "offline", self.firmware),
                     retain=True)
        if not self.wait_pending(0, timeout_s):
            log.warning("%s: %d message(s) not acknowledged at shutdown", self.serial,
                        self.pending())
        self._client.disconnect()
        self._client.loop_stop()

    def _status_json(self, state: str) -> str:
        return json.dumps(payloads.status(time.time(), state, self.firmware))

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._connected.set()
            return
        self.publish("status", payloads.status(time.time(), "online", self.firmware),
                     retain=True)
        for topic in self._handlers:
            client.subscribe(topic, qos=1)
        self._connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
                self._lock.notify_all()
            else:
                self._acked_early.add(mid)

    def _on_message(self, client, userdata, message) -> None:
        handler = self._handlers.get(message.topic)
        if handler is None:
            return
        try:
            handler(message.payload)
        except Exception:
            log.exception("%s: handler for %s failed", self.serial, message.topic)
