"""``kilowatch collector`` (the ingest service) and ``kilowatch deadletter list``."""

from __future__ import annotations

import json
import logging
import re

import click

from collector.service import Collector, CollectorError, default_client_id
from collector.validation import REASONS
from kilowatch import db
from kilowatch.access import system_scope
from kilowatch.cli import UserError
from kilowatch.settings import get_settings, refuse_public_secrets
from kilowatch.telemetry import ingest


@click.command("collector")
@click.option("--client-id", default=None,
              help="MQTT client id; keep it stable so the broker keeps the session "
                   "[default: kilowatch-collector-HOSTNAME].")
@click.option("--receive-maximum", type=click.IntRange(1, 65535), default=1000,
              show_default=True, help="Unacknowledged messages the broker may send at once.")
@click.option("--session-expiry", type=click.IntRange(0), default=7 * 86400, show_default=True,
              help="Seconds the broker keeps the session (and queues messages) while away.")
@click.option("--batch-points", type=click.IntRange(1), default=50_000, show_default=True,
              help="Commit when a batch holds this many point values.")
@click.option("--linger", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Seconds to wait for more messages before committing a batch.")
@click.option("--max-backlog-points", type=click.IntRange(1), default=500_000,
              show_default=True, help="Point values held in memory before reading stops.")
@click.option("--dead-letter-limit", type=click.IntRange(1), default=10_000, show_default=True,
              help="Dead letters kept (oldest deleted first).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Port of /metrics [default: KILOWATCH_METRICS_PORT]; 0 disables it.")
def collector_command(client_id, receive_maximum, session_expiry, batch_points, linger,
                      max_backlog_points, dead_letter_limit, metrics_port) -> None:
    """Receive device messages over MQTT and store them (runs until stopped)."""
    settings = get_settings()
    refuse_public_secrets(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    service = Collector(settings, client_id=client_id or default_client_id(),
                        receive_maximum=receive_maximum, session_expiry_s=session_expiry,
                        max_backlog_points=max_backlog_points, batch_points=batch_points,
                        linger_s=linger, dead_letter_limit=dead_letter_limit,
                        metrics_port=port or None)
    logging.getLogger("collector").info("starting collector %s", service.client_id)
    try:
        service.run_forever()
    except CollectorError as error:
        raise UserError(str(error)) from None


# C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Escape what a device sent so that it cannot drive the operator's terminal."""
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


@click.group("deadletter")
def deadletter_group() -> None:
    """Read the messages the collector refused."""


@deadletter_group.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--reason", type=click.Choice(REASONS), default=None)
@click.option("--serial", default=None, help="Only this device serial.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def deadletter_list(limit, reason, serial, as_json) -> None:
    """List the newest refused messages with their reason and (truncated) payload."""
    with db.connect(autocommit=True) as conn:
        letters = ingest.list_dead_letters(conn, system_scope(), limit=limit, reason=reason,
                                           serial=serial)
    for letter in letters:
        if as_json:
            click.echo(json.dumps({**letter, "received_at": letter["received_at"].isoformat()}))
            continue
        click.echo(f"{letter['received_at']:%Y-%m-%d %H:%M:%S} {letter['reason']:<17} "
                   f"{printable(letter['serial'] or '-'):<20} {printable(letter['detail'] or '')}")
        click.echo(f"    {printable(letter['topic'])}  {printable(letter['payload'][:200])}")
    if not letters:
        click.echo("no dead letters")
