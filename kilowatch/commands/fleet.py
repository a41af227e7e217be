"""``kilowatch company|site|device``: the platform operator's fleet commands."""

from __future__ import annotations

import click

from kilowatch import fleet
from kilowatch.broker import sync
from kilowatch.cli import POSITIVE, UserError, main, run_as_operator
from kilowatch.devices import lifecycle
from kilowatch.errors import UserFacingError
from kilowatch.settings import get_settings


@main.group("company")
def company_group() -> None:
    """Manage companies (tenants)."""


@company_group.command("create")
@click.argument("name")
def company_create(name: str) -> None:
    """Create a company."""
    company_id = run_as_operator(lambda conn, scope: fleet.create_company(conn, scope, name))
    click.echo(f"company {company_id} created: {name}")


@company_group.command("list")
def company_list() -> None:
    """List companies."""
    rows = run_as_operator(lambda conn, scope: conn.execute(
        "SELECT id, name FROM companies ORDER BY name").fetchall())
    for row in rows:
        click.echo(f"{row['id']:>5}  {row['name']}")


@main.group("site")
def site_group() -> None:
    """Manage sites."""


@site_group.command("create")
@click.option("--company", required=True, help="Company id or name.")
@click.option("--name", required=True)
@click.option("--timezone", required=True, help="IANA time zone, e.g. Europe/Paris.")
@click.option("--latitude", type=click.FloatRange(-90, 90))
@click.option("--longitude", type=click.FloatRange(-180, 180))
@click.option("--address")
@click.option("--optimizer/--no-optimizer", default=False, show_default=True,
              help="Offer the optimized mode (forecasts and a dispatch plan every 15 minutes).")
def site_create(company, name, timezone, latitude, longitude, address, optimizer) -> None:
    """Create a site."""

    def create(conn, scope):
        company_row = fleet.resolve_company(conn, scope, company)
        return fleet.create_site(conn, scope, company_id=company_row["id"], name=name,
                                 timezone=timezone, address=address, latitude=latitude,
                                 longitude=longitude, has_optimizer=optimizer)

    site_id = run_as_operator(create)
    click.echo(f"site {site_id} created: {name}")


SITE_FIELDS = ("name", "timezone", "address", "latitude", "longitude", "contact_name",
               "contact_email", "contact_phone", "has_optimizer")


@site_group.command("update")
@click.option("--site", "site_ref", required=True, help="Site id or name.")
@click.option("--name")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Paris.")
@click.option("--latitude", type=click.FloatRange(-90, 90))
@click.option("--longitude", type=click.FloatRange(-180, 180))
@click.option("--address")
@click.option("--optimizer/--no-optimizer", default=None,
              help="Offer the optimized mode or not (unchanged when not given).")
def site_update(site_ref, name, timezone, latitude, longitude, address, optimizer) -> None:
    """Change a site: only the options given."""
    given = {"name": name, "timezone": timezone, "latitude": latitude, "longitude": longitude,
             "address": address, "has_optimizer": optimizer}

    def update(conn, scope):
        site = fleet.resolve_site(conn, scope, site_ref)
        current = {key: site[key] for key in SITE_FIELDS}
        changes = {key: value for key, value in given.items() if value is not None}
        return site["id"], fleet.update_site(conn, scope, site["id"], **{**current, **changes})

    site_id, changed = run_as_operator(update)
    click.echo(f"site {site_id}: {', '.join(changed) or 'nothing'} changed")


@site_group.command("list")
def site_list() -> None:
    """List sites with their company."""
    for row in run_as_operator(fleet.list_sites):
        click.echo(f"{row['id']:>5}  {row['company_name']} / {row['name']}  ({row['timezone']})")


@main.group("device")
def device_group() -> None:
    """Manage devices."""


@device_group.command("register")
@click.option("--site", required=True, help="Site id or name.")
@click.option("--serial", required=True)
@click.option("--model", required=True, type=click.Choice(fleet.DEVICE_MODELS))
@click.option("--rated-power-kw", type=POSITIVE)
@click.option("--capacity-kwh", type=POSITIVE)
def device_register(site, serial, model, rated_power_kw, capacity_kwh) -> None:
    """Register a device on a site."""

    def register(conn, scope):
        site_row = fleet.resolve_site(conn, scope, site)
        return lifecycle.register(conn, scope, site_id=site_row["id"], serial=serial,
                                  model=model, rated_power_kw=rated_power_kw,
                                  capacity_kwh=capacity_kwh)

    device_id, code = run_as_operator(register)
    click.echo(f"device {device_id} registered: {serial}")
    _echo_code(code)


def _echo_code(code: str) -> None:
    click.echo(f"activation code: {code}")
    click.echo(f"(shown once; valid {lifecycle.CODE_VALID_FOR.days} days, single use)", err=True)


def _device_id(conn, serial: str) -> int:
    row = conn.execute("SELECT id FROM devices WHERE serial = %s", (serial,)).fetchone()
    if row is None:
        raise UserError(f"no device with serial {serial!r}")
    return row["id"]


@device_group.command("activation-code")
@click.option("--serial", required=True)
def device_activation_code(serial) -> None:
    """Issue a new one-time activation code (the previous one stops working)."""
    code = run_as_operator(lambda conn, scope: lifecycle.issue_code(
        conn, scope, _device_id(conn, serial)))
    _echo_code(code)


@device_group.command("revoke")
@click.option("--serial", required=True)
def device_revoke(serial) -> None:
    """Revoke a device's credentials: the broker cuts it off; it needs a new code to return."""
    revoked = run_as_operator(lambda conn, scope: lifecycle.revoke(
        conn, scope, _device_id(conn, serial)))
    if not revoked:
        click.echo(f"{serial} has no credentials or code to revoke")
        return
    try:
        run_as_operator(lambda conn, _scope: sync.apply_pending(conn, get_settings()))
    except UserFacingError as error:
        click.echo(f"{serial} revoked; the broker was not reached ({error}): the worker "
                   "removes its account when it is", err=True)
        return
    click.echo(f"{serial} revoked and cut off from the broker")


@device_group.command("list")
@click.option("--site", default=None, help="Site id or name (default: every site).")
def device_list(site) -> None:
    """List devices with their identity state."""

    def rows(conn, scope):
        site_ids = [fleet.resolve_site(conn, scope, site)["id"]] if site else \
            [s["id"] for s in fleet.list_sites(conn, scope)]
        return [d for site_id in site_ids for d in fleet.list_devices(conn, scope, site_id)]

    for device in run_as_operator(rows):
        click.echo(f"{device['serial']:24} {device['model']:8} {lifecycle.state(device):10} "
                   f"firmware {device['firmware'] or '-'}")
