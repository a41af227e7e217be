"""Read a broker URL and log in to it, one way for everyone.

``mqtt://user:password@host:1883`` (``mqtts://`` or ``ssl://`` for TLS, default
port 8883; ``tcp://`` as ``mqtt://``). The user and password are percent-decoded,
so a password holding ``@``, ``:`` or ``%`` is written ``%40``, ``%3A``, ``%25``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from kilowatch.errors import UserFacingError

TLS_SCHEMES = ("mqtts", "ssl")


def surviving(callback: Callable[..., Any], logger: logging.Logger) -> Callable[..., Any]:
    """Wrap a paho callback so that an exception in it is logged and the client carries on.

    paho runs callbacks on its network thread and lets their exceptions end that
    thread, silently: the client would stop reading, answering pings and reconnecting.
    """
    name = getattr(callback, "__name__", repr(callback))

    @functools.wraps(callback)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception:
            logger.exception("MQTT callback %s failed; the client carries on", name)
            return None

    return guarded


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


class BrokerUnavailable(UserFacingError):
    """The broker could not be reached, or refused the login."""


def connect(url: str, *, client_id: str, ca_file: str | None = None,
            timeout_s: float = 10.0, max_inflight: int = 20) -> mqtt.Client:
    """Return an MQTT v5 client logged in to ``url`` with its network loop running.

    Waits for the broker's CONNACK; raises BrokerUnavailable with the broker's
    reason (e.g. "Not authorized") or the network error. ``ca_file`` is the CA
    that signed the broker's certificate (for ``mqtts://`` URLs); without it the
    system's trust store is used.
    """
    host, port, tls, username, password = broker_address(url)
    where = f"the MQTT broker at {host}:{port}"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    if username:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set(ca_certs=ca_file)
    client.max_inflight_messages_set(max_inflight)
    client.connect_timeout = timeout_s
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(_client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            refusal.append(str(reason_code))
        answered.set()

    client.on_connect = surviving(on_connect, logging.getLogger(__name__))
    try:
        client.connect(host, port, keepalive=30)
    except (OSError, ValueError) as error:
        raise BrokerUnavailable(f"cannot reach {where}: {error}") from None
    client.loop_start()
    if not answered.wait(timeout_s) or refusal:
        client.disconnect()
        client.loop_stop()
        reason = refusal[0] if refusal else f"no answer within {timeout_s:g} s"
        raise BrokerUnavailable(f"{where} refused the connection: {reason}")
    return client
