"""``kilowatch user|group``: the platform operator's account commands.

A new user gets either an e-mail invitation (``--invite``: a link to choose
their password, through the outbox the worker sends), a password read from
stdin, or, for operators without mail, a one-time password printed once that
must be changed at the first login and expires after 24 hours.
"""

from __future__ import annotations

import click

from kilowatch import fleet
from kilowatch.access import ROLES
from kilowatch.accounts import account_mail, groups, passwords, users
from kilowatch.cli import UserError, main, run_as_operator
from kilowatch.settings import get_settings

ONE_TIME_NOTE = "one-time password (shown once, to be changed at first login within {hours} h)"


def _echo_one_time(password: str) -> None:
    hours = int(users.ONE_TIME_PASSWORD_LIFETIME.total_seconds() // 3600)
    click.echo(f"{ONE_TIME_NOTE.format(hours=hours)}: {password}")


def _read_password(from_stdin: bool) -> tuple[str, bool]:
    """Return (password, generated?) from stdin's first line or a fresh random one."""
    if not from_stdin:
        return passwords.generate_password(), True
    password = click.get_text_stream("stdin").readline().rstrip("\r\n")
    passwords.check_policy(password)
    return password, False


@main.group("user")
def user_group() -> None:
    """Manage user accounts."""


@user_group.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, help=f"One of {', '.join(ROLES)}.")
@click.option("--company", help="Company id or name (not for support/superadmin).")
@click.option("--name", "display_name", help="Display name (default: from the e-mail).")
@click.option("--language", default="en", show_default=True,
              help=f"Language of the user's e-mails: {', '.join(users.LANGUAGES)}.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option("--invite", is_flag=True,
              help="E-mail an invitation to choose a password instead of printing one.")
def user_create(email, role, company, display_name, language, password_stdin, invite) -> None:
    """Create a user: e-mail an invitation, read a password, or print a one-time one."""
    if invite and password_stdin:
        raise UserError("--invite and --password-stdin exclude each other")
    password, generated = (None, False) if invite else _read_password(password_stdin)
    base_url = get_settings().base_url

    def create(conn, scope):
        company_id = fleet.resolve_company(conn, scope, company)["id"] if company else None
        users.check_role(role, company_id)
        fields = {"email": email, "role": role, "company_id": company_id,
                  "display_name": display_name, "language": language}
        if invite:
            return account_mail.create_and_invite(conn, scope, base_url=base_url, **fields)
        return users.create_user(conn, scope, password_hash=passwords.hash_password(password),
                                 must_change_password=generated, **fields)

    user_id = run_as_operator(create)
    click.echo(f"user {user_id} created: {users.normalize_email(email)} ({role})")
    if invite:
        click.echo("invitation e-mail queued (the worker sends it; its link works for 72 h)")
    elif generated:
        _echo_one_time(password)


