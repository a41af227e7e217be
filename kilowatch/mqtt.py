"""Read the broker's address and credentials from ``KILOWATCH_MQTT_URL``, one way for everyone.

``mqtt://user:password@host:1883`` (``mqtts://`` or ``ssl://`` for TLS, default
port 8883; ``tcp://`` as ``mqtt://``). The user and password are percent-decoded,
so a password holding ``@``, ``:`` or ``%`` is written ``%40``, ``%3A``, ``%25``.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

TLS_SCHEMES = ("mqtts", "ssl")


class BrokerAddress(NamedTuple):
    """Where the broker is, whether to use TLS, and the login (None when there is none)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def broker_address(url: str) -> BrokerAddress:
    """Split a broker URL into host, port, TLS flag and percent-decoded user and password."""
    parts = urlsplit(url)
    tls = parts.scheme in TLS_SCHEMES
    return BrokerAddress(
        host=parts.hostname or "localhost",
        port=parts.port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )
