"""Every client gives up in bounded time: Redis commands, PostgreSQL connects, web statements."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest
import redis

from kilowatch import db, redis_client
from kilowatch.settings import load_settings, reset_settings


def outcome_within(call, seconds: float) -> BaseException | None:
    """Run ``call`` in a thread; return what it raised, failing the test if still running."""
    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            raised.append(None)
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert raised, f"still waiting after {seconds} s"
    return raised[0]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_redis_that_never_answers_costs_one_timeout(silent_server):
    settings = load_settings({"KILOWATCH_REDIS_URL": f"redis://127.0.0.1:{silent_server}/0",
                              "KILOWATCH_REDIS_TIMEOUT": "0.5"})
    client = redis_client.get_redis(settings)
    error = outcome_within(lambda: client.get("anything"), 2)  # one timeout, no retries
    assert isinstance(error, redis.TimeoutError)


def test_a_database_that_never_answers_costs_the_connect_timeout(silent_server, monkeypatch):
    monkeypatch.setenv("KILOWATCH_DATABASE_CONNECT_TIMEOUT", "2")
    reset_settings()
    url = f"postgresql://kilowatch@127.0.0.1:{silent_server}/kilowatch"
    try:
        error = outcome_within(lambda: db.connect(url), 5)
    finally:
        reset_settings()
    assert isinstance(error, psycopg.OperationalError)


def test_the_web_pool_bounds_each_statement(settings):
    bounded = dataclasses.replace(settings, web_statement_timeout=1)
    db.close_pools()
    try:
        with db.connection(bounded) as conn, pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(10)")
        with db.connection(bounded) as conn:  # the pool lends a working connection after it
            assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
    finally:
        db.close_pools()
