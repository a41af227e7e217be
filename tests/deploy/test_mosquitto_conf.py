"""Mosquitto runs deploy/mosquitto/kilowatch.conf: both listeners, the plugin, no anonymity."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from kilowatch.broker.dynsec import Dynsec
from tests.collector.servers import Mosquitto, wait_port
from tests.conftest import CA_FILE
from tests.deploy.units import ROOT

PRODUCTION = ROOT / "deploy" / "mosquitto" / "kilowatch.conf"


@pytest.fixture(scope="module")
def own_broker() -> Iterator[Mosquitto]:
    """A private broker made like the tests' own, then run with the production file."""
    broker = Mosquitto()  # its data directory and security file, with the admin account
    tls = Path(CA_FILE).parent
    text = PRODUCTION.read_text()
    for installed, here in (("/var/lib/mosquitto/kilowatch/", f"{broker.dir}/data/"),
                            ("/etc/mosquitto/certs/ca.pem", CA_FILE),
                            ("/etc/mosquitto/certs/server.pem", str(tls / "server.pem")),
                            ("/etc/mosquitto/certs/server.key", str(broker.dir / "server.key")),
                            ("listener 1883 127.0.0.1", f"listener {broker.port} 127.0.0.1"),
                            ("listener 8883\n", f"listener {broker.tls_port} 127.0.0.1\n")):
        assert installed in text, installed
        text = text.replace(installed, here)
    config = broker.dir / "production.conf"
    config.write_text(text)
    broker.process = subprocess.Popen(["mosquitto", "-c", str(config)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(broker.port)
        wait_port(broker.tls_port)
        yield broker
    finally:
        broker.remove()


def _connect(port: int, *, tls: bool, username: str | None = None) -> mqtt.ReasonCode | None:
    """The broker's CONNACK reason, or None when it sends none within 5 s."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(ca_certs=CA_FILE, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if username:
        client.username_pw_set(username, "wrong")
    answer = []
    client.on_connect = lambda c, u, f, reason, p: answer.append(reason)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        for _ in range(100):
            if answer:
                return answer[0]
            time.sleep(0.05)
        return None
    finally:
        client.disconnect()
        client.loop_stop()


def test_the_admin_manages_accounts_on_the_service_listener(own_broker):
    with Dynsec(own_broker.admin_url) as broker:
        names = {client["username"] for client in broker.list_clients()}
    assert "kilowatch-admin" in names


def test_nobody_gets_in_without_logging_in(own_broker):
    assert _connect(own_broker.port, tls=False).is_failure
    assert _connect(own_broker.tls_port, tls=True, username="nobody").is_failure


def test_the_device_listener_speaks_only_tls(own_broker):
    assert _connect(own_broker.tls_port, tls=False, username="nobody") is None
