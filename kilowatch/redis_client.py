"""Own this process's Redis client and the naming of every Redis key."""

from __future__ import annotations

import redis

from kilowatch.settings import Settings, get_settings

_clients: dict[str, redis.Redis] = {}


def get_redis(settings: Settings | None = None) -> redis.Redis:
    """Return this process's Redis client (strings decoded)."""
    settings = settings or get_settings()
    client = _clients.get(settings.redis_url)
    if client is None:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                      health_check_interval=30)
        _clients[settings.redis_url] = client
    return client


def key(*parts: object, settings: Settings | None = None) -> str:
    """Build a Redis key under the configured prefix: ``key("live", 7)`` → ``kw:live:7``."""
    settings = settings or get_settings()
    return ":".join([settings.redis_prefix, *(str(p) for p in parts)])
