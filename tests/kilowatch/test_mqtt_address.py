"""``kilowatch.mqtt.broker_address``: one reading of KILOWATCH_MQTT_URL for every MQTT client.

The collector, the schedule publisher and the simulator must log in with the
same, percent-decoded, credentials; a small TCP server reads the CONNECT packet
each of them sends.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import socket
import subprocess
import threading

import pytest

from kilowatch.mqtt import BrokerAddress, broker_address
from kilowatch.schedules import delivery as schedule_delivery
from simulator.link import LinkError, MqttLink

USER, PASSWORD = "kw@site", "p@ss:w%rd/x"
ENCODED = "kw%40site:p%40ss%3Aw%25rd%2Fx"


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:51883", BrokerAddress("127.0.0.1", 51883, False, None, None)),
    ("mqtt://broker", BrokerAddress("broker", 1883, False, None, None)),
    ("tcp://broker", BrokerAddress("broker", 1883, False, None, None)),
    ("mqtts://broker", BrokerAddress("broker", 8883, True, None, None)),
    ("ssl://broker:8884", BrokerAddress("broker", 8884, True, None, None)),
    (f"mqtts://{ENCODED}@broker:8883", BrokerAddress("broker", 8883, True, USER, PASSWORD)),
    ("mqtt://device@broker", BrokerAddress("broker", 1883, False, "device", None)),
])
def test_broker_address_reads_the_url(url, expected):
    assert broker_address(url) == expected


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    length = int.from_bytes(data[at:at + 2], "big")
    return data[at + 2:at + 2 + length], at + 2 + length


def credentials(connect: bytes) -> tuple[str | None, str | None]:
    """Return the user name and password of an MQTT 5 CONNECT packet."""
    _length, at = _varint(connect, 1)
    _name, at = _string(connect, at)
    flags = connect[at + 1]
    properties, at = _varint(connect, at + 4)
    at += properties
    _client_id, at = _string(connect, at)
    if flags & 0x04:  # will: properties, topic, payload
        will_properties, at = _varint(connect, at)
        _topic, at = _string(connect, at + will_properties)
        _payload, at = _string(connect, at)
    user = password = None
    if flags & 0x80:
        user, at = _string(connect, at)
    if flags & 0x40:
        password, at = _string(connect, at)
    return (user.decode() if user is not None else None,
            password.decode() if password is not None else None)


@pytest.fixture
def listener():
    """A TCP server that reads each client's CONNECT packet and hangs up; yields (url, packets)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    packets: queue.Queue[bytes] = queue.Queue()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                data = b""
                while True:
                    chunk = connection.recv(4096)
                    data += chunk
                    if not chunk or (len(data) > 2 and len(data) >= _varint(data, 1)[1]
                                     + _varint(data, 1)[0]):
                        break
                packets.put(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"mqtt://{ENCODED}@127.0.0.1:{server.getsockname()[1]}", packets
    stop.set()
    thread.join()
    server.close()


def test_the_schedule_publisher_logs_in_with_the_decoded_credentials(settings, listener):
    url, packets = listener
    confirmed, error = schedule_delivery.publish_retained(
        [("kwtest/x/schedule", "{}")],
        settings=dataclasses.replace(settings, mqtt_publisher_url=url), timeout_s=2)
    assert confirmed == set() and error
    assert credentials(packets.get(timeout=5)) == (USER, PASSWORD)


def test_the_collector_logs_in_with_the_decoded_credentials(kw_env, listener):
    url, packets = listener
    env = {**os.environ, **kw_env, "KILOWATCH_MQTT_URL": url}
    process = subprocess.Popen(["kilowatch", "collector", "--client-id", "kwtest-credentials",
                                "--metrics-port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert credentials(packets.get(timeout=30)) == (USER, PASSWORD)
    finally:
        process.terminate()
        process.wait(30)


def test_the_simulator_logs_in_with_the_decoded_credentials(listener):
    url, packets = listener
    link = MqttLink(url=url, prefix="kwtest", serial="CRED-1", firmware="1.0")
    with pytest.raises(LinkError):
        link.connect(timeout_s=2)
    assert credentials(packets.get(timeout=5)) == (USER, PASSWORD)
