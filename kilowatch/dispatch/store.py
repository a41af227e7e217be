"""A site's dispatch inputs from the database, and its stored forecasts, plans and their accuracy.

:func:`plan_site` gathers what the optimiser needs (the site's place and time zone,
its tariff for the month, its latest schedule, its storage and last SoC, four weeks
of 15-minute load and PV, the month's metered grid energy), forecasts, plans, and
stores both. Anything missing raises :class:`~kilowatch.dispatch.optimizer.DispatchDataMissing`.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from kilowatch import fleet
from kilowatch.access import AccessScope
from kilowatch.billing import scenarios, tariff_store, tariffs
from kilowatch.billing.bills import billing_period
from kilowatch.billing.savings import _flows as energy_flows
from kilowatch.dispatch import forecast, optimizer, plan, rates, solar
from kilowatch.dispatch.forecast import STEP, Series
from kilowatch.schedules import preview
from kilowatch.schedules import store as schedule_store
from kilowatch.telemetry import energy

OPTIMIZED = "optimized"
HISTORY = timedelta(days=28)
PV_FIT = timedelta(days=14)
_PV_MODELS: dict[tuple[int, date], solar.PvModel | None] = {}  # refitted once a local day


def uses_optimizer(schedule: dict | None) -> bool:
    """Whether a schedule puts the ``optimized`` mode in force at some time."""
    if not schedule:
        return False
    periods = list(schedule.get("periods", []))
    for exception in schedule.get("exceptions", []):
        periods.extend(exception.get("periods", []))
    return schedule.get("default_mode") == OPTIMIZED or any(
        period.get("mode") == OPTIMIZED for period in periods)


def sites_to_plan(conn: psycopg.Connection) -> list[int]:
    """The sites with the optimiser whose latest schedule has an ``optimized`` time."""
    rows = conn.execute(
        """SELECT DISTINCT ON (r.site_id) r.site_id, r.body
           FROM schedule_revisions r JOIN sites s ON s.id = r.site_id
           WHERE s.has_optimizer ORDER BY r.site_id, r.revision DESC""").fetchall()
    return [row["site_id"] for row in rows if uses_optimizer(row["body"])]


def quarter(moment: datetime) -> datetime:
    """The start of the 15-minute step holding ``moment`` (UTC)."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Everything one plan of a site is made from."""

    site: dict
    tariff: tariffs.Tariff
    schedule: dict | None
    storage: object
    soc: float
    load: Series
    pv: Series
    so_far: rates.MonthToDate


def load_inputs(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                start: datetime) -> Inputs:
    """Read a visible site's inputs for a plan starting at ``start`` (a 15-minute boundary)."""
    site = fleet.get_site(conn, scope, site_id)
    if site["latitude"] is None or site["longitude"] is None:
        raise optimizer.DispatchDataMissing(
            f"site {site['name']!r} has no latitude and longitude for its PV forecast")
    period = billing_period(site["timezone"], start.astimezone(ZoneInfo(site["timezone"]))
                            .strftime("%Y-%m"))
    first_day = date(period.year, period.month, 1)
    assignment = tariff_store.tariff_for_period(conn, scope, site_id, first_day,
                                                first_day + timedelta(days=period.days))
    if assignment is None:
        raise optimizer.DispatchDataMissing(f"site {site['name']!r} has no tariff in "
                                            f"{period.label}")
    tariff = tariffs.parse(assignment["structure"])
    try:
        storage, soc = preview.site_battery(conn, scope, site_id, now=start)
    except preview.NoStorage as error:
        raise optimizer.DispatchDataMissing(str(error)) from None
    revision = schedule_store.latest_revision(conn, scope, site_id)
    since = min(start - HISTORY, period.start)
    measured = energy.site_energy(conn, scope, site_id, since, start, now=start)
    flows = energy_flows(measured)
    load = _kw(flows, "load", since)
    pv = _kw(flows, "pv", since)
    month = [flow for flow in flows if flow.start >= period.start]
    intervals = scenarios.scenario_intervals(month, "actual", tariff.export_compensation)
    so_far = rates.month_to_date(tariff, site["timezone"], start, intervals)
    return Inputs(site, tariff, revision["body"] if revision else None, storage,
                  preview.ASSUMED_SOC if soc is None else soc, load, pv, so_far)


def _kw(flows: list[scenarios.Flow], name: str, since: datetime) -> Series:
    values = np.array([np.nan if getattr(flow, name) is None else getattr(flow, name) * 4
                       for flow in flows])
    return Series(since, values)


def _pv_model(site: dict, pv: Series, start: datetime) -> solar.PvModel | None:
    key = (site["id"], start.astimezone(ZoneInfo(site["timezone"])).date())
    if key not in _PV_MODELS:
        for old in [k for k in _PV_MODELS if k[0] == site["id"]]:
            del _PV_MODELS[old]  # yesterday's fit
        fit_from = start - PV_FIT
        recent = Series(fit_from, pv.window(fit_from, round(PV_FIT / STEP)))
        _PV_MODELS[key] = solar.fit_pv(recent, site["latitude"], site["longitude"])
    return _PV_MODELS[key]


def special_days(schedule: dict | None) -> list[date]:
    """The schedule's exception dates: forecast like Sundays."""
    return [date.fromisoformat(e["date"]) for e in (schedule or {}).get("exceptions", [])]


