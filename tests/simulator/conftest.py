"""Helpers for simulator tests: run ``kilowatch simulate`` and read what reaches the broker."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import bench_login


class Inbox:
    """A real MQTT client subscribed to a topic filter, keeping every message it receives."""

    def __init__(self, topic_filter: str) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        self._client.on_connect = lambda client, *args: client.subscribe(topic_filter, qos=1)
        self._client.connect(*bench_login(self._client))
        self._client.loop_start()
        assert self._subscribed.wait(10), "could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        payload = json.loads(message.payload) if message.payload else None
        with self._lock:
            self.messages.append((message.topic, payload, bool(message.retain)))

    def on(self, suffix: str, serial: str | None = None) -> list[dict]:
        """Return the payloads received on topics ending with ``/{suffix}`` (of one serial)."""
        with self._lock:
            ending = f"/{suffix}" if serial is None else f"/{serial}/{suffix}"
            return [payload for topic, payload, _ in self.messages if topic.endswith(ending)]

    def wait_for(self, predicate, timeout_s: float = 20.0) -> bool:
        """Wait until ``predicate(self)`` is true; return whether it became true."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.05)
        return predicate(self)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


class RecordingLink:
    """A device link in memory: hands the controller messages and keeps what it publishes."""

    def __init__(self, serial: str) -> None:
        self.serial = serial
        self.handlers: dict = {}
        self.sent: list[tuple[str, dict]] = []

    def subscribe(self, suffix, handler) -> None:
        self.handlers[suffix] = handler

    def publish(self, suffix, payload, *, retain=False) -> None:
        self.sent.append((suffix, dict(payload)))

    def deliver(self, suffix: str, body) -> None:
        """Hand the controller a message on ``suffix`` as the broker would."""
        self.handlers[suffix](body if isinstance(body, bytes) else json.dumps(body).encode())

    def acks(self, suffix: str = "plan/ack") -> list[dict]:
        """The acks sent on ``suffix``, without their timestamps."""
        return [{k: v for k, v in ack.items() if k != "ts"}
                for sent, ack in self.sent if sent == suffix]


@pytest.fixture
def inbox(kw_env) -> Iterator[Inbox]:
    """An Inbox on everything under this module's topic prefix; clears retained status after."""
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    box = Inbox(f"{prefix}/#")
    yield box
    box.close()
    clear_retained(prefix)


def clear_retained(prefix: str) -> None:
    """Delete the retained messages left under ``prefix`` on the shared broker."""
    retained = Inbox(f"{prefix}/#")
    time.sleep(0.5)
    topics = {topic for topic, _, is_retained in retained.messages if is_retained}
    retained.close()
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2)
    cleaner.connect(*bench_login(cleaner))
    cleaner.loop_start()
    for topic in topics:
        cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    cleaner.disconnect()
    cleaner.loop_stop()


def simulate_command(*args: str) -> list[str]:
    """The command line of ``kilowatch simulate ARGS``."""
    return ["kilowatch", "simulate", *args]


def run_simulate(kw_env, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """Run ``kilowatch simulate`` to completion against this module's services."""
    return subprocess.run(simulate_command(*args), env={**os.environ, **kw_env},
                          capture_output=True, text=True, timeout=timeout_s, check=False)
