"""What the site page shows of dispatch: the plan against what happened, and forecast accuracy.

Every function takes the caller's access scope and joins ``sites`` with
:func:`~kilowatch.access.site_filter`, so another company's site gives nothing
(:class:`~kilowatch.access.AccessDenied` from :func:`kilowatch.fleet.get_site`).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import AccessScope, site_filter
from kilowatch.billing import tariff_store
from kilowatch.billing.savings import _flows as energy_flows
from kilowatch.dispatch import forecast
from kilowatch.dispatch.forecast import STEP, Series
from kilowatch.telemetry import energy, history
from kilowatch.telemetry.resolution import Resolution

PAST = timedelta(days=1)
ACTUAL_POINTS = ("bms.soc", "pcs.p", "meter.grid.p")
FIFTEEN_MINUTES = Resolution("1m", STEP)
KINDS = ("load", "pv")
MAX_DAYS = 31


@dataclasses.dataclass(frozen=True)
class PlannedSteps:
    """The steps in force, oldest first: each from the newest plan made by its start."""

    starts: list[datetime]
    soc: list[float]  # % at the end of the step
    battery_kw: list[float]  # > 0 discharges
    grid_kw: list[float]  # > 0 imports


@dataclasses.dataclass(frozen=True)
class PlanView:
    """A site's newest plan (None: never planned), its steps since a day ago, and the telemetry."""

    site_id: int
    timezone: str
    currency: str | None
    plan: dict | None  # the newest ``planned`` row of dispatch_plans
    failure: dict | None  # the newest row, when it is a ``failed`` one made after ``plan``
    steps: PlannedSteps
    actual: history.History | None
    now: datetime


_STEPS_SQL = """
SELECT DISTINCT ON (t) t, (e->>'soc')::float AS soc, (e->>'battery_kw')::float AS battery_kw,
       (e->>'grid_kw')::float AS grid_kw
FROM dispatch_plans p JOIN sites s ON s.id = p.site_id
CROSS JOIN LATERAL jsonb_array_elements(p.plan->'steps') e
CROSS JOIN LATERAL (SELECT (e->>'start')::timestamptz AS t) x
WHERE p.site_id = %(site)s AND p.status = 'planned' AND {scope}
  AND p.made_at >= coalesce(  -- plans before the one in force at ``since`` never win a step
      (SELECT max(made_at) FROM dispatch_plans WHERE site_id = %(site)s
       AND status = 'planned' AND made_at <= %(since)s), %(since)s)
  AND p.made_at <= %(now)s AND t >= %(since)s
ORDER BY t, p.made_at DESC
"""


def _quarter(moment: datetime) -> datetime:
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def planned_steps(conn: psycopg.Connection, scope: AccessScope, site_id: int, since: datetime,
                  now: datetime) -> PlannedSteps:
    """Return each step from ``since``, as planned by the newest plan made by its start.

    A plan starts when it is made, so the newest plan holding a step is the one
    the site was following then (or, ahead of ``now``, the one it follows).
    """
    query = sql.SQL(_STEPS_SQL).format(scope=site_filter(scope))
    rows = conn.execute(query, {"site": site_id, "since": since, "now": now}).fetchall()
    return PlannedSteps([r["t"] for r in rows], [r["soc"] for r in rows],
                        [r["battery_kw"] for r in rows], [r["grid_kw"] for r in rows])


def newest_plans(conn: psycopg.Connection, scope: AccessScope,
                 site_id: int) -> tuple[dict | None, dict | None]:
    """Return a visible site's newest ``planned`` row and its newest row of any status."""
    query = sql.SQL(
        """SELECT DISTINCT ON (p.status = 'planned') p.* FROM dispatch_plans p
           JOIN sites s ON s.id = p.site_id WHERE p.site_id = %s AND {}
           ORDER BY p.status = 'planned', p.made_at DESC""").format(site_filter(scope))
    rows = conn.execute(query, (site_id,)).fetchall()
    planned = next((r for r in rows if r["status"] == "planned"), None)
    newest = max(rows, key=lambda r: r["made_at"], default=None)
    return planned, newest


def _currency(conn: psycopg.Connection, scope: AccessScope, site_id: int,
              day: date) -> str | None:
    assignment = tariff_store.tariff_for_period(conn, scope, site_id, day,
                                                day + timedelta(days=1))
    return assignment["structure"].get("currency") if assignment else None


