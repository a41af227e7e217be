"""One window of the fleet grid, sorted and filtered in SQL, and the fleet's headline figures.

The fleet page asks for rows ``startRow``..``endRow`` with AG Grid's sort and
filter models (its infinite row model). :func:`parse_request` turns that request
into a :class:`FleetQuery` — only the columns of :data:`SORTS` and
:data:`FILTERS`, only known filter types, values checked — and raises
:class:`FleetQueryError` for anything else. :func:`fleet_window` runs it as one
parameterised query inside the caller's scope (status from ``devices.online``,
which the collector and the offline job keep; active alarms from the partial
index), then reads live values and today's energy for the rows of the window
only. :func:`fleet_summary` counts the whole scope in SQL and sums live power and
SoC inside Redis (a Lua script), whatever the window.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

import psycopg
import redis
from psycopg import sql

from kilowatch.access import AccessScope, site_filter
from kilowatch.alarms.events import SEVERITIES
from kilowatch.errors import UserFacingError
from kilowatch.redis_client import key
from kilowatch.telemetry import overview

MAX_ROWS = 500  # the grid asks for 100 at a time; nothing asks for more than this
MAX_TEXT = 200
VIEWS = ("all", "problems", "offline", "alarms")

_PROBLEMS = ["status_rank", ("critical", "DESC"), ("major", "DESC"), ("minor", "DESC"),
             ("warning", "DESC")]
# grid column id → ORDER BY terms (column of the row query, direction when sorted ascending)
SORTS = {
    "status_text": [*_PROBLEMS, "lower_name", "id"],
    "alarms": [("alarm_count", "DESC"), *_PROBLEMS[1:], "lower_name", "id"],
    "name": ["lower_name", "id"],
    "company": ["lower_company", "lower_name", "id"],
    "last_seen": [("last_seen", "DESC NULLS LAST"), "lower_name", "id"],
}
# grid column id → (filter type, column of the row query)
FILTERS = {"name": ("text", "name"), "company": ("text", "company_name"),
           "alarms": ("number", "alarm_count")}
_TEXT_OPS = {"contains": ("ILIKE", "%{}%"), "notContains": ("NOT ILIKE", "%{}%"),
             "startsWith": ("ILIKE", "{}%"), "endsWith": ("ILIKE", "%{}"),
             "equals": ("ILIKE", "{}"), "notEqual": ("NOT ILIKE", "{}")}
_NUMBER_OPS = {"equals": "=", "notEqual": "<>", "greaterThan": ">",
               "greaterThanOrEqual": ">=", "lessThan": "<", "lessThanOrEqual": "<="}
_VIEW_SQL = {"all": "TRUE", "offline": "r.devices > r.online",
             "alarms": "r.alarm_count > 0",
             "problems": "(r.devices > r.online OR r.alarm_count > 0)"}
_FLIP = {"ASC": "DESC", "DESC": "ASC", "DESC NULLS LAST": "ASC NULLS FIRST"}

_ROWS_SQL = """
WITH site_rows AS (
    SELECT s.id, s.name, lower(s.name) AS lower_name, s.timezone, c.name AS company_name,
           lower(c.name) AS lower_company, dv.devices, dv.online, dv.last_seen,
           dv.offline_since, al.critical, al.major, al.minor, al.warning,
           al.critical + al.major + al.minor + al.warning AS alarm_count,
           CASE WHEN dv.devices = 0 OR dv.online = dv.devices THEN 2
                WHEN dv.online = 0 THEN 0 ELSE 1 END AS status_rank
    FROM sites s JOIN companies c ON c.id = s.company_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS devices, count(*) FILTER (WHERE d.online) AS online,
               max(d.last_seen) AS last_seen,
               max(d.last_seen) FILTER (WHERE NOT d.online) AS offline_since
        FROM devices d WHERE d.site_id = s.id) dv
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE a.severity = 'critical') AS critical,
               count(*) FILTER (WHERE a.severity = 'major') AS major,
               count(*) FILTER (WHERE a.severity = 'minor') AS minor,
               count(*) FILTER (WHERE a.severity = 'warning') AS warning
        FROM alarms a WHERE a.site_id = s.id AND a.cleared_at IS NULL) al
    WHERE {scope}
)
SELECT r.*, count(*) OVER () AS total FROM site_rows r
WHERE {where}
ORDER BY {order}
LIMIT %(limit)s OFFSET %(offset)s
"""

_DEVICES_SQL = """
SELECT d.id, d.site_id, d.online, d.last_seen, d.capacity_kwh
FROM devices d JOIN sites s ON s.id = d.site_id
WHERE d.site_id = ANY(%(sites)s) AND {scope}
ORDER BY d.id
"""

_SUMMARY_SQL = """
SELECT count(*) AS sites, count(DISTINCT s.company_id) AS companies,
       count(*) FILTER (WHERE dv.devices > 0 AND dv.online = dv.devices) AS online,
       count(*) FILTER (WHERE dv.devices > dv.online) AS down,
       coalesce(sum(al.alarms), 0) AS alarms, coalesce(sum(al.critical), 0) AS critical
