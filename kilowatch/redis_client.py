"""Own this process's Redis client and the naming of every Redis key."""

from __future__ import annotations

import socket

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from kilowatch.settings import Settings, get_settings

_clients: dict[str, redis.Redis] = {}
# Probe an idle connection after 30 s, every 10 s, and drop it after 3 unanswered probes.
_KEEPALIVE = {name: value for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10),
                                               ("TCP_KEEPCNT", 3)) if hasattr(socket, name)}


def client_options(settings: Settings) -> dict[str, object]:
    """Return the options bounding how long any Redis command of this process may wait."""
    return {"socket_timeout": settings.redis_timeout,
            "socket_connect_timeout": settings.redis_timeout, "socket_keepalive": True,
            "socket_keepalive_options": {getattr(socket, n): v for n, v in _KEEPALIVE.items()},
            "health_check_interval": 30, "retry": Retry(NoBackoff(), 0)}


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """Return this process's Redis client (strings decoded).

    Every command gives up after ``KILOWATCH_REDIS_TIMEOUT`` seconds and is not
    retried, so a hung Redis costs a caller (a web request) one timeout and an
    error, never a stuck thread.
    """
    settings = settings or get_settings()
    client = _clients.get(settings.redis_url)
    if client is None:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                      **client_options(settings))
        _clients[settings.redis_url] = client
    return client


def key(*parts: object, settings: Settings | None = None) -> str:
    """Build a Redis key under the configured prefix: ``key("live", 7)`` → ``kw:live:7``."""
    settings = settings or get_settings()
    return ":".join([settings.redis_prefix, *(str(p) for p in parts)])
