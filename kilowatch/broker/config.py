"""Mosquitto's configuration for Kilowatch: listeners, TLS, the security plugin, limits.

``scripts/stack`` and the tests' private brokers write it with
``kilowatch broker config``; production takes the same text (docs/devices.md).
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

from kilowatch.errors import UserFacingError
from kilowatch.mqtt import broker_address

PLUGIN_PATHS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/mosquitto_dynamic_security.so")
MAX_PACKET_BYTES = 256 * 1024
# Enough for 10+ minutes of collector downtime at 20,000 messages a minute, yet
# bounded in bytes so offline sessions cannot exhaust the broker's memory.
MAX_QUEUED_MESSAGES = 1_000_000
MAX_QUEUED_BYTES = 512 * 1024 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class BrokerFiles:
    """Where one broker keeps its state and finds its certificate."""

    directory: Path
    cafile: Path
    certfile: Path
    keyfile: Path

    @property
    def security_file(self) -> Path:
        """The dynamic-security plugin's accounts and roles."""
        return self.directory / "dynamic-security.json"


def plugin_path() -> str:
    """Return the installed dynamic-security plugin, or say it is missing."""
    for path in PLUGIN_PATHS:
        if Path(path).is_file():
            return path
    raise UserFacingError("Mosquitto's dynamic-security plugin is not installed "
                          "(Debian's mosquitto package ships mosquitto_dynamic_security.so)")


def render(files: BrokerFiles, *, service_port: int, device_port: int,
           bind: str = "127.0.0.1", user: str | None = None) -> str:
    """Return mosquitto.conf: a service listener and a TLS-only device listener, no anonymity."""
    lines = [
        "# Written by `kilowatch broker config`: every client logs in, devices over TLS.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin_path()}",
        f"plugin_opt_config_file {files.security_file}",
        *([f"user {user}"] if user else []),
        "persistence true",
        f"persistence_location {files.directory}/",
        "autosave_interval 30",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "max_inflight_messages 10000",
        "max_inflight_bytes 0",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "persistent_client_expiration 7d",
        f"log_dest file {files.directory}/mosquitto.log",
        "log_type error",
        "log_type warning",
        "",
        "# Services (collector, schedule publisher, worker): keep it on a private network.",
        f"listener {service_port} {bind}",
        "",
        "# Devices: TLS only.",
        f"listener {device_port} {bind}",
        f"cafile {files.cafile}",
        f"certfile {files.certfile}",
        f"keyfile {files.keyfile}",
        "tls_version tlsv1.2",
        "",
    ]
    return "\n".join(lines)


def init_security(files: BrokerFiles, admin_url: str) -> bool:
    """Create the plugin's file with the admin account of ``admin_url``; False if it exists."""
    if files.security_file.exists():
        return False
    _host, _port, _tls, username, password = broker_address(admin_url)
    if not username or not password:
        raise UserFacingError("KILOWATCH_MQTT_ADMIN_URL needs a user and a password")
    result = subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(files.security_file), username, password],
        capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserFacingError(f"mosquitto_ctrl dynsec init failed: {result.stderr.strip()}")
    return True