def plan_site(conn: psycopg.Connection, scope: AccessScope, site_id: int, now: datetime,
              *, wear_cost_per_kwh: float = 0.0) -> plan.Plan:
    """Forecast and plan a site's next 48 hours from ``now``; store the forecasts."""
    start = quarter(now)
    inputs = load_inputs(conn, scope, site_id, start)
    site, n = inputs.site, forecast.HORIZON_STEPS
    try:
        load = forecast.forecast_load(inputs.load, site["timezone"], start, n,
                                      special_days=special_days(inputs.schedule))
    except ValueError as error:
        raise optimizer.DispatchDataMissing(f"site {site['name']!r}: {error}") from None
    model = _pv_model(site, inputs.pv, start)
    pv = solar.forecast_pv(model, inputs.pv, start, n)
    store_forecasts(conn, site_id, start, load, pv)
    planned_pv = solar.forecast_pv(model, inputs.pv, start, n,
                                   quantile=plan.pv_quantile(inputs.tariff))
    starts = forecast.step_starts(start, n)
    soc_min, soc_max, export = plan.schedule_limits(inputs.schedule, starts)
    problem = optimizer.Problem(
        tariff=inputs.tariff, timezone=site["timezone"], starts=starts, load_kw=load,
        pv_kw=planned_pv,
        battery=inputs.storage, soc=inputs.soc, soc_min=soc_min, soc_max=soc_max,
        export_allowed=export, wear_cost_per_kwh=wear_cost_per_kwh, so_far=inputs.so_far)
    return plan.make_plan(problem)


def store_forecasts(conn: psycopg.Connection, site_id: int, start: datetime, load: np.ndarray,
                    pv: np.ndarray) -> None:
    """Keep a forecast made at ``start`` (replacing one made then before)."""
    for kind, values in (("load", load), ("pv", pv)):
        conn.execute(
            """INSERT INTO dispatch_forecasts (site_id, kind, made_at, start, values_kw)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (site_id, kind, made_at) DO UPDATE SET values_kw = excluded.values_kw""",
            (site_id, kind, start, start, [round(float(v), 4) for v in values]))


def store_plan(conn: psycopg.Connection, site_id: int, start: datetime, made: plan.Plan | None,
               error: str | None = None) -> int:
    """Keep a plan, or the reason no plan could be made at ``start``; return its id."""
    body = made.to_json() if made else None
    return conn.execute(
        """INSERT INTO dispatch_plans (site_id, made_at, start, status, error, expected_cost,
                                       cost_without_battery, solve_ms, plan)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (site_id, made_at) DO UPDATE SET
               status = excluded.status, error = excluded.error, plan = excluded.plan,
               expected_cost = excluded.expected_cost, solve_ms = excluded.solve_ms,
               cost_without_battery = excluded.cost_without_battery,
               revision = nextval('dispatch_plan_revisions')
           RETURNING id""",
        (site_id, start, start, "planned" if made else "failed", error,
         made.expected_cost if made else None, made.cost_without_battery if made else None,
         made.solve_s * 1000 if made else None, Jsonb(body) if body else None)).fetchone()["id"]


def drop_old(conn: psycopg.Connection, older_than: datetime) -> dict[str, int]:
    """Delete forecasts and plans made before ``older_than`` (their deliveries go with them)."""
    forecasts = conn.execute("DELETE FROM dispatch_forecasts WHERE made_at < %s",
                             (older_than,)).rowcount
    plans = conn.execute("DELETE FROM dispatch_plans WHERE made_at < %s", (older_than,)).rowcount
    return {"forecasts_deleted": forecasts, "plans_deleted": plans}


def latest_plan(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> dict | None:
    """The newest stored plan (or failure) of a visible site."""
    fleet.get_site(conn, scope, site_id)
    return conn.execute("""SELECT * FROM dispatch_plans WHERE site_id = %s
                           ORDER BY made_at DESC LIMIT 1""", (site_id,)).fetchone()


def forecast_accuracy(conn: psycopg.Connection, scope: AccessScope, site_id: int, day: date,
                      *, now: datetime | None = None) -> dict[str, forecast.DayAccuracy | None]:
    """MAE and normalised MAE of the day-ahead forecasts (made by local midnight) of a day."""
    site = fleet.get_site(conn, scope, site_id)
    tz = ZoneInfo(site["timezone"])
    begin = datetime.combine(day, time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    measured = energy_flows(energy.site_energy(conn, scope, site_id, begin, end,
                                               now=now or datetime.now(UTC)))
    result: dict[str, forecast.DayAccuracy | None] = {}
    for kind in ("load", "pv"):
        row = conn.execute(
            """SELECT start, values_kw FROM dispatch_forecasts
               WHERE site_id = %s AND kind = %s AND made_at <= %s
               ORDER BY made_at DESC LIMIT 1""", (site_id, kind, begin)).fetchone()
        if row is None:
            result[kind] = None
            continue
        made = Series(row["start"], np.array(row["values_kw"], dtype=float))
        made = Series(begin, made.window(begin, round((end - begin) / STEP)))
        days = forecast.daily_accuracy(made, _kw(measured, kind, begin), site["timezone"])
        result[kind] = next((item for item in days if item.day == day), None)
    return result
