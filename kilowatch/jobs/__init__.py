"""Background jobs run by ``kilowatch worker``.

Each module in this package defines ``JOBS``, a list of :class:`Job`. The worker
discovers them all, runs each on its own interval, and holds a PostgreSQL
advisory lock named after the job while it runs, so two workers never run the
same job at once; the turn is claimed in ``job_runs``, so however many workers
there are, a job runs once per interval.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable

import psycopg

from kilowatch.settings import Settings


@dataclasses.dataclass(frozen=True)
class Job:
    """A named task run every ``interval_s`` seconds with a connection and the settings."""

    name: str
    interval_s: float
    run: Callable[[psycopg.Connection, Settings], object]


def discover() -> list[Job]:
    """Return the jobs of every module in this package, in module order."""
    jobs: list[Job] = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        jobs.extend(getattr(importlib.import_module(f"{__name__}.{module.name}"), "JOBS", []))
    return jobs