FROM sites s
CROSS JOIN LATERAL (
    SELECT count(*) AS devices, count(*) FILTER (WHERE d.online) AS online
    FROM devices d WHERE d.site_id = s.id) dv
CROSS JOIN LATERAL (
    SELECT count(*) AS alarms, count(*) FILTER (WHERE a.severity = 'critical') AS critical
    FROM alarms a WHERE a.site_id = s.id AND a.cleared_at IS NULL) al
WHERE {scope}
"""

# Two arrays rather than a row per device: 10,000 rows cost the client more than the query.
_SCOPE_DEVICES_SQL = """
SELECT coalesce(array_agg(d.id), '{{}}') AS ids,
       coalesce(array_agg(coalesce(d.capacity_kwh, 1.0)), '{{}}') AS capacities
FROM devices d JOIN sites s ON s.id = d.site_id
WHERE d.online AND {scope}
"""


# Sums over many live hashes inside Redis: one answer instead of a reply per device,
# which is what costs the client most. Devices marked offline do not count; values
# that are not finite numbers are skipped, as parse_number does.
_TOTALS_PER_CALL = 2000
_TOTALS_SCRIPT = """
local function finite(text)
  local x = tonumber(text)
  if x and x == x and x ~= math.huge and x ~= -math.huge then return x end
end
local pv, pv_n, battery, battery_n, soc, weight = 0, 0, 0, 0, 0, 0
for i, name in ipairs(KEYS) do
  local v = redis.call('HMGET', name, '_online', 'bms.soc', 'PV', 'BATTERY')
  if v[1] ~= '0' then
    local x = finite(v[3])
    if x then pv = pv + x; pv_n = pv_n + 1 end
    x = finite(v[4])
    if x then battery = battery + x; battery_n = battery_n + 1 end
    x = finite(v[2])
    if x then soc = soc + x * tonumber(ARGV[i]); weight = weight + tonumber(ARGV[i]) end
  end
end
return {tostring(pv), tostring(pv_n), tostring(battery), tostring(battery_n),
        tostring(soc), tostring(weight)}
