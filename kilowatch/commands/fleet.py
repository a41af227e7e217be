"""``kilowatch company|site|device``: the platform operator's fleet commands."""

from __future__ import annotations

import click

from kilowatch import fleet
from kilowatch.cli import POSITIVE, main, run_as_operator


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
def site_create(company, name, timezone, latitude, longitude, address) -> None:
    """Create a site."""

    def create(conn, scope):
        company_row = fleet.resolve_company(conn, scope, company)
        return fleet.create_site(conn, scope, company_id=company_row["id"], name=name,
                                 timezone=timezone, address=address, latitude=latitude,
                                 longitude=longitude)

    site_id = run_as_operator(create)
    click.echo(f"site {site_id} created: {name}")


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
        return fleet.register_device(conn, scope, site_id=site_row["id"], serial=serial,
                                     model=model, rated_power_kw=rated_power_kw,
                                     capacity_kwh=capacity_kwh)

    device_id = run_as_operator(register)
    click.echo(f"device {device_id} registered: {serial}")
