"""A 30-day backfill arriving late: every chart and energy figure right while rolling up, and after.

Three devices on two sites in Paris publish 30 days of history (a reading every
5 minutes) through the collector into a database whose rollups are already at
the present, so all of it is late data. While the worker has rolled up only the
newest hours, and again once it is done, the charts (today, 7 and 30 days), the
daily energy bars and the fleet table's today equal what the readings say.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from kilowatch.access import system_scope
from kilowatch.redis_client import get_redis
from kilowatch.telemetry import history, overview, rollups
from tests.collector.helpers import Publisher, count_rows, running_collector, wait_for
from tests.kilowatch.telemetry.helpers import make_site

ROOT = system_scope("test")
PARIS = ZoneInfo("Europe/Paris")
EVERY = timedelta(minutes=5)
DAYS = 30
CHART_POINTS = ["meter.grid.p", "pcs.p", "bms.soc"]


def flows(device: int, t: datetime) -> dict[str, float]:
    """The powers (kW) a device holds for the 5 minutes from ``t``."""
    hour = t.hour + t.minute / 60
    pv = max(0.0, 30 * math.sin(math.pi * (hour - 6) / 12)) if 6 < hour < 18 else 0.0
    load = 20 + 8 * math.sin(2 * math.pi * hour / 24) + (t.minute // 5) % 7 + device
    battery = 10.0 if 17 <= hour < 21 else -8.0 if 10 <= hour < 14 else 0.0
    return {"pv": pv, "load": load, "battery": battery, "grid": load - pv - battery}


class Fleet:
    """The readings of the fleet: per device, (time, {point: value}) every 5 minutes."""

    def __init__(self, end: datetime) -> None:
        start = end - timedelta(days=DAYS)
        self.times = [start + k * EVERY for k in range(int((end - start) / EVERY))]
        self.samples: dict[str, list] = defaultdict(list)
        totals: dict[str, float] = defaultdict(float)
        for t in self.times:
            for role in ("meter", "hes_a", "hes_b"):
                f = flows(len(role), t)
                values = self._values(role, f, totals)
                self.samples[role].append((t, values))
                for name, kwh in self._increments(role, f).items():
                    totals[f"{role}:{name}"] += kwh

    @staticmethod
    def _values(role: str, f: dict, totals: dict) -> dict[str, float]:
        def total(name):
            return round(totals[f"{role}:{name}"], 9)
        if role == "meter":
            return {"meter.grid.p": f["grid"], "meter.pv.p": f["pv"],
                    "meter.grid.e_import": total("meter.grid.e_import"),
                    "meter.grid.e_export": total("meter.grid.e_export"),
                    "meter.pv.e": total("meter.pv.e"), "meter.load.e": total("meter.load.e")}
        return {"pcs.p": f["battery"], "bms.soc": 50 + 20 * math.sin(f["load"]),
                "pcs.e_charge": total("pcs.e_charge"),
                "pcs.e_discharge": total("pcs.e_discharge")}

    @staticmethod
    def _increments(role: str, f: dict) -> dict[str, float]:
        hours = EVERY / timedelta(hours=1)
        if role == "meter":
            return {"meter.grid.e_import": max(f["grid"], 0) * hours,
                    "meter.grid.e_export": max(-f["grid"], 0) * hours,
                    "meter.pv.e": f["pv"] * hours, "meter.load.e": f["load"] * hours}
        return {"pcs.e_charge": max(-f["battery"], 0) * hours,
                "pcs.e_discharge": max(f["battery"], 0) * hours}

    def energy(self, role: str, name: str, start: datetime, end: datetime) -> float:
        """kWh counted by a counter from ``start`` to ``end`` (both on its readings)."""
        values = {t: v[name] for t, v in self.samples[role]}
        return values[end] - values[start]


@pytest.fixture(scope="module")
def backfill(kw_env, settings):
    """Register the fleet, publish 30 days late through the collector."""
    from kilowatch import db

    end = datetime.now(UTC).replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % 5)
    fleet = Fleet(end + EVERY)
    with db.connect(settings.database_url, autocommit=True) as conn:
        # The rollups are at the present (a little past the backfill's end).
        conn.execute("UPDATE rollup_state SET watermark = %s, done_until = %s",
                     (end + 2 * EVERY, end + 2 * EVERY))
        _, site_a, (meter, hes_a) = make_site(conn, "Europe/Paris", ("meter", "HES-L"), "A")
        _, site_b, (hes_b,) = make_site(conn, "Europe/Paris", ("HES-L",), "B")
        devices = {"meter": meter, "hes_a": hes_a, "hes_b": hes_b}
        serials = {role: conn.execute("SELECT serial FROM devices WHERE id = %s",
                                      (d,)).fetchone()["serial"] for role, d in devices.items()}
        with running_collector(kw_env):
            publisher = Publisher()
            try:
                publisher.publish_many(_messages(settings, fleet, serials))
            finally:
                publisher.close()
            total = sum(len(s) * len(s[0][1]) for s in fleet.samples.values())
            wait_for(lambda: count_rows(conn, devices.values()) == total, what="backfill stored",
                     timeout_s=180)
    return {"fleet": fleet, "devices": devices, "sites": {"A": site_a, "B": site_b},
            "end": end}


def _messages(settings, fleet: Fleet, serials: dict[str, str]) -> list[tuple[str, bytes]]:
    messages = []
    for role, samples in fleet.samples.items():
        for seq, start in enumerate(range(0, len(samples), 1000), start=1):
            body = {"seq": seq, "samples": [{"ts": t.isoformat(), "v": v}
                                            for t, v in samples[start:start + 1000]]}
            messages.append((f"{settings.mqtt_prefix}/{serials[role]}/telemetry",
                             json.dumps(body).encode()))
    return messages


def expected_chart(fleet: Fleet, roles: list[str], point: str, start: datetime, end: datetime,
                   width: timedelta) -> dict[datetime, float]:
    """Per bucket from the site's local midnight: device averages, summed (SoC averaged)."""
    origin = datetime.combine(start.astimezone(PARIS).date(), time(), PARIS)
    per_device: dict[str, dict[datetime, list]] = {r: defaultdict(list) for r in roles}
    for role in roles:
        for t, values in fleet.samples[role]:
            if point in values and start <= t < end:
                per_device[role][origin + (t - origin) // width * width].append(values[point])
    buckets = sorted({b for d in per_device.values() for b in d})
    combine = (lambda xs: sum(xs) / len(xs)) if point == "bms.soc" else sum
    return {b.astimezone(UTC): combine([sum(d[b]) / len(d[b]) for d in per_device.values()
                                        if b in d]) for b in buckets}


def check_charts(conn, backfill):
    fleet, end = backfill["fleet"], backfill["end"]
    for key in ("today", "7d", "30d"):
        lo, hi = history.time_range(key, "Europe/Paris")
        hi = min(hi, end + timedelta(minutes=1))
        result = history.site_history(conn, ROOT, backfill["sites"]["A"], CHART_POINTS, lo, hi,
                                      resolution=history.choose_resolution(*history.time_range(
                                          key, "Europe/Paris")))
        for point in CHART_POINTS:
            want = expected_chart(fleet, ["meter", "hes_a"], point, lo, hi,
                                  result.resolution.width)
            series = result.series[point]
            assert series.times == list(want), (key, point)  # no hole, no extra bucket
            assert series.avg == pytest.approx(list(want.values()), rel=1e-9), (key, point)


def check_energy(conn, backfill):
    fleet, end = backfill["fleet"], backfill["end"]
    lo, hi, step = history.energy_window(*history.time_range("30d", "Europe/Paris"),
                                         "Europe/Paris")
    bars = history.energy_bars(conn, ROOT, backfill["sites"]["A"], lo, hi, step)
    first = fleet.times[0]
    for item in bars.intervals:
        a, b = max(item.start, first), min(item.end, end)
        if a >= b:
            assert all(v is None for v in item.kwh.values()), item.start
            continue
        for quantity, role, name in (("grid_import", "meter", "meter.grid.e_import"),
                                     ("pv", "meter", "meter.pv.e"),
                                     ("load", "meter", "meter.load.e"),
                                     ("battery_discharge", "hes_a", "pcs.e_discharge")):
            assert item.kwh[quantity] == pytest.approx(fleet.energy(role, name, a, b),
                                                       abs=1e-6), (item.start, quantity)
    rows = overview.fleet_overview(conn, get_redis(), ROOT)
    today = next(r for r in rows if r["id"] == backfill["sites"]["A"])["today_kwh"]
    midnight = datetime.combine(end.astimezone(PARIS).date(), time(), PARIS).astimezone(UTC)
    since = max(midnight, first)
    for quantity, name in (("pv", "meter.pv.e"), ("load", "meter.load.e"),
                           ("grid_import", "meter.grid.e_import")):
        assert today[quantity] == pytest.approx(fleet.energy("meter", name, since, end),
                                                abs=1e-6), quantity


def test_charts_and_energy_are_right_while_the_rollups_catch_up(conn, backfill):
    for _ in range(3):  # the newest 18 hours are rolled up, the rest is pending
        assert rollups.recompute_late_window(conn)
    pending = conn.execute("SELECT min(lo) AS lo, max(hi) AS hi FROM rollup_pending").fetchone()
    assert pending["lo"] <= backfill["fleet"].times[0] + timedelta(minutes=1)
    assert pending["hi"] < backfill["end"] - timedelta(hours=12)
    check_charts(conn, backfill)
    check_energy(conn, backfill)


def test_charts_and_energy_are_the_same_once_rolled_up(conn, backfill):
    assert rollups.catch_up_late(conn, budget_s=300)["pending"] == 0
    check_charts(conn, backfill)
    check_energy(conn, backfill)
