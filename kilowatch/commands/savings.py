"""``kilowatch savings``: a site's monthly bills (without system, PV only, actual) and savings."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from kilowatch import fleet
from kilowatch.billing import savings
from kilowatch.cli import main, run_as_operator

ROWS = (("without system", "without_system"), ("PV only", "pv_only"), ("actual", "actual"))
COLUMNS = ("energy", "demand", "fixed", "export_credit", "total")


def _local(iso: str | None, timezone: str) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _table(summary: dict) -> list[str]:
    header = f"{'':22}" + "".join(f"{c.replace('_credit', ''):>12}" for c in COLUMNS)
    lines = [header]
    for title, scenario in ROWS:
        bill = summary["bills"][scenario]
        flag = "" if bill["complete"] else "  (incomplete data)"
        lines.append(f"{title:22}" + "".join(f"{bill[c]:>12.2f}" for c in COLUMNS) + flag)
    for title, key in (("system saves (1-3)", "system"), ("storage saves (2-3)", "storage")):
        lines.append(f"{title:22}" + "".join(f"{summary['savings'][key][c]:>12.2f}"
                                             for c in COLUMNS))
    return lines


def _peaks(summary: dict) -> list[str]:
    parts = []
    for title, scenario in ROWS:
        demand = summary["bills"][scenario]["details"]["demand"]
        parts.append(f"{title} {demand['peak_kw']:.1f} kW at "
                     f"{_local(demand['peak_at'], summary['timezone'])}")
    return ["peak demand: " + "; ".join(parts)]


def _quality(summary: dict) -> list[str]:
    lines = []
    for title, scenario in ROWS:
        quality = summary["bills"][scenario]["quality"]
        if quality["complete"]:
            continue
        ranges = ", ".join(f"{_local(a, summary['timezone'])}–{_local(b, summary['timezone'])}"
                           for a, b in (quality["missing"] + quality["estimated"])[:3])
        lines.append(f"{title}: {quality['missing_intervals']} of "
                     f"{quality['expected_intervals']} intervals missing, "
                     f"{quality['estimated_intervals']} estimated ({ranges})")
    return lines


@main.group("savings")
def savings_group() -> None:
    """Monthly bills and savings of sites."""


@savings_group.command("show")
@click.option("--site", required=True, help="Site id or name.")
@click.option("--month", required=True, help="Billing period, YYYY-MM (site's time zone).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--refresh", is_flag=True, help="Recompute even if stored bills are current.")
def savings_show(site, month, as_json, refresh) -> None:
    """Print a month's three bills, their breakdown and the savings."""

    def read(conn, scope):
        site_row = fleet.resolve_site(conn, scope, site)
        return savings.month_summary(conn, scope, site_row["id"], month, refresh=refresh)

    summary = run_as_operator(read)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    state = ("final" if summary["final"]
             else f"to date, until {_local(summary['data_until'], summary['timezone'])}")
    click.echo(f"{summary['site']} ({summary['timezone']}), {summary['period']} ({state}); "
               f"tariff {summary['tariff']}; amounts in {summary['currency']}")
    for line in _table(summary) + _peaks(summary) + _quality(summary):
        click.echo(line)


@savings_group.command("list")
@click.option("--site", help="Site id or name (default: every site).")
def savings_list(site) -> None:
    """List the stored monthly bills and savings."""

    def read(conn, scope):
        site_id = fleet.resolve_site(conn, scope, site)["id"] if site else None
        return savings.list_bills(conn, scope, site_id=site_id)

    for row in run_as_operator(read):
        mark = "" if row["final"] else " (to date)"
        click.echo(f"{row['site_name']:20} {row['period_start']:%Y-%m}{mark:10} "
                   f"{row['without_system']:>10.2f} {row['pv_only']:>10.2f} {row['actual']:>10.2f}"
                   f"  saves {row['system_savings']:.2f} (storage {row['storage_savings']:.2f})"
                   f" {row['currency']}")