@user_group.command("set-password")
@click.option("--user", "user_ref", required=True, help="User id or e-mail.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def user_set_password(user_ref, password_stdin) -> None:
    """Set a user's password; without --password-stdin a one-time password is printed once."""
    password, generated = _read_password(password_stdin)

    def set_password(conn, scope):
        user = users.resolve_user(conn, scope, user_ref)
        return users.reset_password(conn, scope, user["id"], passwords.hash_password(password),
                                    must_change=generated)

    row = run_as_operator(set_password)
    click.echo(f"password of {row['email']} set; their sessions are ended")
    if generated:
        _echo_one_time(password)


@user_group.command("invite")
@click.option("--user", "user_ref", required=True, help="User id or e-mail.")
def user_invite(user_ref) -> None:
    """E-mail a user a link to choose a password (an invitation, or a reset link)."""
    base_url = get_settings().base_url
    row = run_as_operator(lambda conn, scope: account_mail.invite(
        conn, scope, users.resolve_user(conn, scope, user_ref)["id"], base_url=base_url))
    kind = "invitation" if row["purpose"] == "invitation" else "password reset link"
    click.echo(f"{kind} e-mail queued for {row['email']}")


@user_group.command("list")
@click.option("--company", help="Only this company (id or name).")
def user_list(company) -> None:
    """List users with their company, role and state."""

    def listing(conn, scope):
        company_id = fleet.resolve_company(conn, scope, company)["id"] if company else None
        return users.list_users(conn, scope, company_id)

    for row in run_as_operator(listing):
        state = "active" if row["active"] else "deactivated"
        click.echo(f"{row['id']:>5}  {row['email']:40} {row['role']:10} "
                   f"{row['company_name'] or '(platform)':24} {state}")


def _set_active(user_ref: str, active: bool) -> dict:
    return run_as_operator(lambda conn, scope: users.set_active(
        conn, scope, users.resolve_user(conn, scope, user_ref)["id"], active))


@user_group.command("deactivate")
@click.option("--user", "user_ref", required=True, help="User id or e-mail.")
def user_deactivate(user_ref) -> None:
    """Deactivate a user (they are logged out at their next request)."""
    click.echo(f"{_set_active(user_ref, False)['email']} deactivated")


@user_group.command("activate")
@click.option("--user", "user_ref", required=True, help="User id or e-mail.")
def user_activate(user_ref) -> None:
    """Activate a user again."""
    click.echo(f"{_set_active(user_ref, True)['email']} activated")


@main.group("group")
def group_group() -> None:
    """Manage groups of users and the sites granted to them."""


def _company_id(conn, scope, company: str | None) -> int | None:
    return fleet.resolve_company(conn, scope, company)["id"] if company else None


@group_group.command("create")
@click.option("--company", required=True, help="Company id or name.")
@click.option("--name", required=True)
def group_create(company, name) -> None:
    """Create a group in a company."""
    group_id = run_as_operator(lambda conn, scope: groups.create_group(
        conn, scope, company_id=_company_id(conn, scope, company), name=name))
    click.echo(f"group {group_id} created: {name.strip()}")


@group_group.command("list")
@click.option("--company", help="Only this company (id or name).")
def group_list(company) -> None:
    """List groups with their member and site counts."""
    rows = run_as_operator(lambda conn, scope: groups.list_groups(
        conn, scope, _company_id(conn, scope, company)))
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['company_name']} / {row['name']}  "
                   f"({row['member_count']} members, {row['site_count']} sites)")


def _group_and(conn, scope, group: str, company: str | None) -> dict:
    return groups.resolve_group(conn, scope, group, _company_id(conn, scope, company))


@group_group.command("grant")
@click.option("--group", required=True, help="Group id or name.")
@click.option("--site", required=True, help="Site id or name.")
@click.option("--company", help="Company of the group, when its name is ambiguous.")
def group_grant(group, site, company) -> None:
    """Grant a group access to a site of its company."""

    def grant(conn, scope):
        group_row = _group_and(conn, scope, group, company)
        site_row = fleet.resolve_site(conn, scope, site)
        groups.grant_site(conn, scope, group_row["id"], site_row["id"])
        return group_row, site_row

    group_row, site_row = run_as_operator(grant)
    click.echo(f"group {group_row['name']} may see site {site_row['name']}")


@group_group.command("revoke")
@click.option("--group", required=True, help="Group id or name.")
@click.option("--site", required=True, help="Site id or name.")
@click.option("--company", help="Company of the group, when its name is ambiguous.")
def group_revoke(group, site, company) -> None:
    """Take a site away from a group."""

    def revoke(conn, scope):
        group_row = _group_and(conn, scope, group, company)
        site_row = fleet.resolve_site(conn, scope, site)
        groups.revoke_site(conn, scope, group_row["id"], site_row["id"])
        return group_row, site_row

    group_row, site_row = run_as_operator(revoke)
    click.echo(f"group {group_row['name']} no longer sees site {site_row['name']}")


@group_group.command("add-member")
@click.option("--group", required=True, help="Group id or name.")
@click.option("--user", "user_ref", required=True, help="User id or e-mail.")
@click.option("--company", help="Company of the group, when its name is ambiguous.")
def group_add_member(group, user_ref, company) -> None:
    """Add a user of the group's company to the group."""

    def add(conn, scope):
        group_row = _group_and(conn, scope, group, company)
        user_row = users.resolve_user(conn, scope, user_ref)
        groups.add_member(conn, scope, group_row["id"], user_row["id"])
        return group_row, user_row

    group_row, user_row = run_as_operator(add)
    click.echo(f"{user_row['email']} is a member of group {group_row['name']}")
