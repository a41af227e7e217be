"""``kilowatch demo``: migrate, start every service that exists, and say what runs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import click

from kilowatch import db, migrations
from kilowatch.cli import main
from kilowatch.settings import get_settings

# Long-running services, in start order, with the arguments the demo gives them.
SERVICES = (
    ("collector", ["collector"]),
    ("worker", ["worker"]),
    ("web", ["web", "--host", "127.0.0.1", "--port", "8050"]),
)


@main.command("demo")
@click.option("--check", is_flag=True, help="Start, report, and stop after a few seconds.")
def demo(check: bool) -> None:
    """Run everything at once on the local services."""
    settings = get_settings()
    with db.connect(autocommit=True) as conn:
        applied = migrations.upgrade(conn)
    click.echo(f"database {settings.database_url}: "
               f"{len(applied)} migration(s) applied, schema up to date")
    children = []
    for name, args in SERVICES:
        if name in main.commands:
            children.append((name, subprocess.Popen([sys.executable, "-m", "kilowatch", *args])))
    click.echo(f"MQTT broker  {settings.mqtt_url}  (topics {settings.mqtt_prefix}/<serial>/…)")
    click.echo(f"Redis        {settings.redis_url}")
    for name, process in children:
        click.echo(f"{name:12} running (pid {process.pid})")
    if not children:
        click.echo("no services to start yet: the stack and a migrated database are ready")
        return
    _wait(children, 5 if check else None)


def _wait(children: list, seconds: float | None) -> None:
    deadline = None if seconds is None else time.monotonic() + seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while deadline is None or time.monotonic() < deadline:
            for name, process in children:
                if process.poll() is not None:
                    raise click.ClickException(f"{name} exited with status {process.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for _, process in children:
            process.terminate()
        for _, process in children:
            process.wait(timeout=10)
