"""The ``kilowatch`` command: core subcommands plus those other packages contribute.

Packages that sit above ``kilowatch`` (collector, dashboards, auth, simulator)
add their subcommands through the ``kilowatch.commands`` entry-point group, so
this module never imports them.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import click
import psycopg

from kilowatch import db, migrations
from kilowatch.settings import SettingsError, get_settings


class UserError(click.ClickException):
    """An error the person at the terminal caused and can fix."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class _Group(click.Group):
    """Turn expected failures into one clear line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SettingsError as error:
            raise UserError(str(error)) from None
        except migrations.MigrationError as error:
            raise UserError(str(error)) from None
        except psycopg.OperationalError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else "unreachable"
            raise UserError(
                f"cannot reach the database ({first}); is `scripts/stack up` running "
                "and KILOWATCH_DATABASE_URL right?"
            ) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
def main(log_level: str | None) -> None:
    """Kilowatch: a cloud platform for fleets of battery energy storage systems."""
    try:
        level = log_level or get_settings().log_level
    except SettingsError as error:
        raise UserError(str(error)) from None
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


@main.group("db")
def db_group() -> None:
    """Manage the database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations that are not applied yet."""
    with db.connect(autocommit=True) as conn:
        applied = migrations.upgrade(conn)
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database is up to date")


@db_group.command("status")
def db_status() -> None:
    """List the migrations and whether each is applied."""
    with db.connect(autocommit=True) as conn:
        states = migrations.status(conn)
    for state in states:
        if state.edited:
            mark = "EDITED since applied"
        elif state.applied_at:
            mark = f"applied {state.applied_at:%Y-%m-%d %H:%M:%S%z}"
        else:
            mark = "pending"
        click.echo(f"{state.name:40} {mark}")


def _load_plugins() -> None:
    for entry in entry_points(group="kilowatch.commands"):
        command = entry.load()
        main.add_command(command, entry.name)


def _register_core() -> None:
    # Core command modules live in kilowatch and add themselves to ``main``.
    from kilowatch import commands  # noqa: F401


_register_core()
_load_plugins()
