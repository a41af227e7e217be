"""Helpers of the broker tests: activated devices and raw MQTT v5 clients that record answers."""

from __future__ import annotations

import secrets
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.broker import sync
from kilowatch.devices import lifecycle
from tests.conftest import CA_FILE, MQTT_PORT, MQTT_TLS_PORT

ROOT = system_scope("test")


def make_site(conn, name: str | None = None) -> int:
    """Create a company with one site; return the site id."""
    name = name or f"Lockco {secrets.token_hex(3)}"
    company = fleet.create_company(conn, ROOT, name)
    return fleet.create_site(conn, ROOT, company_id=company, name=f"{name} site",
                             timezone="Europe/Paris")


def activated_device(conn, settings, site_id: int, serial: str) -> str:
    """Register and activate a device, push it to the broker; return its MQTT password."""
    _, code = lifecycle.register(conn, ROOT, site_id=site_id, serial=serial, model="HES-L",
                                 rated_power_kw=50, capacity_kwh=100)
    activation = lifecycle.activate(conn, settings, serial=serial, code=code, firmware="1.0")
    sync.apply_pending(conn, settings)
    return activation.password


class Device:
    """An MQTT v5 client that records the broker's answers (CONNACK, SUBACK, PUBACK)."""

    def __init__(self, username: str | None, password: str | None, *,
                 client_id: str | None = None, tls: bool = True, port: int | None = None,
                 keep_trying: bool = False) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or username or f"anon-{secrets.token_hex(3)}",
                                  protocol=mqtt.MQTTv5, reconnect_on_failure=keep_trying)
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=CA_FILE, cert_reqs=ssl.CERT_REQUIRED)
        self.port = port or (MQTT_TLS_PORT if tls else MQTT_PORT)
        self.connack: list[str] = []
        self.disconnects: list[tuple[float, str]] = []
        self.subacks: list[list[str]] = []
        self.pubacks: dict[int, str] = {}
        self.received: list[tuple[str, bytes]] = []
        self.answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.subacks.append(
            [str(code) for code in codes])
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda _c, _u, m: self.received.append((m.topic, m.payload))

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connack.append(str(reason_code))
        self.answered.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.disconnects.append((time.monotonic(), str(reason_code)))
        self.answered.set()

    def _on_publish(self, _client, _userdata, mid, reason_code, _properties) -> None:
        self.pubacks[mid] = str(reason_code)

    def connect(self, timeout_s: float = 10) -> Device:
        """Connect and wait for the broker's answer (or the connection's end)."""
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as error:
            self.disconnects.append((time.monotonic(), f"refused: {error}"))
            return self
        self.client.loop_start()
        self.answered.wait(timeout_s)
        return self

    @property
    def accepted(self) -> bool:
        """True when the broker answered CONNACK Success."""
        return self.connack[:1] == ["Success"]

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                timeout_s: float = 10) -> str:
        """Publish with QoS 1 and return the PUBACK's reason (or the disconnection)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        deadline = time.monotonic() + timeout_s
        while info.mid not in self.pubacks and time.monotonic() < deadline:
            if self.disconnects and self.disconnects[-1][0] > deadline - timeout_s:
                return f"disconnected: {self.disconnects[-1][1]}"
            time.sleep(0.02)
        return self.pubacks.get(info.mid, "no answer")

    def subscribe(self, topic: str, timeout_s: float = 10) -> list[str]:
        """Subscribe with QoS 1 and return the SUBACK's reasons."""
        count = len(self.subacks)
        self.client.subscribe(topic, qos=1)
        deadline = time.monotonic() + timeout_s
        while len(self.subacks) == count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.subacks[-1] if len(self.subacks) > count else ["no answer"]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
