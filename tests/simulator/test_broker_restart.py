"""The simulator loses nothing when the broker restarts while it publishes.

Uses a private Mosquitto (its own port and persistence directory) so that
stopping it does not disturb anyone else's tests on the shared broker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.collector.servers import Mosquitto
from tests.conftest import bench_login
from tests.simulator.conftest import simulate_command


class PersistentSubscriber:
    """A collector stand-in: persistent session, QoS 1, reconnects by itself."""

    def __init__(self, url: str, topic: str) -> None:
        self.seqs: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="restart-collector",
                                   protocol=mqtt.MQTTv5)
        self._client.reconnect_delay_set(0.2, 1)
        self._client.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
        self._client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self._client.connect(*bench_login(self._client, url), clean_start=False,
                             properties=properties)
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
def broker():
    """A private broker, removed at the end."""
    private = Mosquitto().start()
    yield private
    private.remove()


def test_a_broker_restart_loses_no_telemetry(kw_env, broker):
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    logins = broker.logins(prefix)
    subscriber = PersistentSubscriber(logins["KILOWATCH_SIMULATOR_MQTT_URL"],
                                      f"{prefix}/+/telemetry")
    time.sleep(0.5)
    env = {**os.environ, **kw_env, **logins}
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
