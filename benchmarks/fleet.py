"""Devices for the benchmarks, as the platform meets them: registered, activated, on TLS.

Registers one storage device per site with its one-time code, serves ``kilowatch
web`` over HTTPS (the local stack's certificate) with a worker that pushes new
accounts to the broker, activates every device over HTTPS, and connects each one
with its own credentials to the broker's TLS listener.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import paho.mqtt.client as mqtt

from kilowatch import db
from kilowatch.access import system_scope
from kilowatch.broker import rules, sync
from kilowatch.broker.dynsec import Dynsec
from kilowatch.devices import lifecycle
from kilowatch.mqtt import BrokerUnavailable, broker_address, connect
from kilowatch.settings import load_settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DeviceFleet:
    """Register, activate over HTTPS and connect over TLS one device per site."""

    def __init__(self, env: dict[str, str], sites: list[int], root: Path) -> None:
        self.sites = sites
        self.root = root
        self.prefix = env["KILOWATCH_MQTT_PREFIX"]
        defaults = load_settings({})
        self.ca_file = os.environ.get("KILOWATCH_MQTT_CA_FILE") or defaults.mqtt_ca_file
        host, port, _tls, _user, _password = broker_address(
            os.environ.get("KILOWATCH_MQTT_ADMIN_URL", defaults.mqtt_admin_url))
        self.token = secrets.token_hex(4)
        password = secrets.token_urlsafe(18)
        env.update({
            "KILOWATCH_MQTT_URL": f"mqtt://kwbench-{self.token}-collector:{password}@"
                                  f"{host}:{port}",
            "KILOWATCH_MQTT_PUBLISHER_URL": f"mqtt://kwbench-{self.token}-publisher:{password}@"
                                            f"{host}:{port}",
            "KILOWATCH_DEVICE_KEY": secrets.token_hex(32),
            "KILOWATCH_SECRET_KEY": secrets.token_hex(32),
        })
        self.env = env
        self.settings = load_settings({**os.environ, **env})
        sync.reconcile(self.settings)  # the collector's and publisher's accounts
        self.processes: list[subprocess.Popen] = []
        self.clients: dict[int, mqtt.Client] = {}
        self.timing: dict[str, float] = {}

    def activate(self) -> dict[str, int]:
        """Register and activate every device; return serial → device id."""
        codes, ids = self._register()
        url = self._serve()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = dict(zip(codes, pool.map(lambda s: self._activate(url, s, codes[s]),
                                               codes), strict=True))
        self.timing["answered"] = time.perf_counter() - started
        with ThreadPoolExecutor(max_workers=8) as pool:
            connected = list(pool.map(lambda s: (ids[s], self._connect(s, answers[s])), codes))
        self.clients = dict(connected)
        self.timing["accepted"] = time.perf_counter() - started
        return ids

    def _register(self) -> tuple[dict[str, str], dict[str, int]]:
        scope = system_scope("benchmark")
        codes, ids = {}, {}
        with db.connect(self.settings.database_url, autocommit=True) as conn:
            for n, site in enumerate(self.sites):
                serial = f"BENCH-{self.token}-{n:04d}"
                ids[serial], codes[serial] = lifecycle.register(
                    conn, scope, site_id=site, serial=serial, model="HES-XL")
        return codes, ids

    def _serve(self) -> str:
        port = _free_port()
        tls = Path(self.ca_file).parent
        environment = {**os.environ, **self.env}
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "kilowatch", "web", "--port", str(port), "--workers", "2",
             "--certfile", str(tls / "server.pem"), "--keyfile", str(tls / "server.key")],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.root))
        self.processes.append(subprocess.Popen(
            [sys.executable, "-m", "kilowatch", "worker", "--job", "broker-devices"],
            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.root))
        url = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=self.ca_file)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2, context=context):  # noqa: S310
                    return url
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("kilowatch web did not start") from None
                time.sleep(0.3)

    def _activate(self, url: str, serial: str, code: str) -> dict:
        body = json.dumps({"serial": serial, "activation_code": code}).encode()
        request = urllib.request.Request(f"{url}/api/device/activate", data=body,  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(request, timeout=30, context=context) as answer:  # noqa: S310
            return json.loads(answer.read())

    def _connect(self, serial: str, answer: dict, patience_s: float = 30) -> mqtt.Client:
        login = answer["mqtt"]
        scheme, rest = login["url"].split("://", 1)
        url = f"{scheme}://{quote(login['username'])}:{quote(login['password'])}@{rest}"
        ca_file = self._ca_copy(answer["ca_certificate"])
        deadline = time.monotonic() + patience_s
        while True:  # the worker creates the account within a second or two
            try:
                client = connect(url, client_id=serial, ca_file=ca_file, max_inflight=1000)
            except BrokerUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            return client

    def _ca_copy(self, pem: str) -> str:
        path = Path(tempfile.gettempdir()) / f"kwbench-{self.token}-ca.pem"
        if not path.exists():
            path.write_text(pem)
        return str(path)

    def connect(self) -> dict[int, mqtt.Client]:
        """Return each device's connected client, by device id."""
        return self.clients

    def report(self) -> str:
        """Return the activation figures."""
        return (f"activated {len(self.clients)} devices over HTTPS: answers in "
                f"{self.timing['answered']:.2f} s, all let in by the broker (TLS) after "
                f"{self.timing['accepted']:.2f} s")

    def disconnect(self) -> None:
        """Disconnect every device."""
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()

    def stop(self) -> None:
        """Stop the web app and worker, delete the run's broker accounts and roles."""
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        with Dynsec(self.settings.mqtt_admin_url) as broker:
            clients, roles = broker.list_clients(), broker.list_roles()
            broker.run([{"command": "deleteClient", "username": c["username"]} for c in clients
                        if c.get("textname") == rules.tag(self.prefix)]
                       + [{"command": "deleteRole", "rolename": r["rolename"]} for r in roles
                          if self.prefix in r["rolename"]],
                       ok_errors=("Client not found", "Role not found"))
