"""Own the PostgreSQL connections: one-off connections and a per-process pool.

Every connection gives up connecting after ``KILOWATCH_DATABASE_CONNECT_TIMEOUT``
seconds and probes an idle link with TCP keepalives, so a server that vanished
is noticed. The pool (the web app's) also bounds each statement
(``KILOWATCH_WEB_STATEMENT_TIMEOUT``), checks a connection before lending it, and
makes a request wait at most ``KILOWATCH_DATABASE_POOL_TIMEOUT`` seconds for one:
with the database down a request fails fast (``psycopg_pool.PoolTimeout``) and
the pool reconnects by itself once the database is back.
"""

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


def link_options(settings: Settings) -> dict[str, object]:
    """Return the libpq options bounding how long a connection waits on a dead server."""
    return {"connect_timeout": settings.database_connect_timeout, "keepalives": 1,
            "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a new connection that returns rows as dicts."""
    settings = get_settings()
    url = url or settings.database_url
    # Options spelled out in the URL win over these defaults.
    options = {k: v for k, v in link_options(settings).items() if f"{k}=" not in url}
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, **options)


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
                kwargs={"row_factory": dict_row, "autocommit": True,
                        **link_options(settings),
                        "options": f"-c statement_timeout={settings.web_statement_timeout}s"},
                check=ConnectionPool.check_connection,
                timeout=settings.database_pool_timeout,
                # Give up a background reconnection soon: a request grows the pool afresh.
                reconnect_timeout=10.0,
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
