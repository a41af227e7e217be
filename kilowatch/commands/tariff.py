"""``kilowatch tariff``: import URDB tariffs, list them, assign them to sites."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from kilowatch import fleet
from kilowatch.billing import tariff_store, tariffs, urdb
from kilowatch.cli import NON_NEGATIVE, UserError, main, run_as_operator


def parse_date(value: str | None, option: str) -> date | None:
    """Parse YYYY-MM-DD or raise a one-line error naming the option."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{option}: {value!r} is not a date like 2026-03-01") from None


def read_document(path: str) -> object:
    """Read a JSON file; a missing or malformed file is a one-line error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error.msg} at line {error.lineno} "
                        f"column {error.colno})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None


def _company(conn, scope, ref: str | None) -> dict:
    if ref is not None:
        return fleet.resolve_company(conn, scope, ref)
    rows = conn.execute("SELECT id, name FROM companies ORDER BY id LIMIT 2").fetchall()
    if len(rows) != 1:
        raise fleet.FleetError("--company: say which company the tariff belongs to")
    return rows[0]


@main.group("tariff")
def tariff_group() -> None:
    """Manage utility tariffs and their assignment to sites."""


@tariff_group.command("import")
@click.argument("file")
@click.option("--company", help="Company id or name (needed when there are several).")
@click.option("--name", help="Tariff name (default: the URDB rate's name).")
@click.option("--label", help="URDB label of the rate to take from an API response.")
@click.option("--currency", default="USD", show_default=True, help="ISO currency of the rates.")
@click.option("--export-rate", type=NON_NEGATIVE, default=0.0, show_default=True,
              help="Export rate for periods without a URDB 'sell' rate.")
def tariff_import(file, company, name, label, currency, export_rate) -> None:
    """Import a tariff from a URDB rate JSON file (or a Kilowatch tariff JSON)."""
    document = read_document(file)

    def store(conn, scope):
        company_row = _company(conn, scope, company)
        if isinstance(document, dict) and isinstance(document.get("energy"), dict):
            tariff, source, default_name = tariffs.parse(document), None, document.get("name")
        else:
            tariff = urdb.import_urdb(document, label=label, currency=currency,
                                      export_rate=export_rate)
            source = urdb.select_urdb_rate(document, label)
            default_name = source.get("name")
        tariff_name = name or default_name or Path(file).stem
        tariff_id = tariff_store.create_tariff(conn, scope, company_id=company_row["id"],
                                               name=str(tariff_name), tariff=tariff,
                                               source=source)
        return tariff_id, tariff_name, tariff

    tariff_id, tariff_name, tariff = run_as_operator(store)
    click.echo(f"tariff {tariff_id} imported: {tariff_name} ({tariffs.describe(tariff)})")


@tariff_group.command("list")
@click.option("--company", help="Only this company's tariffs.")
def tariff_list(company) -> None:
    """List tariffs with their company and how many sites use them."""

    def read(conn, scope):
        company_id = fleet.resolve_company(conn, scope, company)["id"] if company else None
        return tariff_store.list_tariffs(conn, scope, company_id)

    for row in run_as_operator(read):
        summary = tariffs.describe(tariffs.parse(row["structure"]))
        click.echo(f"{row['id']:>5}  {row['company_name']} / {row['name']}  [{row['currency']}]"
                   f"  {row['sites']} site(s)  {summary}")


@tariff_group.command("show")
@click.argument("tariff")
def tariff_show(tariff) -> None:
    """Print a tariff's normalised structure as JSON."""

    def read(conn, scope):
        found = tariff_store.resolve_tariff(conn, scope, tariff)
        return tariff_store.get_tariff(conn, scope, found["id"])

    row = run_as_operator(read)
    click.echo(json.dumps({"id": row["id"], "name": row["name"], **row["structure"]}, indent=2))


@tariff_group.command("assign")
@click.option("--site", required=True, help="Site id or name.")
@click.option("--tariff", "tariff_ref", required=True, help="Tariff id or name.")
@click.option("--from", "valid_from", required=True, help="First day (YYYY-MM-DD).")
@click.option("--to", "valid_to", help="Day after the last one (YYYY-MM-DD); open if omitted.")
def tariff_assign(site, tariff_ref, valid_from, valid_to) -> None:
    """Give a site a tariff from a date (the previous one ends that day)."""
    start, end = parse_date(valid_from, "--from"), parse_date(valid_to, "--to")

    def assign(conn, scope):
        site_row = fleet.resolve_site(conn, scope, site)
        found = tariff_store.resolve_tariff(conn, scope, tariff_ref, site_row["company_id"])
        tariff_store.assign_tariff(conn, scope, site_id=site_row["id"], tariff_id=found["id"],
                                   valid_from=start, valid_to=end)
        return site_row, found

    site_row, found = run_as_operator(assign)
    until = f" to {end}" if end else ""
    click.echo(f"site {site_row['name']} uses tariff {found['name']} from {start}{until}")


@tariff_group.command("history")
@click.option("--site", required=True, help="Site id or name.")
def tariff_history(site) -> None:
    """List a site's tariff assignments, superseded ones included."""

    def read(conn, scope):
        site_row = fleet.resolve_site(conn, scope, site)
        return tariff_store.assignments(conn, scope, site_row["id"], history=True)

    for row in run_as_operator(read):
        state = (f"superseded {row['superseded_at']:%Y-%m-%d %H:%M}" if row["superseded_at"]
                 else "current")
        click.echo(f"{row['valid_from']} → {row['valid_to'] or '…':10}  {row['tariff_name']}"
                   f"  ({state}, by {row['created_by']})")
