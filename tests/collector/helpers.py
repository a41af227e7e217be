"""Shared helpers of the collector tests: a real collector process, a real publisher."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from kilowatch import db, fleet
from kilowatch.access import system_scope
from tests.conftest import bench_login, wait_for

ROOT = Path(__file__).resolve().parents[2]


def register_fleet(database_url: str, serials: list[str], company: str = "Testco") -> dict:
    """Create a company, a site and one storage device per serial; return serial → id."""
    scope = system_scope()
    with db.connect(database_url, autocommit=True) as conn:
        company_id = fleet.create_company(conn, scope, company)
        site_id = fleet.create_site(conn, scope, company_id=company_id, name=f"{company} site",
                                    timezone="Europe/Paris")
        return {serial: fleet.register_device(conn, scope, site_id=site_id, serial=serial,
                                              model="HES-L")
                for serial in serials}


def heartbeat(conn, client_id: str = "kwtest-collector") -> None:
    """Write a collector heartbeat now: the platform ingests (devices may be judged silent)."""
    conn.execute("INSERT INTO collector_heartbeats (client_id, beat_at) VALUES (%s, now()) "
                 "ON CONFLICT (client_id) DO UPDATE SET beat_at = now()", (client_id,))


def iso(moment: dt.datetime) -> str:
    """Format a time as RFC 3339 UTC with a Z."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def telemetry(seq: int, start: dt.datetime, *, samples: int = 1, points: int = 5,
              step_s: float = 1.0, extra: dict | None = None) -> bytes:
    """Build a telemetry payload: seq, ``samples`` timestamps, ``points`` values each."""
    body = {"seq": seq, "samples": []}
    for n in range(samples):
        values = {f"test.p{p:03d}": round(seq + n * 0.001 + p, 3) for p in range(points)}
        values["test.seq"] = seq
        values.update(extra or {})
        body["samples"].append({"ts": iso(start + dt.timedelta(seconds=n * step_s)),
                                "v": values})
    return json.dumps(body).encode()


class Publisher:
    """A QoS 1 MQTT publisher that waits for the broker's PUBACK of every message."""

    def __init__(self, url: str | None = None, *, client_id: str | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"kwtest-pub-{secrets.token_hex(4)}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.connect(*bench_login(self.client, url), keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                timeout_s: float = 60) -> None:
        """Publish once, retrying until the broker acknowledges it."""
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            try:
                info.wait_for_publish(timeout=max(1.0, deadline - time.monotonic()))
                if info.is_published():
                    return
            except (RuntimeError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker did not acknowledge {topic}")
            time.sleep(0.2)

    def publish_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish many messages pipelined, then wait for every PUBACK."""
        infos = [self.client.publish(t, p, qos=1) for t, p in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


class CollectorProcess:
    """``kilowatch collector`` as a real subprocess with its own client id and metrics port."""

    def __init__(self, env: dict[str, str], *, client_id: str | None = None,
                 extra_args: tuple[str, ...] = (), log_path: Path | None = None) -> None:
        self.env = {**os.environ, **env}
        self.client_id = client_id or f"kwtest-collector-{secrets.token_hex(4)}"
        self.metrics_port = int(env["KILOWATCH_METRICS_PORT"])
        self.extra_args = extra_args
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> CollectorProcess:
        """Start the process and wait until it is connected to the broker."""
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            ["kilowatch", "collector", "--client-id", self.client_id, "--session-expiry", "600",
             *self.extra_args], env=self.env, stdout=self._log, stderr=self._log)
        wait_for(lambda: self.metric("kilowatch_collector_broker_connected") == 1,
                 what="collector connected", timeout_s=30)
        return self

    def metric(self, name: str, labels: str = "") -> float | None:
        """Read one sample from /metrics, or None when unreachable."""
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + labels + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def kill(self) -> None:
        """SIGKILL, no goodbye."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; return the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        return self.process.returncode


@contextlib.contextmanager
def running_collector(env: dict[str, str], **kwargs) -> Iterator[CollectorProcess]:
    """Run a collector for the duration of a ``with`` block."""
    process = CollectorProcess(env, **kwargs).start()
    try:
        yield process
    finally:
        process.stop()


def count_rows(conn, device_ids) -> int:
    """Count raw rows of some devices."""
    return conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = ANY(%s)",
                        (list(device_ids),)).fetchone()["n"]
