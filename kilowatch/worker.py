"""Run the background jobs of ``kilowatch.jobs``: each on its interval in its own thread.

While a job runs, its thread holds a PostgreSQL advisory lock keyed by the job
name (``pg_try_advisory_lock``), so two workers never run the same job at once;
a worker that finds the lock taken skips that turn. A failing job is logged and
retried on its next turn; when the database is unreachable the thread backs off
(up to a minute) and carries on once it is back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import psycopg

from kilowatch import db
from kilowatch.jobs import Job, discover
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

JOB_LOCK_CLASS = 7_120_400  # first key of every job's advisory lock
_MAX_BACKOFF_S = 60.0


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


def run_once(job: Job, settings: Settings) -> Outcome:
    """Run one turn of a job under its advisory lock; never raises."""
    started = time.monotonic()
    try:
        with db.connect(settings.database_url, autocommit=True) as conn:
            locked = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS ok",
                                  (JOB_LOCK_CLASS, job.name)).fetchone()["ok"]
            if not locked:
                log.info("job %s skipped: another worker is running it", job.name)
                return Outcome(job.name, "skipped")
            try:
                result = job.run(conn, settings)
            finally:
                if not conn.closed and not conn.broken:
                    conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))",
                                  (JOB_LOCK_CLASS, job.name))
    except psycopg.OperationalError as error:
        log.warning("job %s: database unavailable: %s", job.name, str(error).strip()[:200])
        return Outcome(job.name, "failed", str(error), time.monotonic() - started)
    except Exception as error:
        log.exception("job %s failed", job.name)
        return Outcome(job.name, "failed", repr(error), time.monotonic() - started)
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

    def start(self) -> None:
        """Start a thread per job."""
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def _loop(self, job: Job) -> None:
        backoff = 1.0
        while not self.stop_event.is_set():
            outcome = run_once(job, self.settings)
            if outcome.status == "failed":
                wait = min(backoff, job.interval_s)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
            else:
                wait, backoff = job.interval_s, 1.0
            self.stop_event.wait(wait)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every thread to stop after its current turn and wait for them."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout_s)