""".replace("PV", overview.POWER_POINTS["pv_kw"]).replace(
    "BATTERY", overview.POWER_POINTS["battery_kw"])


class FleetQueryError(UserFacingError, ValueError):
    """The grid asked for a sort, filter or window the fleet page does not offer."""


@dataclasses.dataclass(frozen=True)
class FleetQuery:
    """What one grid request asks for: a view, a search, filters, a sort and a window."""

    view: str = "all"
    search: str = ""
    filters: tuple[tuple[str, dict], ...] = ()  # (column id, checked filter model)
    sort: tuple[str, str] = ("status_text", "asc")
    offset: int = 0
    limit: int = 100


@dataclasses.dataclass(frozen=True)
class FleetWindow:
    """The rows of one window of the grid and how many rows match in all."""

    rows: list[dict]
    total: int


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise FleetQueryError(f"{what} must be text of at most {MAX_TEXT} characters")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value):
        raise FleetQueryError(f"{what} must be a number")
    return float(value)


def _row_index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise FleetQueryError(f"{what} must be a row number")
    return value


def _known(value: object, options: dict) -> bool:
    return isinstance(value, str) and value in options


def _condition(column: str, model: object) -> dict:
    """Check one filter condition of ``column``; return it with only the known keys."""
    kind = FILTERS[column][0]
    if not isinstance(model, dict) or model.get("filterType") != kind:
        raise FleetQueryError(f"the {column} column only has a {kind} filter")
    op = model.get("type")
    if kind == "text":
        if not _known(op, _TEXT_OPS):
            raise FleetQueryError(f"unknown text filter {op!r} on {column}")
        return {"type": op, "filter": _text(model.get("filter"), f"the {column} filter")}
    if op == "inRange":
        return {"type": op, "filter": _number(model.get("filter"), f"the {column} filter"),
                "filterTo": _number(model.get("filterTo"), f"the {column} filter's end")}
    if not _known(op, _NUMBER_OPS):
        raise FleetQueryError(f"unknown number filter {op!r} on {column}")
    return {"type": op, "filter": _number(model.get("filter"), f"the {column} filter")}


def _filter(column: object, model: object) -> tuple[str, dict]:
    if column not in FILTERS:
        raise FleetQueryError(f"the fleet grid cannot filter by {column!r}")
    if isinstance(model, dict) and "conditions" in model:
        conditions = model["conditions"]
        if model.get("operator") not in ("AND", "OR") or not isinstance(
                conditions, list) or not 1 <= len(conditions) <= 2:
            raise FleetQueryError(f"the {column} filter joins one or two conditions "
                                  "with AND or OR")
        return column, {"operator": model["operator"],
                        "conditions": [_condition(column, c) for c in conditions]}
    return column, _condition(column, model)


def parse_request(request: object, *, search: object = "", view: object = "all") -> FleetQuery:
    """Check AG Grid's ``getRowsRequest`` (and the page's search and view) into a query."""
    if not isinstance(request, dict):
        raise FleetQueryError("the grid's request is not an object")
    start = _row_index(request.get("startRow", 0), "startRow")
    end = _row_index(request.get("endRow", start + 100), "endRow")
    if end <= start:
        raise FleetQueryError("endRow must come after startRow")
    sort_model = request.get("sortModel") or []
    if not isinstance(sort_model, list) or len(sort_model) > 1:
        raise FleetQueryError("the fleet grid sorts by one column at a time")
    sort = ("status_text", "asc")
    if sort_model:
        first = sort_model[0]
        if not isinstance(first, dict) or not _known(first.get("colId"), SORTS):
            column = first.get("colId") if isinstance(first, dict) else first
            raise FleetQueryError(f"the fleet grid cannot sort by {column!r}")
        if first.get("sort") not in ("asc", "desc"):
            raise FleetQueryError("a sort direction is asc or desc")
        sort = (first["colId"], first["sort"])
    filter_model = request.get("filterModel") or {}
    if not isinstance(filter_model, dict):
        raise FleetQueryError("the grid's filter model is not an object")
    if view not in VIEWS:
        raise FleetQueryError(f"unknown view {view!r}: one of {', '.join(VIEWS)}")
    return FleetQuery(view=view, search=_text(search or "", "the search").strip(),
                      filters=tuple(_filter(c, m) for c, m in sorted(filter_model.items())),
                      sort=sort, offset=start, limit=min(end - start, MAX_ROWS))


def _like(pattern: str, text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return pattern.format(escaped)


def _condition_sql(column: str, condition: dict, params: dict) -> sql.Composable:
    kind, field = FILTERS[column]
    target = sql.Identifier("r", field)
    name = f"p{len(params)}"
    if kind == "text":
        op, pattern = _TEXT_OPS[condition["type"]]
        params[name] = _like(pattern, condition["filter"])
        return sql.SQL("{} {} {}").format(target, sql.SQL(op), sql.Placeholder(name))
    params[name] = condition["filter"]
    if condition["type"] == "inRange":
        params[name + "_to"] = condition["filterTo"]
        return sql.SQL("{} BETWEEN {} AND {}").format(target, sql.Placeholder(name),
                                                       sql.Placeholder(name + "_to"))
    return sql.SQL("{} {} {}").format(target, sql.SQL(_NUMBER_OPS[condition["type"]]),
                                      sql.Placeholder(name))


def _where(query: FleetQuery, params: dict) -> sql.Composable:
    terms = [sql.SQL(_VIEW_SQL[query.view])]
    if query.search:
        params["search"] = _like("%{}%", query.search)
        terms.append(sql.SQL("(r.name ILIKE %(search)s OR r.company_name ILIKE %(search)s)"))
    for column, model in query.filters:
        conditions = model.get("conditions", [model])
        joined = sql.SQL(" OR " if model.get("operator") == "OR" else " AND ").join(
            _condition_sql(column, c, params) for c in conditions)
        terms.append(sql.SQL("({})").format(joined))
    return sql.SQL(" AND ").join(terms)


def _order(query: FleetQuery) -> sql.Composable:
    column, direction = query.sort
    terms = []
    for term in SORTS[column]:
        field, ascending = term if isinstance(term, tuple) else (term, "ASC")
        chosen = ascending if direction == "asc" else _FLIP[ascending]
        terms.append(sql.SQL("{} {}").format(sql.Identifier("r", field), sql.SQL(chosen)))
    return sql.SQL(", ").join(terms)


def _status(row: dict) -> str:
    if row["devices"] == 0:
        return "no devices"
    return ("online" if row["online"] == row["devices"]
            else "offline" if row["online"] == 0 else "partial")


def fleet_window(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope,
                 query: FleetQuery, *, now: datetime | None = None) -> FleetWindow:
    """Return one window of the visible sites, sorted and filtered, with live values."""
    now = now or datetime.now(UTC)
    params: dict = {"limit": query.limit, "offset": query.offset}
    statement = sql.SQL(_ROWS_SQL).format(scope=site_filter(scope), where=_where(query, params),
                                          order=_order(query))
    sites = conn.execute(statement, params).fetchall()
    total = sites[0]["total"] if sites else 0
    if not sites and query.offset:  # past the end: count without a window
        total = conn.execute(sql.SQL("SELECT count(*) AS n FROM ({}) q").format(
            statement), {**params, "limit": None, "offset": 0}).fetchone()["n"]
    devices = conn.execute(sql.SQL(_DEVICES_SQL).format(scope=site_filter(scope)),
                           {"sites": [s["id"] for s in sites]}).fetchall()
    by_site: dict[int, list[dict]] = {s["id"]: [] for s in sites}
    for device in devices:
        by_site[device["site_id"]].append(device)
    live = overview.read_devices_now(client, devices)
    energy = overview.today_energy(
        conn, client, scope, [{**s, "devices": by_site[s["id"]]} for s in sites], live,
        now) if devices else {}
    rows = []
    for site in sites:
        mine = by_site[site["id"]]
        summary = overview.summarize([live[d["id"]] for d in mine],
                                     {d["id"]: d["capacity_kwh"] for d in mine})
        summary.update(status=_status(site), offline_since=site["offline_since"])
        rows.append({"id": site["id"], "name": site["name"],
                     "company_name": site["company_name"], "timezone": site["timezone"],
                     "devices": site["devices"],
                     "alarms": {s: int(site[s]) for s in SEVERITIES},
                     "today_kwh": energy.get(site["id"], {}), **summary})
    return FleetWindow(rows, int(total))


def _live_totals(client: redis.Redis, ids: list[int], capacities: list[float]) -> dict:
    """Sum PV and battery power and weigh SoC by capacity over online devices, in Redis."""
    script = client.register_script(_TOTALS_SCRIPT)
    sums = [0.0] * 6  # PV, PV readings, battery, battery readings, SoC × capacity, capacity
    for start in range(0, len(ids), _TOTALS_PER_CALL):
        end = start + _TOTALS_PER_CALL
        answer = script(keys=[key("live", device) for device in ids[start:end]],
                        args=capacities[start:end])
        sums = [total + float(part) for total, part in zip(sums, answer, strict=True)]
    pv, pv_n, battery, battery_n, soc, weight = sums
    return {"pv_kw": pv if pv_n else None, "battery_kw": battery if battery_n else None,
            "soc": soc / weight if weight else None}


def fleet_summary(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope) -> dict:
    """Return the scope's headline figures: site counts by status, alarms, live power, SoC."""
    counts = conn.execute(sql.SQL(_SUMMARY_SQL).format(scope=site_filter(scope))).fetchone()
    online = conn.execute(sql.SQL(_SCOPE_DEVICES_SQL).format(
        scope=site_filter(scope))).fetchone()
    return {**{name: int(value) for name, value in counts.items()},
            **_live_totals(client, online["ids"], online["capacities"])}
