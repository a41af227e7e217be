"""Concurrency slots in Redis: at most N holders of a named slot at once, across processes.

A slot is a sorted set of holder tokens scored by when they took it; a holder
that never gives its token back (a worker killed mid-request) stops counting
after ``stale_after_s``, so a crash never locks anyone out for good.
"""

from __future__ import annotations

import secrets
import time

from kilowatch.redis_client import get_redis, key
from kilowatch.settings import Settings


def take(settings: Settings, name: str, *, limit: int, stale_after_s: int) -> str | None:
    """Take one of ``limit`` places of slot ``name``; return its token, or None if all are taken."""
    slot = key("slot", name, settings=settings)
    token = secrets.token_hex(8)
    now = time.time()
    with get_redis(settings).pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(slot, "-inf", now - stale_after_s)
        pipe.zadd(slot, {token: now})
        pipe.zcard(slot)
        pipe.expire(slot, stale_after_s)
        holders = pipe.execute()[2]
    if holders > limit:
        give_back(settings, name, token)
        return None
    return token


def give_back(settings: Settings, name: str, token: str) -> None:
    """Give back the place that :func:`take` returned ``token`` for."""
    get_redis(settings).zrem(key("slot", name, settings=settings), token)
