"""Monthly bills and savings of sites: compute them from interval energy, store and read them.

For a site and billing period (a calendar month in the site's time zone) the
tariff is the one assigned for most days of the month. The three bills
(``without_system``, ``pv_only``, ``actual``; see :mod:`kilowatch.billing.bills`) are
computed from the 15-minute energy of :mod:`kilowatch.telemetry.energy` and stored in
``bills``; a month that is not over yet is stored as month to date and
refreshed when read more than :data:`REFRESH_AFTER` later. Savings of the whole
system are bill 1 − bill 3, of the storage alone bill 2 − bill 3.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch import fleet
from kilowatch.access import AccessScope, site_filter
from kilowatch.billing import bills, scenarios, tariff_store, tariffs
from kilowatch.billing.bills import Bill, BillingPeriod
from kilowatch.billing.scenarios import Flow
from kilowatch.errors import UserFacingError
from kilowatch.telemetry import energy

log = logging.getLogger(__name__)

REFRESH_AFTER = timedelta(minutes=15)
RECHECK_INCOMPLETE_AFTER = timedelta(hours=1)
HISTORY_MONTHS = 13


class SavingsError(UserFacingError, ValueError):
    """Bills cannot be computed for this site and month (no tariff, month not begun)."""


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _quarter_floor(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _flows(site: energy.SiteEnergy) -> list[Flow]:
    """Turn site energy into bill flows: no PV meter means no PV, no export counter no export."""
    measured = site.quantities

    def value(item: energy.EnergyInterval, name: str, absent: float | None) -> float | None:
        return item.kwh.get(name) if name in measured else absent

    no_export = 0.0 if "grid_import" in measured else None
    return [
        Flow(item.start, value(item, "grid_import", None), value(item, "grid_export", no_export),
             value(item, "load", None), value(item, "pv", 0.0),
             frozenset(name for name in item.gaps if item.kwh.get(name) is not None))
        for item in site.intervals
    ]


def compute_month(conn: psycopg.Connection, scope: AccessScope, site_id: int, label: str, *,
                  now: datetime | None = None) -> dict[str, Bill]:
    """Compute and store the three bills of a visible site for a month (to date if current)."""
    site = fleet.get_site(conn, scope, site_id)
    period = bills.billing_period(site["timezone"], label)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if period.start >= now:
        raise SavingsError(f"{label} has not begun yet in {site['timezone']}")
    with conn.transaction():
        # A tariff assignment waits for this computation (it locks the site row for
        # update), so bills are never stored as current with a replaced tariff.
        conn.execute("SELECT id FROM sites WHERE id = %s FOR SHARE", (site_id,))
        result = _compute_locked(conn, scope, site_id, period, now)
    if result is None:
        raise SavingsError(f"site {site['name']!r} has no tariff in {label}; "
                           "assign one with `kilowatch tariff assign`")
    return result


def _compute_locked(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                    period: BillingPeriod, now: datetime) -> dict[str, Bill] | None:
    first_day = date(period.year, period.month, 1)
    assignment = tariff_store.tariff_for_period(conn, scope, site_id, first_day,
                                                _next_month(first_day))
    if assignment is None:
        conn.execute("DELETE FROM bills WHERE site_id = %s AND period_start = %s",
                     (site_id, first_day))
        return None
    tariff = tariffs.parse(assignment["structure"])
    final = period.end <= now
    until = None if final else _quarter_floor(now)
    data_end = period.end if final else until
    flows: list[Flow] = []
    if data_end > period.start:
        flows = _flows(energy.site_energy(conn, scope, site_id, period.start, data_end, now=now))
    result = scenarios.compute_bills(tariff, flows, period, until=until)
    _store(conn, site_id, first_day, assignment, result, final=final, data_until=data_end,
           computed_at=now)
    return result


def _store(conn: psycopg.Connection, site_id: int, period_start: date, assignment: dict,
           result: dict[str, Bill], *, final: bool, data_until: datetime,
           computed_at: datetime) -> None:
    # Stale at once if the tariff was edited while the bills were being computed.
    stale = conn.execute("SELECT structure <> %s AS changed FROM tariffs WHERE id = %s",
                         (Jsonb(assignment["structure"]), assignment["tariff_id"])).fetchone()
    for scenario, bill in result.items():
        conn.execute(
            """INSERT INTO bills (site_id, period_start, scenario, tariff_id, currency, energy,
                   demand, fixed, export_credit, total, details, quality, complete, final,
                   stale, data_until, computed_at)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (site_id, period_start, scenario) DO UPDATE SET
                   tariff_id = EXCLUDED.tariff_id, currency = EXCLUDED.currency,
                   energy = EXCLUDED.energy, demand = EXCLUDED.demand,
                   fixed = EXCLUDED.fixed, export_credit = EXCLUDED.export_credit,
                   total = EXCLUDED.total, details = EXCLUDED.details,
                   quality = EXCLUDED.quality, complete = EXCLUDED.complete,
                   final = EXCLUDED.final, stale = EXCLUDED.stale,
                   data_until = EXCLUDED.data_until, computed_at = EXCLUDED.computed_at""",
            (site_id, period_start, scenario, assignment["tariff_id"], bill.currency,
             bill.energy, bill.demand, bill.fixed, bill.export_credit, bill.total,
             Jsonb(bill.details), Jsonb(bill.quality), bill.quality["complete"], final,
             stale["changed"], data_until, computed_at),
        )


def _stored(conn: psycopg.Connection, scope: AccessScope, site_id: int,
            period_start: date) -> list[dict]:
    query = sql.SQL(
        """SELECT b.*, t.name AS tariff_name FROM bills b
           JOIN sites s ON s.id = b.site_id JOIN tariffs t ON t.id = b.tariff_id
           WHERE b.site_id = %s AND b.period_start = %s AND {}"""
    ).format(site_filter(scope))
    return conn.execute(query, (site_id, period_start)).fetchall()


def _needs_compute(rows: list[dict], now: datetime) -> bool:
    if len(rows) < len(scenarios.SCENARIOS) or any(row["stale"] for row in rows):
        return True
    return any(not row["final"] and row["computed_at"] < now - REFRESH_AFTER for row in rows)


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def month_summary(conn: psycopg.Connection, scope: AccessScope, site_id: int, label: str, *,
                  refresh: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Return a visible site's three bills and savings for a month, computing them if needed."""
    site = fleet.get_site(conn, scope, site_id)
    try:
        period = bills.billing_period(site["timezone"], label)
    except ValueError as error:
        raise SavingsError(str(error)) from None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    first_day = date(period.year, period.month, 1)
    rows = _stored(conn, scope, site_id, first_day)
    if refresh or _needs_compute(rows, now) or (not rows[0]["final"] and period.end <= now):
        compute_month(conn, scope, site_id, label, now=now)
        rows = _stored(conn, scope, site_id, first_day)
    by_scenario = {row["scenario"]: row for row in rows}
    amounts = {s: {p: _plain(by_scenario[s][p]) for p in bills.PARTS} for s in scenarios.SCENARIOS}
    actual = by_scenario["actual"]
    return {
        "site_id": site_id, "site": site["name"], "timezone": site["timezone"],
        "period": period.label, "currency": actual["currency"],
        "tariff_id": actual["tariff_id"], "tariff": actual["tariff_name"],
        "final": actual["final"], "computed_at": actual["computed_at"].isoformat(),
        "data_until": actual["data_until"].isoformat(),
        "bills": {s: {**amounts[s], "complete": by_scenario[s]["complete"],
                      "details": by_scenario[s]["details"],
                      "quality": by_scenario[s]["quality"]} for s in scenarios.SCENARIOS},
        "savings": scenarios.savings(amounts),
    }