def plan_view(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
              now: datetime | None = None) -> PlanView:
    """Return a visible site's newest plan with what happened over the past day."""
    site = fleet.get_site(conn, scope, site_id)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    planned, newest = newest_plans(conn, scope, site["id"])
    failure = newest if newest is not None and newest["status"] == "failed" else None
    since = _quarter(now - PAST)
    steps = planned_steps(conn, scope, site["id"], since, now)
    actual = None
    if planned is not None:
        actual = history.site_history(conn, scope, site["id"], ACTUAL_POINTS, since, now,
                                      resolution=FIFTEEN_MINUTES)
    local_day = now.astimezone(ZoneInfo(site["timezone"])).date()
    return PlanView(site["id"], site["timezone"], _currency(conn, scope, site["id"], local_day),
                    planned, failure, steps, actual, now)


# ---- forecast accuracy ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ForecastAccuracy:
    """Day-ahead forecasts against what was metered, per 15-minute step and per local day."""

    site_id: int
    timezone: str
    start: datetime
    forecast: dict[str, Series]  # kind → kW per step (NaN where no forecast)
    actual: dict[str, Series]  # kind → metered kW per step (NaN where unknown)
    days: dict[str, list[forecast.DayAccuracy]]  # kind → the days with both, oldest first

    @property
    def has_forecasts(self) -> bool:
        """Whether any day-ahead forecast covers the range."""
        return any(not np.isnan(s.values).all() for s in self.forecast.values())


_FORECASTS_SQL = """
SELECT m.midnight, k.kind, f.start, f.values_kw
FROM unnest(%(midnights)s::timestamptz[]) m(midnight)
CROSS JOIN unnest(%(kinds)s::text[]) k(kind)
CROSS JOIN LATERAL (
    SELECT f.start, f.values_kw FROM dispatch_forecasts f JOIN sites s ON s.id = f.site_id
    WHERE f.site_id = %(site)s AND f.kind = k.kind AND f.made_at <= m.midnight
      AND f.made_at > m.midnight - interval '1 day' AND {scope}
    ORDER BY f.made_at DESC LIMIT 1) f
"""


def _midnights(first: date, days: int, tz: ZoneInfo) -> list[datetime]:
    return [datetime.combine(first + timedelta(days=k), time(), tz).astimezone(UTC)
            for k in range(days + 1)]


def _day_ahead(rows: list[dict], kind: str, midnights: list[datetime]) -> Series:
    """Join each day's day-ahead forecast (the newest made by its midnight) into one series."""
    start = midnights[0]
    values = np.full(round((midnights[-1] - start) / STEP), np.nan)
    for row in rows:
        if row["kind"] != kind:
            continue
        day = midnights.index(row["midnight"])
        begin, end = midnights[day], midnights[day + 1]
        made = Series(row["start"], np.array(row["values_kw"], dtype=float))
        offset = round((begin - start) / STEP)
        count = round((end - begin) / STEP)
        values[offset:offset + count] = made.window(begin, count)
    return Series(start, values)


def forecast_accuracy(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
                      days: int = 7, now: datetime | None = None) -> ForecastAccuracy:
    """Return the day-ahead load and PV forecasts of a visible site's last ``days`` local days.

    Each day is judged on the newest forecast made by its local midnight (at most a
    day before), against the metered energy, up to ``now`` (today counts so far).
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}")
    site = fleet.get_site(conn, scope, site_id)
    tz = ZoneInfo(site["timezone"])
    now = (now or datetime.now(UTC)).astimezone(UTC)
    today = now.astimezone(tz).date()
    midnights = _midnights(today - timedelta(days=days - 1), days, tz)
    query = sql.SQL(_FORECASTS_SQL).format(scope=site_filter(scope))
    rows = conn.execute(query, {"midnights": midnights, "kinds": list(KINDS),
                                "site": site["id"]}).fetchall()
    begin = midnights[0]
    measured = energy_flows(energy.site_energy(conn, scope, site["id"], begin, midnights[-1],
                                               now=now))
    made, actual, result = {}, {}, {}
    for kind in KINDS:
        made[kind] = _day_ahead(rows, kind, midnights)
        values = [np.nan if getattr(f, kind) is None or f.start + STEP > now  # not over yet
                  else getattr(f, kind) * 4 for f in measured]
        actual[kind] = Series(begin, np.array(values, dtype=float))
        result[kind] = forecast.daily_accuracy(made[kind], actual[kind], site["timezone"])
    return ForecastAccuracy(site["id"], site["timezone"], begin, made, actual, result)
