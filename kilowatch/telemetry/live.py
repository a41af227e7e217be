"""Latest values of every device in Redis, for the live views.

One hash per device, key ``key("live", device_id)`` (e.g. ``kw:live:42``):

- one field per point name (``"bms.soc"``) holding the point's latest value as text
  (``repr`` of a float, e.g. ``"55.2"``);
- ``_ts``: time of the newest sample, ISO 8601 UTC with milliseconds
  (``"2026-11-22T10:00:00.000Z"``); a batch whose newest sample is older than
  ``_ts`` (replayed history) does not overwrite the values;
- ``_last_seen``: epoch seconds (float, as text) when the platform last heard from
  the device;
- ``_online``: ``"1"`` or ``"0"``;
- ``_seq``: the highest telemetry ``seq`` written with these values.

After each batch the collector publishes on channel ``key("live")`` a JSON
notification ``{"at": epoch_s, "committed_at": epoch_s, "devices": {"42": seq}}``
naming the devices whose hashes changed, so live views can refresh without polling.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping

import orjson
import psycopg
import redis
from psycopg import sql

from kilowatch.access import AccessScope, site_filter
from kilowatch.redis_client import key
from kilowatch.settings import Settings

_FIELDS_PER_CALL = 500

# Overwrite the values only when the batch is not older than what the hash holds;
# the liveness fields are written either way. ISO UTC strings compare as text.
# The values come as one JSON object of strings (one argument instead of two per
# point: packing thousands of arguments is what costs the client most).
_WRITE_SCRIPT = """
local current = redis.call('HGET', KEYS[1], '_ts')
redis.call('HSET', KEYS[1], '_last_seen', ARGV[2], '_online', '1')
if current and current > ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], '_ts', ARGV[1], '_seq', ARGV[3])
local fields = {}
for name, value in pairs(cjson.decode(ARGV[4])) do
  fields[#fields + 1] = name
  fields[#fields + 1] = value
  if #fields >= 2 * FIELDS then
    redis.call('HSET', KEYS[1], unpack(fields))
    fields = {}
  end
end
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
return 1
""".replace("FIELDS", str(_FIELDS_PER_CALL))


def format_ts(moment: dt.datetime) -> str:
    """Format a time as the hash's ``_ts`` text (UTC, milliseconds, ``Z``)."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class LiveWriter:
    """Write device hashes and notifications through one Redis client (the collector's)."""

    def __init__(self, client: redis.Redis, *, prefix_key=key) -> None:
        self._client = client
        self._key = prefix_key
        self._script = client.register_script(_WRITE_SCRIPT)

    def write(self, updates: Mapping[int, tuple[dt.datetime, int | None, Mapping[str, float]]],
              *, last_seen: float, committed_at: float, offline: Iterable[int] = (),
              online: Iterable[int] = ()) -> None:
        """Write latest values per device (newest ts, seq, values) and publish a notification.

        ``offline`` and ``online`` list devices whose state changed without (or after)
        new values.
        """
        pipe = self._client.pipeline(transaction=False)
        for device_id, (newest, seq, values) in updates.items():
            texts = orjson.dumps(dict(zip(values.keys(), map(repr, values.values()),
                                          strict=True)))
            args = [format_ts(newest), repr(last_seen), "" if seq is None else seq, texts]
            self._script(keys=[self._key("live", device_id)], args=args, client=pipe)
        for device_id in online:
            pipe.hset(self._key("live", device_id),
                      mapping={"_online": "1", "_last_seen": repr(last_seen)})
        for device_id in offline:
            pipe.hset(self._key("live", device_id), "_online", "0")
        devices = {str(d): u[1] for d, u in updates.items()}
        pipe.publish(self._key("live"), json.dumps(
            {"at": last_seen, "committed_at": committed_at, "devices": devices}))
        pipe.execute()


def set_online(client: redis.Redis, device_id: int, online: bool, *,
               last_seen: float | None = None, settings: Settings | None = None) -> None:
    """Set a device's ``_online`` flag (and ``_last_seen`` when given)."""
    mapping = {"_online": "1" if online else "0"}
    if last_seen is not None:
        mapping["_last_seen"] = repr(last_seen)
    client.hset(key("live", device_id, settings=settings), mapping=mapping)


def _parse(raw: Mapping[str, str]) -> dict:
    values: dict[str, float] = {}
    for name, text in raw.items():
        if not name.startswith("_"):
            try:
                values[name] = float(text)
            except ValueError:
                values[name] = math.nan
    last_seen = raw.get("_last_seen")
    return {
        "values": values,
        "ts": dt.datetime.fromisoformat(raw["_ts"]) if raw.get("_ts") else None,
        "last_seen": float(last_seen) if last_seen else None,
        "online": raw.get("_online") == "1",
        "seq": int(raw["_seq"]) if raw.get("_seq") else None,
    }


def read_live(conn: psycopg.Connection, client: redis.Redis, scope: AccessScope, *,
              site_id: int | None = None, device_ids: Iterable[int] | None = None) -> dict:
    """Return device_id → {values, ts, last_seen, online, seq} for visible devices.

    Limit to one site and/or some devices; devices the caller may not see are left
    out (the database decides, not the caller).
    """
    conditions = [site_filter(scope)]
    params: list[object] = []
    if site_id is not None:
        conditions.append(sql.SQL("d.site_id = %s"))
        params.append(site_id)
    if device_ids is not None:
        conditions.append(sql.SQL("d.id = ANY(%s)"))
        params.append(sorted(set(device_ids)))
    query = sql.SQL("SELECT d.id FROM devices d JOIN sites s ON s.id = d.site_id WHERE {} "
                    "ORDER BY d.id").format(sql.SQL(" AND ").join(conditions))
    ids = [r["id"] for r in conn.execute(query, params).fetchall()]
    pipe = client.pipeline(transaction=False)
    for device_id in ids:
        pipe.hgetall(key("live", device_id))
    return {device_id: _parse(raw) for device_id, raw in zip(ids, pipe.execute(), strict=True)}
