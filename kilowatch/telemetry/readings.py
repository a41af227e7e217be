"""Read points as readings with their own times, from whichever table is complete where.

A reading row is one bucket of a device's point: its first and last readings
with their times (``ft``, ``fv``, ``lt``, ``lv``), the average and, for hourly
rows, the counter ``rise`` inside the hour. Raw rows of the spans that
:mod:`kilowatch.telemetry.coverage` sends to raw are grouped by minute into the
same shape, so a consumer never knows (nor cares) which table a row came from.
:func:`readings_sql` adds, per (device, point), the last reading before the range
and the first one after it (within :data:`LOOKBACK`), so that the range's edges
can be read between the readings on either side.

Rollup rows computed before their readings' times were kept count as a single
reading at the end of their bucket, as they were read then; their ``slack`` is
their bucket's width (their readings were anywhere in it), 0 for every other row.
"""

from __future__ import annotations

from datetime import timedelta

from kilowatch.telemetry.coverage import Coverage

LOOKBACK = timedelta(days=35)

_ROLLUP_ROWS = """
SELECT x.device_id, x.point_id, coalesce(x.first_time, x.bucket + {width}) AS ft,
       coalesce(x.first, x.last) AS fv, coalesce(x.last_time, x.bucket + {width}) AS lt,
       x.last AS lv, x.avg, {rise} AS rise,
       CASE WHEN x.first_time IS NULL THEN {width} ELSE interval '0' END AS slack
FROM {table} x
WHERE x.device_id = ANY(%({key}_devices)s) AND x.point_id = ANY(%(points)s)
  AND x.bucket >= %({key}_lo)s AND x.bucket < %({key}_hi)s AND x.last IS NOT NULL
"""
_RAW_ROWS = """
SELECT x.device_id, x.point_id, min(x.time) AS ft, first(x.value, x.time) AS fv,
       max(x.time) AS lt, last(x.value, x.time) AS lv, avg(x.value) AS avg, NULL::float8 AS rise,
       interval '0' AS slack
FROM telemetry x
WHERE x.device_id = ANY(%({key}_devices)s) AND x.point_id = ANY(%(points)s)
  AND x.time >= %({key}_lo)s AND x.time < %({key}_hi)s AND x.value IS NOT NULL
GROUP BY x.device_id, x.point_id, time_bucket('1 minute', x.time)
"""
_ROLLUPS = {"1h": ("telemetry_1h", "interval '1 hour'", "x.rise"),
            "1m": ("telemetry_1m", "interval '1 minute'", "NULL::float8")}

# The reading just before the range and just after it, from any table (raw rows
# hold every reading; a rollup row's readings are raw readings, so the latest
# before and the earliest after are right whichever table has them).
_EDGES = """
SELECT p.device_id, p.point_id, y.t AS ft, y.v AS fv, y.t AS lt, y.v AS lv,
       NULL::float8 AS avg, NULL::float8 AS rise, interval '0' AS slack
FROM pairs p CROSS JOIN LATERAL (
    SELECT t, v FROM (
        (SELECT coalesce(last_time, bucket + interval '1 hour') AS t, last AS v FROM telemetry_1h
         WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
           AND bucket < %(lo)s AND bucket >= %(lo)s - %(lookback)s
           AND coalesce(last_time, bucket + interval '1 hour') <= %(lo)s
         ORDER BY bucket DESC LIMIT 1)
        UNION ALL
        (SELECT coalesce(last_time, bucket + interval '1 minute'), last FROM telemetry_1m
         WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
           AND bucket < %(lo)s AND bucket >= %(lo)s - %(lookback)s
           AND coalesce(last_time, bucket + interval '1 minute') <= %(lo)s
         ORDER BY bucket DESC LIMIT 1)
        UNION ALL
        (SELECT time, value FROM telemetry
         WHERE device_id = p.device_id AND point_id = p.point_id AND value IS NOT NULL
           AND time < %(lo)s AND time >= %(lo)s - %(lookback)s
         ORDER BY time DESC LIMIT 1)
    ) z ORDER BY t DESC LIMIT 1
) y
UNION ALL
SELECT p.device_id, p.point_id, y.t, y.v, y.t, y.v, NULL::float8, NULL::float8, y.s
FROM pairs p CROSS JOIN LATERAL (
    SELECT t, v, s FROM (
        (SELECT coalesce(first_time, bucket + interval '1 hour') AS t,
                coalesce(first, last) AS v,
                CASE WHEN first_time IS NULL THEN interval '1 hour' ELSE interval '0' END AS s
         FROM telemetry_1h
         WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
           AND bucket >= %(hi)s AND bucket < %(hi)s + %(lookback)s
         ORDER BY bucket LIMIT 1)
        UNION ALL
        (SELECT coalesce(first_time, bucket + interval '1 minute'), coalesce(first, last),
                CASE WHEN first_time IS NULL THEN interval '1 minute' ELSE interval '0' END
         FROM telemetry_1m
         WHERE device_id = p.device_id AND point_id = p.point_id AND last IS NOT NULL
           AND bucket >= %(hi)s AND bucket < %(hi)s + %(lookback)s
         ORDER BY bucket LIMIT 1)
        UNION ALL
        (SELECT time, value, interval '0' FROM telemetry
         WHERE device_id = p.device_id AND point_id = p.point_id AND value IS NOT NULL
           AND time >= %(hi)s AND time < %(hi)s + %(lookback)s
         ORDER BY time LIMIT 1)
    ) z ORDER BY t LIMIT 1
) y
"""


def _span_rows(source: str, key: str) -> str:
    if source == "raw":
        return _RAW_ROWS.replace("{key}", key)
    table, width, rise = _ROLLUPS[source]
    return _ROLLUP_ROWS.format(table=table, width=width, rise=rise, key=key)


def readings_sql(coverage: Coverage, *, edges: bool = True) -> tuple[str, dict]:
    """Return the reading rows of a coverage's spans (and edge readings) and their parameters.

    The statement is a ``WITH pairs (device_id, point_id), readings AS (…)`` prefix
    for a query over ``readings``; it expects ``%(devices)s``, ``%(points)s``,
    ``%(lo)s`` and ``%(hi)s`` among the caller's parameters.
    """
    parts, params = [], {"lookback": LOOKBACK}
    for index, span in enumerate(coverage.spans):
        key = f"s{index}"
        parts.append(_span_rows(span.source, key))
        params.update({f"{key}_devices": list(span.device_ids), f"{key}_lo": span.lo,
                       f"{key}_hi": span.hi})
    if edges:
        parts.append(_EDGES)
    if not parts:
        parts.append("SELECT NULL::int AS device_id, NULL::int AS point_id, "
                     "NULL::timestamptz AS ft, NULL::float8 AS fv, NULL::timestamptz AS lt, "
                     "NULL::float8 AS lv, NULL::float8 AS avg, NULL::float8 AS rise, "
                     "NULL::interval AS slack WHERE false")
    body = " UNION ALL ".join(f"({part})" for part in parts)
    prefix = ("WITH pairs AS (SELECT d AS device_id, p AS point_id "
              "FROM unnest(%(devices)s::int[]) d, unnest(%(points)s::int[]) p), "
              f"readings AS ({body})")
    return prefix, params