def list_bills(conn: psycopg.Connection, scope: AccessScope, *, site_id: int | None = None,
               since: date | None = None, until: date | None = None) -> list[dict]:
    """Return stored monthly totals and savings per visible site and month (pages, CSV)."""
    query = sql.SQL(
        """SELECT b.site_id, s.name AS site_name, s.company_id, b.period_start,
                  min(b.currency) AS currency,
                  max(b.total) FILTER (WHERE scenario = 'without_system') AS without_system,
                  max(b.total) FILTER (WHERE scenario = 'pv_only') AS pv_only,
                  max(b.total) FILTER (WHERE scenario = 'actual') AS actual,
                  bool_and(b.complete) AS complete, bool_and(b.final) AS final,
                  bool_or(b.stale) AS stale, max(b.computed_at) AS computed_at
           FROM bills b JOIN sites s ON s.id = b.site_id
           WHERE {} AND (%(site)s::int IS NULL OR b.site_id = %(site)s)
             AND (%(since)s::date IS NULL OR b.period_start >= %(since)s)
             AND (%(until)s::date IS NULL OR b.period_start < %(until)s)
           GROUP BY b.site_id, s.name, s.company_id, b.period_start
           HAVING count(*) = 3
           ORDER BY s.name, b.site_id, b.period_start"""
    ).format(site_filter(scope))
    rows = conn.execute(query, {"site": site_id, "since": since, "until": until}).fetchall()
    result = []
    for row in rows:
        row = {key: _plain(value) for key, value in row.items()}
        row["system_savings"] = round(row["without_system"] - row["actual"], 2)
        row["storage_savings"] = round(row["pv_only"] - row["actual"], 2)
        result.append(row)
    return result


