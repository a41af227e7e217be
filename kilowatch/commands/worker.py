"""``kilowatch worker``: run rollups, retention, offline detection and the other jobs."""

from __future__ import annotations

import signal
import threading

import click

from kilowatch import worker as worker_module
from kilowatch.cli import UserError, main
from kilowatch.settings import get_settings, refuse_public_secrets


@main.command("worker")
@click.option("--once", is_flag=True, help="Run every (selected) job once, then exit.")
@click.option("--job", "job_names", multiple=True, metavar="NAME",
              help="Run only this job (repeatable).")
@click.option("--list", "list_jobs", is_flag=True, help="List the jobs and their intervals.")
def worker_command(once: bool, job_names: tuple[str, ...], list_jobs: bool) -> None:
    """Run the background jobs, each on its own interval, until stopped."""
    try:
        jobs = worker_module.select_jobs(job_names)
    except KeyError as error:
        raise UserError(error.args[0]) from None
    if list_jobs:
        for job in jobs:
            click.echo(f"{job.name:<24} every {job.interval_s:g} s")
        return
    settings = get_settings()
    refuse_public_secrets(settings)
    if once:
        outcomes = [worker_module.run_once(job, settings) for job in jobs]
        for outcome in outcomes:
            click.echo(f"{outcome.job}: {outcome.status} ({outcome.seconds:.2f} s) "
                       f"{outcome.result if outcome.result is not None else ''}".rstrip())
        if any(o.status == "failed" for o in outcomes):
            raise UserError("some jobs failed (see the log above)")
        return
    _run_forever(worker_module.Worker(settings, jobs))


def _run_forever(service: worker_module.Worker) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    service.start()
    click.echo(f"worker running {len(service.jobs)} jobs: "
               + ", ".join(j.name for j in service.jobs), err=True)
    done.wait()
    service.stop()
