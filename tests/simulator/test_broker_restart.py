"""The simulator loses nothing when the broker restarts while it publishes.

Uses a private Mosquitto (its own port and persistence directory) so that
stopping it does not disturb anyone else's tests on the shared broker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.simulator.conftest import simulate_command

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateBroker:
    """A Mosquitto with persistence on its own port, that a test may stop and start."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser {user}\n"
            f"persistence true\npersistence_location {directory}/\n"
            "max_queued_messages 100000\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("private mosquitto did not start")

    def stop(self) -> None:
        """Stop the broker gracefully (it saves its queues)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)


class PersistentSubscriber:
    """A collector stand-in: persistent session, QoS 1, reconnects by itself."""

    def __init__(self, port: int, topic: str) -> None:
        self.seqs: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="restart-collector",
                                   protocol=mqtt.MQTTv5)
        self._client.reconnect_delay_set(0.2, 1)
        self._client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self._client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", port, clean_start=False, properties=properties)
        self._client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        serial = message.topic.split("/")[-2]
        with self._lock:
            self.seqs.append((serial, json.loads(message.payload)["seq"]))

    def received(self, serial: str) -> set[int]:
        """The distinct seq numbers received so far from one device."""
        with self._lock:
            return {seq for sender, seq in self.seqs if sender == serial}

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    """A private broker, stopped at the end."""
    private = PrivateBroker(tmp_path)
    private.start()
    yield private
    private.stop()


def test_a_broker_restart_loses_no_telemetry(kw_env, broker):
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    subscriber = PersistentSubscriber(broker.port, f"{prefix}/+/telemetry")
    time.sleep(0.5)
    env = {**os.environ, **kw_env, "KILOWATCH_MQTT_URL": f"mqtt://127.0.0.1:{broker.port}"}
    simulator = subprocess.Popen(
        simulate_command("--sites", "2", "--interval", "0.2", "--duration", "8",
                         "--serial-prefix", "RST"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Stop the broker mid-stream: once both devices publish (start-up time varies).
        deadline = time.monotonic() + 30
        while not all(subscriber.received(s) for s in ("RST-0001", "RST-0002")) and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        time.sleep(0.5)
        broker.stop()
        time.sleep(2.0)
        broker.start()
        _, stderr = simulator.communicate(timeout=60)
    finally:
        if simulator.poll() is None:
            simulator.kill()
    try:
        assert simulator.returncode == 0, stderr
        sent = dict(re.findall(r"^(RST-\d+): stopped at seq (\d+)", stderr, re.MULTILINE))
        assert set(sent) == {"RST-0001", "RST-0002"}
        for serial, last in sent.items():
            expected = set(range(1, int(last) + 1))
            deadline = time.monotonic() + 20
            while subscriber.received(serial) != expected and time.monotonic() < deadline:
                time.sleep(0.1)
            assert subscriber.received(serial) == expected, serial
            assert int(last) == 41  # one message every 0.2 s for 8 s, nothing skipped
    finally:
        subscriber.close()