_DUE_SQL = """
WITH months AS (
    SELECT a.site_id, m::date AS period_start, (%(now)s AT TIME ZONE s.timezone)::date AS today
    FROM site_tariffs a JOIN sites s ON s.id = a.site_id
    CROSS JOIN LATERAL generate_series(
        date_trunc('month', greatest(a.valid_from,
            ((%(now)s AT TIME ZONE s.timezone)::date - %(history)s)::date)::timestamp),
        date_trunc('month', least(coalesce(a.valid_to - 1, 'infinity'::date),
            (%(now)s AT TIME ZONE s.timezone)::date)::timestamp),
        interval '1 month') m
    WHERE a.superseded_at IS NULL AND a.valid_from <= (%(now)s AT TIME ZONE s.timezone)::date
)
SELECT DISTINCT m.site_id, m.period_start
FROM months m
LEFT JOIN bills b ON b.site_id = m.site_id AND b.period_start = m.period_start
                 AND b.scenario = 'actual'
WHERE b.site_id IS NULL OR b.stale
   OR (NOT b.final AND (m.period_start < date_trunc('month', m.today::timestamp)
                        OR b.computed_at < %(now)s - %(refresh)s))
   OR (b.final AND NOT b.complete AND b.computed_at < %(now)s - %(recheck)s
       AND m.period_start >= date_trunc('month', m.today::timestamp) - interval '1 month')
UNION
SELECT site_id, period_start FROM bills WHERE stale
ORDER BY period_start DESC, site_id
LIMIT %(limit)s
"""


def due(conn: psycopg.Connection, *, now: datetime | None = None,
        limit: int = 20) -> list[tuple[int, str]]:
    """List (site id, YYYY-MM) whose bills are missing, stale, out of date or incomplete."""
    params = {"now": now or datetime.now(UTC), "history": timedelta(days=31 * HISTORY_MONTHS),
              "refresh": REFRESH_AFTER, "recheck": RECHECK_INCOMPLETE_AFTER, "limit": limit}
    rows = conn.execute(_DUE_SQL, params).fetchall()
    return [(row["site_id"], f"{row['period_start']:%Y-%m}") for row in rows]


def refresh(conn: psycopg.Connection, scope: AccessScope, *, now: datetime | None = None,
            limit: int = 20) -> int:
    """Compute the bills that are due (platform-wide worker task); return how many months."""
    if not scope.platform_wide:
        raise SavingsError("only the platform's worker refreshes every site's bills")
    done = 0
    for site_id, label in due(conn, now=now, limit=limit):
        try:
            compute_month(conn, scope, site_id, label, now=now)
            done += 1
        except SavingsError as error:
            log.info("bills of site %s for %s not computed: %s", site_id, label, error)
        except (ValueError, psycopg.DataError):
            # One site's bad data must not keep the other sites' bills from being computed.
            log.exception("bills of site %s for %s failed", site_id, label)
    return done
