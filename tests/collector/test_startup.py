"""The collector's start-up failures are one clear line; an absent broker is waited for."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.collector.helpers import running_collector
from tests.collector.servers import free_port


def _outward_address() -> str | None:
    """Return an address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def _listening_address(port: int) -> str:
    """Return the IPv4 address a socket of this machine listens on at ``port`` (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, hex_port = fields[1].split(":")
        if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    raise AssertionError(f"nothing listens on port {port}")


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("listen", [None, "0.0.0.0"])  # noqa: S104 - opened on purpose
def test_metrics_listen_on_loopback_unless_told_otherwise(kw_env, listen):
    env = {**kw_env, "KILOWATCH_METRICS_PORT": str(free_port())}
    if listen:
        env["KILOWATCH_METRICS_HOST"] = listen
    with running_collector(env) as collector:
        assert _answers("127.0.0.1", collector.metrics_port)
        # The bound address says it on every machine; a request from outside shows it too
        # where the machine has another address.
        assert _listening_address(collector.metrics_port) == (listen or "127.0.0.1")
        outward = _outward_address()
        if outward is not None:
            assert _answers(outward, collector.metrics_port) is (listen is not None)


def test_metrics_port_in_use_is_a_one_line_error(kw_env):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(["kilowatch", "collector", "--client-id", "kwtest-busy",
                                 "--metrics-port", str(port)],
                                env={**os.environ, **kw_env}, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode != 0
    assert f"Error: cannot serve /metrics on 127.0.0.1 port {port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_broker_is_retried_without_crashing(kw_env, tmp_path):
    env = {**os.environ, **kw_env,
           "KILOWATCH_MQTT_URL": f"mqtt://collector:s3cret@127.0.0.1:{free_port()}"}
    log_path = tmp_path / "collector.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["kilowatch", "collector", "--client-id", "kwtest-nobroker"],
                                   env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while "cannot reach the broker" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert process.poll() is None
        assert "s3cret" not in log_path.read_text()  # the broker's password is not logged
        assert "mqtt://collector:***@127.0.0.1:" in log_path.read_text()
    finally:
        process.terminate()
        assert process.wait(30) == 0
    assert "Traceback" not in log_path.read_text()


def test_bad_option_is_a_usage_error(kw_env):
    result = subprocess.run(["kilowatch", "collector", "--receive-maximum", "0"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "receive-maximum" in result.stderr
