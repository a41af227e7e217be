"""Read models for the savings pages: billable months, the peak day, CSV rows, a fleet month.

Everything here reads within the caller's access scope (SQL filtered with
:func:`kilowatch.access.site_filter`); computing and storing bills stays in
:mod:`kilowatch.billing.savings`.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from kilowatch import fleet, spreadsheets
from kilowatch.access import AccessScope, site_filter
from kilowatch.billing import bills, tariff_store
from kilowatch.telemetry import energy

MAX_MONTHS = 36
CSV_COLUMNS = ("site", "month", "scenario", "tariff", "currency", "energy", "demand", "fixed",
               "export_credit", "total", "peak_kw", "peak_at", "complete", "missing_intervals",
               "estimated_intervals", "final", "stale", "computed_at")


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _today(timezone: str, now: datetime | None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(timezone)).date()


def site_months(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
                now: datetime | None = None) -> list[str]:
    """Return the months (``YYYY-MM``, newest first) a visible site has a tariff in, to date."""
    site = fleet.get_site(conn, scope, site_id)
    this_month = _month_start(_today(site["timezone"], now))
    oldest = _add_months(this_month, -(MAX_MONTHS - 1))
    months: set[date] = set()
    for row in tariff_store.assignments(conn, scope, site_id):
        month = max(_month_start(row["valid_from"]), oldest)
        last = this_month if row["valid_to"] is None else min(
            this_month, _month_start(row["valid_to"] - timedelta(days=1)))
        while month <= last:
            months.add(month)
            month = _add_months(month, 1)
    return [f"{month:%Y-%m}" for month in sorted(months, reverse=True)]


def peak_day(conn: psycopg.Connection, scope: AccessScope, site_id: int, moment: str, *,
             now: datetime | None = None) -> dict[str, Any]:
    """Return the 15-minute grid import, export, load and PV (kW) of the local day of ``moment``."""
    site = fleet.get_site(conn, scope, site_id)
    tz = ZoneInfo(site["timezone"])
    try:
        at = datetime.fromisoformat(moment)
    except (TypeError, ValueError):
        raise ValueError(f"{moment!r} is not a time") from None
    if at.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    day = at.astimezone(tz).date()
    start = datetime.combine(day, time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    result = energy.site_energy(conn, scope, site_id, start, end, now=now)

    def power(item: energy.EnergyInterval, quantity: str) -> float | None:
        kwh = item.kwh.get(quantity)
        return None if kwh is None else round(kwh * 4, 3)

    return {
        "site_id": site_id, "timezone": site["timezone"], "day": day.isoformat(),
        "peak_at": at.astimezone(UTC).isoformat(),
        "intervals": [{"start": item.start.isoformat(),
                       **{q: power(item, q) for q in ("grid_import", "grid_export", "load", "pv")},
                       "gap": bool(item.gaps)} for item in result.intervals],
    }


_BILL_ROWS_SQL = """
SELECT s.name AS site, b.period_start, b.scenario, t.name AS tariff, b.currency, b.energy,
       b.demand, b.fixed, b.export_credit, b.total,
       (b.details -> 'demand' ->> 'peak_kw')::float AS peak_kw,
       b.details -> 'demand' ->> 'peak_at' AS peak_at, b.complete,
       (b.quality ->> 'missing_intervals')::int AS missing_intervals,
       (b.quality ->> 'estimated_intervals')::int AS estimated_intervals,
       b.final, b.stale, b.computed_at
FROM bills b JOIN sites s ON s.id = b.site_id JOIN tariffs t ON t.id = b.tariff_id
WHERE b.site_id = %s AND {}
ORDER BY b.period_start,
         array_position(ARRAY['without_system', 'pv_only', 'actual'], b.scenario)
"""


def bill_rows(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return every stored bill of a visible site, a row per month and scenario (for CSV)."""
    fleet.get_site(conn, scope, site_id)
    query = sql.SQL(_BILL_ROWS_SQL).format(site_filter(scope))
    return conn.execute(query, (site_id,)).fetchall()


def _csv_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"{value:%Y-%m}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "" if value is None else value


def _csv_cell(value: Any) -> Any:
    # Text (site and tariff names) starting like a formula is quoted so that
    # spreadsheets do not run it; amounts stay numbers, negative ones included.
    return spreadsheets.text_cell(value) if isinstance(value, str) else _csv_value(value)


def bills_csv(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> str:
    """Return a visible site's stored bills as CSV text (one line per month and scenario)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in bill_rows(conn, scope, site_id):
        writer.writerow(
            [_csv_cell(row["period_start"]) if column == "month" else _csv_cell(row[column])
             for column in CSV_COLUMNS])
    return out.getvalue()


_FLEET_SQL = """
SELECT s.id AS site_id, s.name AS site_name, c.name AS company_name, s.timezone,
       a.tariff_id, a.tariff_name, b.currency, b.without_system, b.pv_only, b.actual,
       b.complete, b.final, b.stale, b.computed_at
FROM sites s JOIN companies c ON c.id = s.company_id
LEFT JOIN LATERAL (
    SELECT a.tariff_id, t.name AS tariff_name
    FROM site_tariffs a JOIN tariffs t ON t.id = a.tariff_id
    CROSS JOIN LATERAL (SELECT daterange(a.valid_from, a.valid_to)
                               * daterange(%(first)s, %(end)s) AS r) x
    WHERE a.site_id = s.id AND a.superseded_at IS NULL AND NOT isempty(x.r)
    ORDER BY upper(x.r) - lower(x.r) DESC, a.valid_from DESC LIMIT 1
) a ON true
LEFT JOIN LATERAL (
    SELECT min(b.currency) AS currency,
           max(b.total) FILTER (WHERE b.scenario = 'without_system') AS without_system,
           max(b.total) FILTER (WHERE b.scenario = 'pv_only') AS pv_only,
           max(b.total) FILTER (WHERE b.scenario = 'actual') AS actual,
           bool_and(b.complete) AS complete, bool_and(b.final) AS final,
           bool_or(b.stale) AS stale, max(b.computed_at) AS computed_at
    FROM bills b WHERE b.site_id = s.id AND b.period_start = %(first)s
    HAVING count(*) = 3
) b ON true
WHERE {} AND (%(company)s::int IS NULL OR s.company_id = %(company)s)
ORDER BY c.name, s.name, s.id
"""


def _money(value: Any) -> float | None:
    return None if value is None else float(value)


def fleet_month(conn: psycopg.Connection, scope: AccessScope, label: str, *,
                company_id: int | None = None) -> list[dict]:
    """Return every visible site's tariff, stored bills and savings for one month."""
    period = bills.billing_period("UTC", label)
    first = date(period.year, period.month, 1)
    query = sql.SQL(_FLEET_SQL).format(site_filter(scope))
    rows = conn.execute(query, {"first": first, "end": _add_months(first, 1),
                                "company": company_id}).fetchall()
    result = []
    for row in rows:
        row = {**row, **{k: _money(row[k]) for k in ("without_system", "pv_only", "actual")}}
        has_bills = row["actual"] is not None
        row["system_savings"] = (round(row["without_system"] - row["actual"], 2)
                                 if has_bills else None)
        row["storage_savings"] = round(row["pv_only"] - row["actual"], 2) if has_bills else None
        result.append(row)
    return result


def recent_months(count: int = 13, *, now: datetime | None = None) -> list[str]:
    """Return the last ``count`` calendar months (``YYYY-MM``, newest first, UTC)."""
    this_month = _month_start((now or datetime.now(UTC)).astimezone(UTC).date())
    return [f"{_add_months(this_month, -n):%Y-%m}" for n in range(count)]
