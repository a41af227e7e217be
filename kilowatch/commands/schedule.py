"""``kilowatch schedule``: show, save, publish, compare and restore a site's schedule."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable

import click

from kilowatch import fleet
from kilowatch.cli import UserError, main, run_as_operator
from kilowatch.dispatch import delivery as plan_delivery
from kilowatch.ids import MAX_ID
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import store as schedule_store

NOT_PUBLISHED_EXIT = 3
REVISION = click.IntRange(1, MAX_ID)


def _run(action: Callable):
    """Run ``action(conn, scope, site)`` for the site given by --site."""
    def wrapper(site_ref: str):
        def on_site(conn, scope):
            return action(conn, scope, fleet.resolve_site(conn, scope, site_ref))
        try:
            return run_as_operator(on_site, actor=_actor())
        except schedules.ScheduleInvalid as error:
            raise UserError(f"the schedule is not valid: {error}") from None
    return wrapper


def _actor() -> str:
    """Name the person at the terminal for the revision's author and the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _local(value, timezone: str) -> str:
    return value.astimezone(schedules.zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _echo_result(revision: dict, result: schedule_delivery.PublishResult | None,
                 site: dict) -> None:
    click.echo(f"revision {revision['revision']} saved for site {site['name']}")
    if result is None or (not result.published and result.ok):
        click.echo("no storage device on this site yet; it gets the schedule when registered")
    elif result.published:
        click.echo(f"published to {', '.join(result.published)}")
    if result is not None and not result.ok:
        error = UserError(f"revision {revision['revision']} is saved but NOT published to "
                          f"{', '.join(result.failed)}: {result.error}; "
                          "`kilowatch worker` publishes it again when the broker is back")
        error.exit_code = NOT_PUBLISHED_EXIT
        raise error


@main.group("schedule")
def schedule_group() -> None:
    """Show and change a site's operating schedule."""


@schedule_group.command("show")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
@click.option("--revision", type=REVISION, help="An older revision.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule JSON only.")
def schedule_show(site_ref: str, revision: int | None, as_json: bool) -> None:
    """Show a site's schedule with its delivery state."""

    def show(conn, scope, site):
        if revision is None and schedule_store.latest_revision(conn, scope, site["id"]) is None:
            return None, site
        row = schedule_store.get_revision(conn, scope, site["id"], revision)
        return row, (schedule_store.delivery_state(conn, scope, site["id"]),
                     plan_delivery.delivery_state(conn, scope, site["id"]))

    row, state = _run(show)(site_ref)
    if row is None:
        click.echo(f"site {state['name']} has no schedule yet")
        return
    if as_json:
        click.echo(json.dumps({"revision": row["revision"], **schedules.canonical(row["body"])},
                              indent=2))
        return
    state, plans = state
    timezone = row["body"]["timezone"]
    click.echo(f"site {site_ref}: revision {row['revision']} saved "
               f"{_local(row['created_at'], timezone)} by {row['author']}"
               + (f": {row['comment']}" if row["comment"] else ""))
    click.echo(f"delivery: {schedule_store.describe_delivery(state, timezone)}")
    shares = schedule_store.share_labels(state)
    for device in state:
        share = f" ({shares[device['serial']]})" if device["serial"] in shares else ""
        click.echo(f"  {device['serial']:<20} {_device_line(device, timezone)}{share}")
    if any(device["revision"] is not None for device in plans):
        click.echo("dispatch plan:")
        for device in plans:
            click.echo(f"  {device['serial']:<20} {_plan_line(device, timezone)}")
    for line in _describe(row["body"]):
        click.echo(line)


def _plan_line(device: dict, timezone: str) -> str:
    if device["revision"] is None:
        return "no plan sent"
    made = f"plan {device['revision']} (made {_local(device['made_at'], timezone)})"
    if device["status"] == "applied":
        return f"{made} applied at {_local(device['acked_at'], timezone)}"
    if device["status"] == "rejected":
        return f"{made} rejected: {device['reason'] or 'no reason given'}"
    if device["published_at"] is None:
        return f"{made} not published ({device['publish_error'] or 'waiting'})"
    return f"{made} pending since {_local(device['published_at'], timezone)}"


def _device_line(device: dict, timezone: str) -> str:
    status = device["status"] or "no schedule"
    if status == "applied":
        return f"applied revision {device['revision']} at {_local(device['acked_at'], timezone)}"
    if status == "rejected":
        return f"rejected revision {device['revision']}: {device['reason'] or 'no reason given'}"
    if device["published_at"] is None and device["revision"] is not None:
        return f"pending, not yet published ({device['publish_error'] or 'waiting'})"
    applied = device["applied_revision"]
    still = f"; still runs revision {applied}" if applied else ""
    return f"pending since {_local(device['pending_since'], timezone)}{still}"


def _describe(body: dict) -> list[str]:
    default = schedules.format_params(body["default_mode"], body.get("default_params", {}))
    lines = [f"timezone: {body['timezone']}", f"default mode: {default}",
             "periods:" if body["periods"] else "periods: none"]
    lines += [f"  {schedules.format_period(p)}" for p in body["periods"]]
    lines.append("exceptions:" if body["exceptions"] else "exceptions: none")
    for exception in body["exceptions"]:
        name = f" ({exception['name']})" if exception.get("name") else ""
        lines.append(f"  {exception['date']}{name}:"
                     + ("" if exception["periods"] else " default mode all day"))
        lines += [f"    {p['start']}–{p['end']} {schedules.format_params(p['mode'], p)}"
                  for p in exception["periods"]]
    return lines


def _read_json(path: str) -> object:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON (line {error.lineno}, column "
                        f"{error.colno}: {error.msg})") from None


@schedule_group.command("set")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
@click.option("--file", "path", required=True, help="Schedule JSON file ('-' for stdin).")
@click.option("--comment", default="", help="Why the schedule changes.")
def schedule_set(site_ref: str, path: str, comment: str) -> None:
    """Validate, save as a new revision and publish a site's schedule."""
    body = _read_json(path)

    def save(conn, scope, site):
        return (*schedule_delivery.save_and_publish(conn, scope, site["id"], body,
                                                    comment=comment), site)

    _echo_result(*_run(save)(site_ref))


@schedule_group.command("restore")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
@click.option("--revision", required=True, type=REVISION)
@click.option("--comment", default=None, help="Defaults to 'restore revision N'.")
def schedule_restore(site_ref: str, revision: int, comment: str | None) -> None:
    """Save an older revision again as the newest one and publish it."""

    def restore(conn, scope, site):
        return (*schedule_delivery.restore_and_publish(conn, scope, site["id"], revision,
                                                       comment=comment), site)

    _echo_result(*_run(restore)(site_ref))


@schedule_group.command("publish")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
def schedule_publish(site_ref: str) -> None:
    """Send the latest revision to every storage device of the site again."""

    def publish(conn, scope, site):
        revision = schedule_store.get_revision(conn, scope, site["id"])
        return revision, schedule_delivery.publish_latest(conn, scope, site["id"])

    revision, result = _run(publish)(site_ref)
    if result is not None and not result.ok:
        raise UserError(f"revision {revision['revision']} NOT published to "
                        f"{', '.join(result.failed)}: {result.error}")
    click.echo(f"revision {revision['revision']} published to "
               f"{', '.join(result.published) if result else 'no device'}")


@schedule_group.command("history")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
def schedule_history(site_ref: str) -> None:
    """List a site's revisions, newest first, with who saved them and why."""

    def read(conn, scope, site):
        return site, schedule_store.history(conn, scope, site["id"])

    site, rows = _run(read)(site_ref)
    if not rows:
        click.echo("no schedule yet")
    for row in rows:
        restored = f" (restores {row['restored_from']})" if row["restored_from"] else ""
        counts = ", ".join(f"{row[k]} {k}" for k in ("applied", "rejected", "pending")
                           if row[k])
        click.echo(f"{row['revision']:>4}  {_local(row['created_at'], site['timezone'])}  "
                   f"{row['author']}  {row['comment'] or '-'}{restored}"
                   + (f"  [{counts}]" if counts else ""))


@schedule_group.command("diff")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
@click.argument("old", type=REVISION)
@click.argument("new", type=REVISION)
def schedule_diff(site_ref: str, old: int, new: int) -> None:
    """Show what changed between two revisions."""

    def read(conn, scope, site):
        return [schedule_store.get_revision(conn, scope, site["id"], n)["body"]
                for n in (old, new)]

    before, after = _run(read)(site_ref)
    lines = schedules.diff(before, after)
    click.echo("\n".join(lines) if lines else f"revisions {old} and {new} are the same")
