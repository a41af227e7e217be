"""``kilowatch alarm list|incidents``, ``kilowatch mail test|outbox``: alarms, platform
incidents and e-mail from a shell."""

from __future__ import annotations

import datetime as dt
import json
import smtplib

import click

from kilowatch import fleet, mailer
from kilowatch.alarms import events as alarms
from kilowatch.alarms import outbox, platform
from kilowatch.cli import UserError, main, run_as_operator
from kilowatch.settings import get_settings


@main.group("alarm")
def alarm_group() -> None:
    """Read alarms."""


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z"


def _alarm_line(row: dict) -> str:
    state = "active " if row["cleared_at"] is None else "cleared"
    ack = " ack" if row["acknowledged_at"] else ""
    return (f"{row['id']:>7}  {_utc(row['raised_at'])}  {state}{ack:4}  "
            f"{row['severity']:<8} {row['code']:<20} {row['site_name']} / {row['serial']}: "
            f"{row['message']}")


@alarm_group.command("list")
@click.option("--site", help="Site id or name (default: every site).")
@click.option("--all", "everything", is_flag=True, help="Cleared alarms too, newest first.")
@click.option("--limit", type=click.IntRange(1, 50_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def alarm_list(site, everything, limit, as_json) -> None:
    """List active alarms, most severe first (--all: the history, newest first)."""

    def read(conn, scope):
        site_id = fleet.resolve_site(conn, scope, site)["id"] if site else None
        if everything:
            return alarms.search_alarms(conn, scope, alarms.HistoryQuery(site_id=site_id,
                                                                         limit=limit))
        rows = alarms.active_alarms(conn, scope, limit=limit)
        return [r for r in rows if site_id is None or r["site_id"] == site_id]

    try:
        rows = run_as_operator(read)
    except fleet.FleetError as error:
        raise UserError(str(error)) from None
    for row in rows:
        click.echo(json.dumps(row, default=str) if as_json else _alarm_line(row))


@alarm_group.command("incidents")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
def alarm_incidents(limit) -> None:
    """List the platform's own incidents (nothing ingested …), newest first."""
    rows = run_as_operator(lambda conn, scope: platform.list_incidents(conn, scope,
                                                                       limit=limit))
    for row in rows:
        ended = _utc(row["ended_at"]) if row["ended_at"] else f"{'open':<17}"
        click.echo(f"{row['id']:>5}  {_utc(row['started_at'])} → {ended}  {row['kind']}: "
                   f"{row['message']}")
    if not rows:
        click.echo("no platform incidents")


@main.group("mail")
def mail_group() -> None:
    """Check outgoing e-mail."""


@mail_group.command("test")
@click.option("--to", "recipient", required=True, help="Address to send a test e-mail to.")
def mail_test(recipient) -> None:
    """Send one e-mail now through KILOWATCH_SMTP_URL (not through the outbox)."""
    settings = get_settings()
    try:
        config = mailer.parse_smtp_url(settings.smtp_url)
        message = mailer.build_message(
            sender=settings.mail_from, recipient=recipient, subject="[Kilowatch] Test e-mail",
            text=f"Kilowatch can send e-mail through {config.host}:{config.port}.\n",
            html=f"<p>Kilowatch can send e-mail through {config.host}:{config.port}.</p>")
        with mailer.Mailer(config) as session:
            session.send(message)
    except (ValueError, mailer.MailError, smtplib.SMTPException, OSError) as error:
        raise UserError(f"no e-mail sent: {error}") from None
    click.echo(f"sent to {recipient} through {config.host}:{config.port}")


@mail_group.command("outbox")
@click.option("--status", type=click.Choice(["pending", "failed", "sent"]), default="pending",
              show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def mail_outbox(status, limit) -> None:
    """List the newest e-mails of the outbox in a state, with their last error."""
    rows = run_as_operator(lambda conn, scope: outbox.list_outbox(conn, scope, status=status,
                                                                  limit=limit))
    for row in rows:
        error = f"  ({row['last_error']})" if row["last_error"] else ""
        click.echo(f"{row['id']:>7}  {_utc(row['created_at'])}  {row['recipient']:<32} "
                   f"tries {row['attempts']}  next {_utc(row['next_attempt_at'])}  "
                   f"{row['subject']}{error}")
