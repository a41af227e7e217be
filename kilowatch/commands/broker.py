"""``kilowatch broker``: write the broker's configuration and sync its accounts."""

from __future__ import annotations

from pathlib import Path

import click

from kilowatch import db
from kilowatch.broker import config, sync
from kilowatch.cli import main
from kilowatch.settings import get_settings

PATH = click.Path(path_type=Path)


@main.group("broker")
def broker_group() -> None:
    """Configure the MQTT broker and keep its accounts in line with the database."""


@broker_group.command("config")
@click.option("--dir", "directory", type=PATH, required=True,
              help="Directory of the broker's state, log and security file.")
@click.option("--cafile", type=PATH, required=True, help="CA certificate (PEM).")
@click.option("--certfile", type=PATH, required=True, help="Broker certificate (PEM).")
@click.option("--keyfile", type=PATH, required=True, help="Broker private key (PEM).")
@click.option("--service-port", type=click.IntRange(1, 65535), default=1883, show_default=True)
@click.option("--device-port", type=click.IntRange(1, 65535), default=8883, show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--user", default=None, help="System user Mosquitto drops to.")
def broker_config(directory, cafile, certfile, keyfile, service_port, device_port, bind,
                  user) -> None:
    """Print mosquitto.conf, creating the security file with the admin account if missing."""
    files = config.BrokerFiles(directory=directory.resolve(), cafile=cafile.resolve(),
                               certfile=certfile.resolve(), keyfile=keyfile.resolve())
    directory.mkdir(parents=True, exist_ok=True)
    if config.init_security(files, get_settings().mqtt_admin_url):
        click.echo(f"created {files.security_file}", err=True)
    click.echo(config.render(files, service_port=service_port, device_port=device_port,
                             bind=bind, user=user), nl=False)


@broker_group.command("sync")
@click.option("--services-only", is_flag=True,
              help="Only the collector's and publisher's accounts (no database needed).")
def broker_sync(services_only: bool) -> None:
    """Make the broker's accounts and roles match the database now."""
    settings = get_settings()
    if services_only:
        changes = sync.reconcile(settings)
    else:
        with db.connect(autocommit=True) as conn:
            changes = sync.reconcile(settings, conn)
    for change in changes:
        click.echo(change)
    click.echo(f"broker in line: {len(changes)} change(s)")
