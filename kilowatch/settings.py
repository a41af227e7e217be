"""Read Kilowatch's settings once from ``KILOWATCH_*`` environment variables.

Defaults point at the project-local servers started by ``scripts/stack up``,
so nothing needs configuring in development.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kilowatch.errors import UserFacingError

PREFIX = "KILOWATCH_"
# Public, so anyone can sign cookies with it: fine for tests and --dev, refused by `kilowatch web`.
DEFAULT_SECRET_KEY = "dev-only-secret-change-me"  # noqa: S105
# The local stack's broker accounts (loopback only) and device-password key: public too,
# so `kilowatch web`, `collector` and `worker` refuse them outside --dev and loopback.
DEV_MQTT_PASSWORD = "dev-only-mqtt-password"  # noqa: S105
DEV_DEVICE_KEY = "dev-only-device-key-change-me"
DEV_CA_FILE = str(Path(__file__).resolve().parent.parent / ".stack" / "tls" / "ca.pem")


class SettingsError(UserFacingError, ValueError):
    """A setting has a value the program cannot use."""


def redact_url(url: str) -> str:
    """Return ``url`` with the password of its ``user:password@`` part replaced by ``***``.

    For logs and messages. Works on malformed values too: everything between the
    first ``:`` after ``scheme://`` (if any) and the last ``@`` is hidden.
    """
    scheme, separator, rest = url.rpartition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{host}"


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {'/'.join(schemes)} URL with a host")
        return raw

    return parse


def _optional_url(*schemes: str) -> Callable[[str], str | None]:
    parse = _url(*schemes)
    return lambda raw: parse(raw) if raw else None


def _optional_file(raw: str) -> str | None:
    if not raw:
        return None
    if not Path(raw).is_file():
        raise ValueError("no such file")
    return raw


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a positive whole number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value < 0:
        raise ValueError("expected a number of at least 0")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _topic_prefix(raw: str) -> str:
    if not raw or any(c in raw for c in "+#") or raw.startswith("/") or raw.endswith("/"):
        raise ValueError("expected a topic prefix without wildcards or leading/trailing '/'")
    return raw


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


def _secret_key(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("expected at least 16 characters, e.g. from "
                         "`python -c 'import secrets; print(secrets.token_hex(32))'`")
    return raw


def _share_group(raw: str) -> str | None:
    if raw and any(c in raw for c in "+#/"):
        raise ValueError("expected a group name without '/', '+' or '#'")
    return raw or None


def _email(raw: str) -> str:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", raw) or len(raw) > 254:
        raise ValueError("expected an e-mail address like support@example.com")
    return raw


def _phone(raw: str) -> str:
    if raw and (not re.fullmatch(r"\+?[0-9 ().-]{6,30}", raw)
                or not 6 <= sum(c.isdigit() for c in raw) <= 20):
        raise ValueError("expected a phone number like +33 1 23 45 67 89, or nothing")
    return raw


def _text(raw: str) -> str:
    if not raw.strip() or len(raw) > 2000:
        raise ValueError("expected some text, at most 2,000 characters")
    return raw.strip()


def _key_prefix(raw: str) -> str:
    if not raw or " " in raw:
        raise ValueError("expected a non-empty key prefix without spaces")
    return raw


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Every tunable of the platform, with working local defaults."""

    database_url: str = "postgresql://kilowatch@127.0.0.1:55432/kilowatch"
    database_read_url: str | None = None
    # The collector's login; the schedule publisher's; the broker admin's (worker, CLI).
    mqtt_url: str = f"mqtt://kilowatch-collector:{DEV_MQTT_PASSWORD}@127.0.0.1:51883"
    mqtt_publisher_url: str = f"mqtt://kilowatch-publisher:{DEV_MQTT_PASSWORD}@127.0.0.1:51883"
    mqtt_admin_url: str = f"mqtt://kilowatch-admin:{DEV_MQTT_PASSWORD}@127.0.0.1:51883"
    # What activated devices are told: the TLS listener, and the CA that signed it.
    mqtt_device_url: str = "mqtts://127.0.0.1:58883"
    mqtt_ca_file: str | None = DEV_CA_FILE
    device_key: str = DEV_DEVICE_KEY
    # A test bench's login for every simulated device, instead of activating each one.
    simulator_mqtt_url: str | None = None
    mqtt_prefix: str = "ess"
    mqtt_share_group: str | None = None
    redis_url: str = "redis://127.0.0.1:56379/0"
    redis_prefix: str = "kw"
    secret_key: str = DEFAULT_SECRET_KEY
    smtp_url: str = "smtp://127.0.0.1:8025"
    mail_from: str = "Kilowatch <noreply@kilowatch.local>"
    base_url: str = "http://127.0.0.1:8050"
    raw_retention_days: int = 31
    minute_retention_days: int = 400
    offline_after: int = 300
    session_idle_timeout: int = 1800
    session_absolute_timeout: int = 43200
    schedule_pending_alarm_after: int = 900
    # What a kWh through the battery costs in wear (tariff currency), weighed by the optimiser.
    dispatch_wear_cost: float = 0.0
    forecast_retention_days: int = 90
    max_points_per_device: int = 5000
    metrics_port: int = 9108
    log_level: str = "INFO"
    secure_cookies: bool = False
    notify_max_per_hour: int = 10
    comm_lost_recheck: int = 60
    # Printed in commissioning reports: how a customer reaches support.
    support_email: str = "support@kilowatch.local"
    support_phone: str = ""
    support_procedure: str = (
        "Write to support with the site name, the device serial and what you observed; "
        "call for a device offline or in fault. Support answers within one business day.")
    worker_statement_timeout: int = 300


_PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": _url("postgresql", "postgres"),
    "database_read_url": _optional_url("postgresql", "postgres"),
    "mqtt_url": _url("mqtt", "mqtts", "tcp", "ssl"),
    "mqtt_publisher_url": _url("mqtt", "mqtts", "tcp", "ssl"),
    "mqtt_admin_url": _url("mqtt", "mqtts", "tcp", "ssl"),
    "mqtt_device_url": _url("mqtts", "ssl"),
    "mqtt_ca_file": _optional_file,
    "device_key": _secret_key,
    "simulator_mqtt_url": _optional_url("mqtt", "mqtts", "tcp", "ssl"),
    "mqtt_prefix": _topic_prefix,
    "mqtt_share_group": _share_group,
    "redis_url": _url("redis", "rediss", "unix"),
    "redis_prefix": _key_prefix,
    "secret_key": _secret_key,
    "smtp_url": _url("smtp", "smtps"),
    "mail_from": str,
    "base_url": _url("http", "https"),
    "raw_retention_days": _positive_int,
    "minute_retention_days": _positive_int,
    "offline_after": _positive_int,
    "session_idle_timeout": _positive_int,
    "session_absolute_timeout": _positive_int,
    "schedule_pending_alarm_after": _positive_int,
    "dispatch_wear_cost": _non_negative_float,
    "forecast_retention_days": _positive_int,
    "max_points_per_device": _positive_int,
    "metrics_port": _positive_int,
    "log_level": _log_level,
    "secure_cookies": _bool,
    "notify_max_per_hour": _positive_int,
    "comm_lost_recheck": _positive_int,
    "support_email": _email,
    "support_phone": _phone,
    "support_procedure": _text,
    "worker_statement_timeout": _positive_int,
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment; raise SettingsError naming a bad variable."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        name = PREFIX + field.name.upper()
        if name not in environ:
            continue
        try:
            values[field.name] = _PARSERS[field.name](environ[name])
        except ValueError as error:
            raise SettingsError(f"{name}={redact_url(environ[name])!r} is not valid: "
                                f"{error}") from None
    return Settings(**values)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def public_secrets_in_use(settings: Settings) -> list[str]:
    """Name the variables still holding a public development value, if served beyond loopback.

    The development values are fine while the platform and its broker are on this
    machine only (the local stack listens on 127.0.0.1); anywhere else anyone could
    sign sessions, derive device passwords or log in as the collector.
    """
    hosts = {urlsplit(url).hostname for url in (settings.base_url, settings.mqtt_url,
                                                  settings.mqtt_device_url)}
    if hosts <= set(LOOPBACK_HOSTS):
        return []
    names = []
    if settings.device_key == DEV_DEVICE_KEY:
        names.append("KILOWATCH_DEVICE_KEY")
    for name in ("mqtt_url", "mqtt_publisher_url", "mqtt_admin_url"):
        if urlsplit(getattr(settings, name)).password == DEV_MQTT_PASSWORD:
            names.append(PREFIX + name.upper())
    return names


def refuse_public_secrets(settings: Settings) -> None:
    """Raise SettingsError when a public development value would face the network."""
    names = public_secrets_in_use(settings)
    if names:
        raise SettingsError(f"{', '.join(names)} still hold the public development values "
                            "while Kilowatch is served beyond this machine; set long random "
                            "secrets (e.g. `openssl rand -hex 32`)")


_current: Settings | None = None


def get_settings() -> Settings:
    """Return the process's settings, reading the environment on first use."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def reset_settings() -> None:
    """Forget the cached settings so the next call re-reads the environment (tests)."""
    global _current
    _current = None
