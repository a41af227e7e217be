"""The ``kilowatch`` command: core subcommands plus those other packages contribute.

Packages that sit above ``kilowatch`` (collector, dashboards, auth, simulator)
add their subcommands through the ``kilowatch.commands`` entry-point group, so
this module never imports them; each is imported only when it is the command run.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from importlib.metadata import EntryPoint, entry_points

import click
import psycopg

from kilowatch import db, migrations
from kilowatch.access import AccessDenied, system_scope
from kilowatch.errors import UserFacingError
from kilowatch.settings import SERVICES, SettingsError, get_settings, use_service_settings


class UserError(click.ClickException):
    """An error the person at the terminal caused and can fix."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True)


class _UsageError(UserError):
    """A bad option or argument, said in one line that points at the command's help."""

    exit_code = 2


def _first_line(error: Exception, default: str) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else default


def _usage_error(error: click.UsageError) -> UserError:
    where = error.ctx.command_path if error.ctx else "kilowatch"
    message = error.format_message().strip().splitlines()[0] or "bad usage"
    return _UsageError(f"{message} (see `{where} --help`)")


class _Group(click.Group):
    """Turn expected failures into one clear line on stderr instead of a traceback.

    Every :class:`~kilowatch.errors.UserFacingError` raised by a command (an
    unknown name, a bad date, an invalid schedule, a bad setting …), an
    :class:`~kilowatch.access.AccessDenied`, a value PostgreSQL refuses and a bad
    option all end here, so commands need no error wrappers of their own.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Name the core commands and those of the other packages (without importing them)."""
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """Return a command, importing another package's only when it is the one asked for."""
        if name not in self.commands and name in _plugins():
            self.add_command(_plugins()[name].load(), name)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise _usage_error(error) from None
        except (UserFacingError, AccessDenied) as error:
            raise UserError(_first_line(error, type(error).__name__)) from None
        except psycopg.OperationalError as error:
            raise UserError(
                f"cannot reach the database ({_first_line(error, 'unreachable')}); is "
                "`scripts/stack up` running and KILOWATCH_DATABASE_URL right?"
            ) from None
        except psycopg.errors.InsufficientPrivilege as error:
            raise UserError(
                f"the database refused this login: {_first_line(error, 'permission denied')}; "
                "migrations and the operator's commands run as the owner of the tables "
                "(KILOWATCH_DATABASE_URL)") from None
        except psycopg.DataError as error:
            raise UserError(f"the database refused a value: {_first_line(error, 'bad value')}"
                            ) from None


class FiniteFloat(click.FloatRange):
    """A float option within a range that refuses ``nan`` and ``inf``."""

    def convert(self, value, param, ctx):
        """Convert like FloatRange, then refuse values that are not finite."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0, min_open=True)
NON_NEGATIVE = FiniteFloat(min=0)


def run_as_operator(action, *, actor: str = "cli"):
    """Run ``action(conn, scope)`` on a new autocommit connection as the platform operator."""
    with db.connect(autocommit=True) as conn:
        return action(conn, system_scope(actor))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR.")
def main(log_level: str | None) -> None:
    """Kilowatch: a cloud platform for fleets of battery energy storage systems."""
    service = click.get_current_context().invoked_subcommand
    try:
        if service in SERVICES:  # web, collector, worker: their own database login
            use_service_settings(service)
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
@click.option("--to", "to", metavar="NNN", default=None,
              help="Stop after this migration number (e.g. 008); default: the newest.")
def db_upgrade(to: str | None) -> None:
    """Apply the migrations that are not applied yet."""
    with db.connect(autocommit=True) as conn:
        applied = migrations.upgrade(conn, to=to)
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


@functools.cache
def _plugins() -> dict[str, EntryPoint]:
    # Loaded on demand: importing the web app, the collector and the simulator for every
    # command would add most of a second to each `kilowatch user create`.
    return {entry.name: entry for entry in entry_points(group="kilowatch.commands")}


def _register_core() -> None:
    # Core command modules live in kilowatch and add themselves to ``main``.
    from kilowatch import commands  # noqa: F401


_register_core()
