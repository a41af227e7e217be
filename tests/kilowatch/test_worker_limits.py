"""A worker's statements are bounded in time and cancelled when the worker stops."""

from __future__ import annotations

import dataclasses
import time

from kilowatch import worker
from kilowatch.jobs import Job
from tests.collector.helpers import wait_for


def _sleeping(conn, settings):
    conn.execute("SELECT pg_sleep(60) /* worker limits test */")


def _running(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE '%%worker limits test%%' AND pid <> pg_backend_pid()"
                        ).fetchone()["n"]


def test_a_statement_longer_than_the_timeout_is_cancelled(settings):
    started = time.monotonic()
    outcome = worker.run_once(Job("sleepy", 60, _sleeping),
                              dataclasses.replace(settings, worker_statement_timeout=1))
    assert outcome.status == "failed" and "statement timeout" in outcome.result
    assert time.monotonic() - started < 10


def test_stopping_the_worker_cancels_what_its_jobs_run(settings, conn):
    service = worker.Worker(settings, [Job("sleepy", 60, _sleeping)])
    service.start()
    wait_for(lambda: _running(conn) == 1, what="the job's statement running", timeout_s=30)
    started = time.monotonic()
    service.stop(timeout_s=20)
    assert time.monotonic() - started < 5
    assert not any(t.is_alive() for t in service.threads)
    assert _running(conn) == 0
