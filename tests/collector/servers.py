"""Throwaway Mosquitto and PostgreSQL servers that a test may restart at will.

The shared stack's servers are used by everyone at once and are never restarted
by tests; restart tests start their own on free ports instead.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from kilowatch import db, migrations
from kilowatch.broker import config
from kilowatch.settings import DEV_MQTT_PASSWORD
from tests.conftest import CA_FILE, broker_accounts

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout_s: float = 30) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def _chown(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for child in path.rglob("*"):
        shutil.chown(child, user, user)


class Mosquitto:
    """A private, persistent, locked-down Mosquitto; ``restart`` stops it gracefully.

    Configured by :mod:`kilowatch.broker.config` like the stack's broker (no anonymous
    client, devices over TLS with the stack's certificate); :meth:`logins` creates a
    test module's accounts on it.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kw-mosquitto-", dir="/tmp"))
        self.port = free_port()
        self.tls_port = free_port()
        self.admin_url = f"mqtt://kilowatch-admin:{DEV_MQTT_PASSWORD}@127.0.0.1:{self.port}"
        tls = Path(CA_FILE).parent
        (self.dir / "data").mkdir()
        shutil.copy(tls / "server.key", self.dir / "server.key")
        files = config.BrokerFiles(directory=self.dir / "data", cafile=Path(CA_FILE),
                                   certfile=tls / "server.pem", keyfile=self.dir / "server.key")
        self.files = files
        config.init_security(files, self.admin_url)
        (self.dir / "mosquitto.conf").write_text(config.render(
            files, service_port=self.port, device_port=self.tls_port, user="mosquitto"))
        _chown(self.dir, "mosquitto")
        self.process: subprocess.Popen | None = None

    def logins(self, prefix: str) -> dict[str, str]:
        """Create collector, publisher and bench accounts for ``prefix``; return their env."""
        return broker_accounts(secrets.token_hex(4), prefix, port=self.port,
                               admin_url=self.admin_url)

    def start(self) -> Mosquitto:
        """Start the broker and wait for its port."""
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: the broker saves its sessions and queues)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def restart(self, down_s: float = 1.0) -> None:
        """Stop, stay down a moment, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        """Stop and delete everything."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """A private PostgreSQL 15 + TimescaleDB cluster with the migrated schema."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kw-postgres-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://kilowatch@127.0.0.1:{self.port}/kilowatch"
        _chown(self.dir, "postgres")

    def _pg(self, *args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def create(self) -> Postgres:
        """initdb, start, create the database and apply every migration."""
        self._pg(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "kilowatch",
                 "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.dir}'\n"
                       "shared_preload_libraries = 'timescaledb'\n"
                       "timescaledb.telemetry_level = off\nfsync = off\n"
                       "max_connections = 50\ntimezone = 'UTC'\n")
        self.start()
        with psycopg.connect(f"postgresql://kilowatch@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as admin:
            admin.execute("CREATE DATABASE kilowatch")
        with db.connect(self.url, autocommit=True) as conn:
            migrations.upgrade(conn)
        return self

    def start(self) -> None:
        """Start the cluster and wait until it accepts connections."""
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "pg.log"),
                 "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster (``fast`` disconnects clients; ``immediate`` is a crash)."""
        self._pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_s: float = 2.0) -> None:
        """Stop, stay down a moment, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def remove(self) -> None:
        """Stop (if running) and delete the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A private Redis without persistence; ``pause`` hangs it (SIGSTOP) until ``resume``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> Redis:
        """Start the server and wait for its port."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def pause(self) -> None:
        """Hang the server: it keeps its connections but answers nothing."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server answer again."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL (a crash; the data is gone, as nothing is persisted)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)

    remove = kill
