"""Read Kilowatch's settings once from ``KILOWATCH_*`` environment variables.

Defaults point at the project-local servers started by ``scripts/stack up``,
so nothing needs configuring in development.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from kilowatch.errors import UserFacingError

PREFIX = "KILOWATCH_"
# Public, so anyone can sign cookies with it: fine for tests and --dev, refused by `kilowatch web`.
DEFAULT_SECRET_KEY = "dev-only-secret-change-me"  # noqa: S105


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


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("expected a positive whole number")
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


def _key_prefix(raw: str) -> str:
    if not raw or " " in raw:
        raise ValueError("expected a non-empty key prefix without spaces")
    return raw


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Every tunable of the platform, with working local defaults."""

    database_url: str = "postgresql://kilowatch@127.0.0.1:55432/kilowatch"
    database_read_url: str | None = None
    mqtt_url: str = "mqtt://127.0.0.1:51883"
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
    max_points_per_device: int = 5000
    metrics_port: int = 9108
    log_level: str = "INFO"
    secure_cookies: bool = False
    notify_max_per_hour: int = 10
    comm_lost_recheck: int = 60
    worker_statement_timeout: int = 300


_PARSERS: dict[str, Callable[[str], Any]] = {
    "database_url": _url("postgresql", "postgres"),
    "database_read_url": _optional_url("postgresql", "postgres"),
    "mqtt_url": _url("mqtt", "mqtts", "tcp", "ssl"),
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
    "max_points_per_device": _positive_int,
    "metrics_port": _positive_int,
    "log_level": _log_level,
    "secure_cookies": _bool,
    "notify_max_per_hour": _positive_int,
    "comm_lost_recheck": _positive_int,
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
