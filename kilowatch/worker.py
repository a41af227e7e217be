"""Run the background jobs of ``kilowatch.jobs``: each on its interval in its own thread.

While a job runs, its thread holds a PostgreSQL advisory lock keyed by the job
name (``pg_try_advisory_lock``), so two workers never run the same job at once;
a worker that finds the lock taken skips that turn. Under the lock it also
claims the turn in ``job_runs`` (when the job last started, by any worker): a
turn that comes less than one interval after the last start is skipped, and
that worker comes back when the job is due, so with any number of workers each
job runs once per interval, never twice. A failing job is logged and
retried on its next turn; when the database is unreachable the thread backs off
(up to a minute) and carries on once it is back.

No statement of a job runs longer than ``KILOWATCH_WORKER_STATEMENT_TIMEOUT``
seconds, the server drops a statement whose worker has gone (it checks the
client every few seconds), and :meth:`Worker.stop` cancels the statements its
jobs are running, so nothing keeps working in PostgreSQL after the worker stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import psycopg

from kilowatch import db
from kilowatch.jobs import Job, discover
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

JOB_LOCK_CLASS = 7_120_400  # first key of every job's advisory lock
_MAX_BACKOFF_S = 60.0
CLIENT_CHECK = "5s"  # how often the server checks that a running statement's client is there


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one turn of a job went: ``ran``, ``skipped`` (locked elsewhere) or ``failed``."""

    job: str
    status: str
    result: object = None
    seconds: float = 0.0


def select_jobs(names: tuple[str, ...] = ()) -> list[Job]:
    """Return the discovered jobs, or only those named; raise KeyError for an unknown name."""
    jobs = discover()
    if not names:
        return jobs
    by_name = {job.name: job for job in jobs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"unknown job {', '.join(unknown)} (known: {', '.join(by_name)})")
    return [by_name[n] for n in names]


def _limit(conn: psycopg.Connection, settings: Settings) -> None:
    """Bound every statement of this connection in time, and drop it if the client dies."""
    conn.execute("SELECT set_config('statement_timeout', %s, false), "
                 "set_config('client_connection_check_interval', %s, false)",
                 (f"{settings.worker_statement_timeout}s", CLIENT_CHECK))


def _claim_turn(conn: psycopg.Connection, job: Job) -> float:
    """Record that the job starts now if it is due; else return the seconds until it is."""
    claimed = conn.execute(
        """INSERT INTO job_runs AS r (job, started_at) VALUES (%(job)s, now())
           ON CONFLICT (job) DO UPDATE SET started_at = now()
           WHERE r.started_at <= now() - make_interval(secs => %(interval)s)
           RETURNING started_at""", {"job": job.name, "interval": job.interval_s}).fetchone()
    if claimed:
        return 0.0
    row = conn.execute("SELECT extract(epoch FROM started_at - now())::float8 + %s AS wait "
                       "FROM job_runs WHERE job = %s", (job.interval_s, job.name)).fetchone()
    return max(row["wait"], 0.0) if row else 0.0


def run_once(job: Job, settings: Settings, *,
             active: Callable[[psycopg.Connection | None], None] | None = None,
             on_schedule: bool = False) -> Outcome:
    """Run one turn of a job under its advisory lock; never raises.

    ``active`` is told the job's connection while it runs (and None after), so
    that a stopping worker can cancel what it is doing. ``on_schedule`` skips the
    turn when any worker started the job less than an interval ago (the outcome's
    result is then the seconds until it is due).
    """
    started = time.monotonic()
    try:
        with db.connect(settings.database_url, autocommit=True) as conn:
            _limit(conn, settings)
            if active:
                active(conn)
            locked = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok",
                                  (JOB_LOCK_CLASS, job.name)).fetchone()["ok"]
            if not locked:
                log.info("job %s skipped: another worker is running it", job.name)
                return Outcome(job.name, "skipped")
            try:
                due_in = _claim_turn(conn, job) if on_schedule else 0.0
                if due_in > 0:
                    log.debug("job %s skipped: due in %.1f s", job.name, due_in)
                    return Outcome(job.name, "skipped", due_in)
                result = job.run(conn, settings)
            finally:
                if not conn.closed and not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                  (JOB_LOCK_CLASS, job.name))
    except psycopg.errors.QueryCanceled as error:
        log.warning("job %s: statement cancelled (timeout or shutdown): %s", job.name,
                    str(error).strip()[:200])
        return Outcome(job.name, "failed", str(error), time.monotonic() - started)
    except psycopg.OperationalError as error:
        log.warning("job %s: database unavailable: %s", job.name, str(error).strip()[:200])
        return Outcome(job.name, "failed", str(error), time.monotonic() - started)
    except Exception as error:
        log.exception("job %s failed", job.name)
        return Outcome(job.name, "failed", repr(error), time.monotonic() - started)
    finally:
        if active:
            active(None)
    seconds = time.monotonic() - started
    log.info("job %s done in %.2f s: %s", job.name, seconds, result)
    return Outcome(job.name, "ran", result, seconds)


class Worker:
    """One thread per job, each running its job every ``interval_s`` until stopped."""

    def __init__(self, settings: Settings, jobs: list[Job]) -> None:
        self.settings = settings
        self.jobs = jobs
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self._connections: dict[str, psycopg.Connection] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start a thread per job."""
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def _track(self, job: Job) -> Callable[[psycopg.Connection | None], None]:
        def active(conn: psycopg.Connection | None) -> None:
            with self._lock:
                if conn is None:
                    self._connections.pop(job.name, None)
                else:
                    self._connections[job.name] = conn
        return active

    def _loop(self, job: Job) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            outcome = run_once(job, self.settings, active=self._track(job), on_schedule=True)
            if outcome.status == "failed":
                wait = min(backoff, job.interval_s)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            elif outcome.status == "skipped" and isinstance(outcome.result, float):
                wait, backoff = min(outcome.result + 0.05, job.interval_s), 1.0
            else:
                wait, backoff = job.interval_s, 1.0
            self.stop_event.wait(wait)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop every thread: cancel the statements their jobs run until they have ended."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        while any(t.is_alive() for t in self.threads) and time.monotonic() < deadline:
            with self._lock:
                running = list(self._connections.values())
            for conn in running:
                with contextlib.suppress(psycopg.Error):  # closing: nothing left to cancel
                    conn.cancel_safe(timeout=2.0)
            for thread in self.threads:
                thread.join(0.5)
