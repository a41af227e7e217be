"""Own the PostgreSQL connections: one-off connections and a per-process pool."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from kilowatch.settings import Settings, get_settings

_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a new connection that returns rows as dicts."""
    url = url or get_settings().database_url
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)


def get_pool(settings: Settings | None = None, *, read_only: bool = False) -> ConnectionPool:
    """Return this process's pool for the primary (or read replica) database."""
    settings = settings or get_settings()
    url = settings.database_url
    if read_only and settings.database_read_url:
        url = settings.database_read_url
    with _pools_lock:
        pool = _pools.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=10,
                kwargs={"row_factory": dict_row, "autocommit": True},
                open=True,
                name=f"kilowatch-{len(_pools)}",
            )
            _pools[url] = pool
        return pool


@contextlib.contextmanager
def connection(settings: Settings | None = None, *, read_only: bool = False) -> Iterator[
    psycopg.Connection
]:
    """Lend a pooled autocommit connection; use ``conn.transaction()`` for atomic work."""
    with get_pool(settings, read_only=read_only).connection() as conn:
        yield conn


def close_pools() -> None:
    """Close every pool this process opened (tests and shutdown)."""
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
