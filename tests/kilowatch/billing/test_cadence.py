"""The same site reported every 1 s, 1 min, 5 min or 15 min: the same energy and bills.

October 2026 in Paris (summer time ends on the 25th). On the 25th the meter is
replaced after its 10:00 UTC reading (its counters start again from zero) and
nothing is read from 14:00 to 17:00 UTC. Counters integrate a power that changes
every second; power-only meters report the quarter-hour averages of the same
power. The 1-minute data are stored late (below the rollups' cut), the 5-minute
data are published late, out of order and partly twice through the collector;
bills are computed while the rollups catch up (raw rows) and after.
"""

from __future__ import annotations

import json
import math
import random
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from kilowatch.access import system_scope
from kilowatch.billing import bills, savings, scenarios, tariffs
from kilowatch.telemetry import energy, rollups
from tests.collector.helpers import Publisher, count_rows, running_collector, wait_for
from tests.dashboards.savings_helpers import assign_tou, tou_structure
from tests.kilowatch.telemetry.helpers import HOUR, make_site, roll_up, store, store_late, utc

ROOT = system_scope("test")
QUARTER = timedelta(minutes=15)
MONTH = (utc(2026, 9, 30, 22), utc(2026, 10, 31, 23))  # October, local midnights
RESET = utc(2026, 10, 25, 10)
GAP = (utc(2026, 10, 25, 14), utc(2026, 10, 25, 17))
DAY = (utc(2026, 10, 24, 22), utc(2026, 10, 26, 0))  # 25 October local (25 hours)
COUNTERS = ("meter.grid.e_import", "meter.grid.e_export", "meter.load.e")
POWERS = ("meter.grid.p", "meter.load.p")
QUANTITIES = ("grid_import", "grid_export", "load")
EVERY = {"1 s": timedelta(seconds=1), "1 min": timedelta(minutes=1),
         "5 min": timedelta(minutes=5), "15 min": QUARTER}


class Profile:
    """A site's power every second over [start, end) (quarter-hour aligned), and its meters."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        seconds = np.arange(int((end - start).total_seconds()))
        hours = ((start.timestamp() + seconds) % 86400) / 3600
        load = 35 + 12 * np.sin(2 * np.pi * (hours - 9) / 24) + 6 * np.sin(seconds / 190)
        pv = np.where((hours > 6) & (hours < 18), 45 * np.sin(np.pi * (hours - 6) / 12), 0.0)
        grid = load - pv
        flows = {"meter.grid.e_import": np.maximum(grid, 0), "meter.grid.e_export":
                 np.maximum(-grid, 0), "meter.load.e": load}
        self.counted = {name: np.concatenate([[0.0], np.cumsum(kw) / 3600])
                        for name, kw in flows.items()}
        self.quarter_kw = {"meter.grid.p": grid.reshape(-1, 900).mean(axis=1),
                           "meter.load.p": load.reshape(-1, 900).mean(axis=1)}

    def _index(self, moment: datetime) -> int:
        return int((moment - self.start).total_seconds())

    def _times(self, every: timedelta) -> list[datetime]:
        step = int(every.total_seconds())
        moments = (self.start + timedelta(seconds=s)
                   for s in range(0, len(self.counted[COUNTERS[0]]), step))
        return [t for t in moments if not GAP[0] < t < GAP[1]]

    def counters(self, every: timedelta) -> dict[str, list[tuple[datetime, float]]]:
        """Counter readings every ``every``; after the reset they count from zero."""
        reset = self._index(RESET)
        readings = {}
        for name, counted in self.counted.items():
            base = counted[reset] if reset < len(counted) else 0.0
            readings[name] = [(t, counted[i] - (base if i > reset else 0.0))
                              for t in self._times(every) for i in [self._index(t)]]
        return readings

    def powers(self, every: timedelta) -> dict[str, list[tuple[datetime, float]]]:
        """Power readings every ``every``: the average of the quarter hour they fall in."""
        return {name: [(t, float(kw[min(self._index(t) // 900, len(kw) - 1)]))
                       for t in self._times(every)] for name, kw in self.quarter_kw.items()}

    def quarter_kwh(self, name: str, start: datetime) -> float:
        """The exact energy of a counter's flow over the quarter hour from ``start``."""
        counted = self.counted[name]
        return counted[self._index(start + QUARTER)] - counted[self._index(start)]


def sites(conn, kinds):
    """Create a site with one meter per name and assign them the TOU tariff."""
    made = {}
    for name in kinds:
        company, site, (meter,) = make_site(conn, timezone="Europe/Paris", name=name)
        assign_tou(conn, company, site, date(2026, 9, 1))
        made[name] = (site, meter)
    return made


def quarters(conn, site, span):
    result = energy.site_energy(conn, ROOT, site, *span)
    return {q: [i.kwh.get(q) for i in result.intervals] for q in QUANTITIES}, result


def assert_same_quarters(got, want):
    for quantity in QUANTITIES:
        assert [v is None for v in got[quantity]] == [v is None for v in want[quantity]]
        diffs = [abs(a - b) for a, b in zip(got[quantity], want[quantity], strict=True)
                 if a is not None]
        assert max(diffs, default=0.0) < 1e-6, quantity


def amounts(conn, site, *, refresh=False):
    summary = savings.month_summary(conn, ROOT, site, "2026-10", refresh=refresh)
    return {s: {p: summary["bills"][s][p] for p in bills.PARTS} for s in scenarios.SCENARIOS}


@pytest.fixture(scope="module")
def month(kw_env, settings):
    """Every cadence but 1 s over the whole month, counters and powers (see the module)."""
    from kilowatch import db

    profile = Profile(MONTH[0] - HOUR, MONTH[1] + HOUR)
    with db.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE rollup_state SET watermark = now(), done_until = now()")
        made = sites(conn, [f"{kind} {every}" for kind in ("counters", "powers")
                            for every in ("1 min", "5 min", "15 min")])
        for kind, read in (("counters", profile.counters), ("powers", profile.powers)):
            for every in ("1 min", "15 min"):
                store_late(conn, made[f"{kind} {every}"][1], read(EVERY[every]))
        published = _publish(kw_env, settings, conn, made, profile)
    return {"profile": profile, "sites": made, "published": published}


def _publish(kw_env, settings, conn, made, profile) -> int:
    """Publish the 5-minute meters late, in shuffled messages, some of them twice."""
    rng = random.Random(17)
    messages, rows = [], 0
    for kind, read in (("counters", profile.counters), ("powers", profile.powers)):
        serial = conn.execute("SELECT serial FROM devices WHERE id = %s",
                              (made[f"{kind} 5 min"][1],)).fetchone()["serial"]
        readings = read(EVERY["5 min"])
        samples = [{"ts": t.isoformat(), "v": {name: readings[name][i][1] for name in readings}}
                   for i, (t, _) in enumerate(next(iter(readings.values())))]
        rows += len(samples) * len(readings)
        rng.shuffle(samples)
        messages += [(serial, samples[i:i + 100]) for i in range(0, len(samples), 100)]
    rng.shuffle(messages)
    env = {**kw_env, "KILOWATCH_RAW_RETENTION_DAYS": "3650"}  # October stays acceptable
    with running_collector(env):
        publisher = Publisher()
        try:
            payloads = [(f"{settings.mqtt_prefix}/{serial}/telemetry",
                         json.dumps({"seq": n + 1, "samples": body}).encode())
                        for n, (serial, body) in enumerate(messages)]
            publisher.publish_many(payloads + rng.sample(payloads, 5))  # five sent twice
        finally:
            publisher.close()
        devices = [made["counters 5 min"][1], made["powers 5 min"][1]]
        wait_for(lambda: count_rows(conn, devices) == rows, what="5-minute data stored",
                 timeout_s=120)
    return rows


def test_counters_give_the_exact_quarter_hours_whatever_the_period(conn, month):
    # Outside the gap each quarter hour is the exact energy of the power that changes
    # every second; across the gap the counted energy is spread evenly and flagged.
    profile, made = month["profile"], month["sites"]
    assert conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] > 0
    reference, result = quarters(conn, made["counters 15 min"][0], MONTH)
    assert result.catching_up and len(result.intervals) == 31 * 96 + 4  # 25 hours on the 25th
    for every in ("1 min", "5 min"):
        assert_same_quarters(quarters(conn, made[f"counters {every}"][0], MONTH)[0], reference)
    for index, item in enumerate(result.intervals):
        inside = GAP[0] <= item.start < GAP[1]
        assert bool(item.gaps) == inside
        if inside:
            continue
        for name, quantity in zip(COUNTERS, QUANTITIES, strict=True):
            want = profile.quarter_kwh(name, item.start)
            assert reference[quantity][index] == pytest.approx(want, abs=1e-6), item.start


def test_the_monthly_bills_are_the_same_to_the_cent_while_and_after_catching_up(conn, month):
    made = month["sites"]
    for kind in ("counters", "powers"):
        before = {every: amounts(conn, made[f"{kind} {every}"][0])
                  for every in ("1 min", "5 min", "15 min")}
        assert before["1 min"] == before["5 min"] == before["15 min"], kind
    while rollups.recompute_late_window(conn):
        pass
    assert conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0
    for kind in ("counters", "powers"):
        after = {every: amounts(conn, made[f"{kind} {every}"][0], refresh=True)
                 for every in ("1 min", "5 min", "15 min")}
        assert after["1 min"] == after["5 min"] == after["15 min"], kind
        if kind == "counters":
            assert after["15 min"] == _independent_bills(month["profile"])


def _independent_bills(profile) -> dict:
    """Bill the profile's exact quarter hours (spread evenly across the gap) directly."""
    period = bills.billing_period("Europe/Paris", "2026-10")
    gap_quarters = int((GAP[1] - GAP[0]) / QUARTER)
    flows = []
    for start in period.slots():
        kwh = {}
        for name, quantity in zip(COUNTERS, QUANTITIES, strict=True):
            if GAP[0] <= start < GAP[1]:
                total = profile.counted[name][profile._index(GAP[1])] - profile.counted[
                    name][profile._index(GAP[0])]
                kwh[quantity] = total / gap_quarters
            else:
                kwh[quantity] = profile.quarter_kwh(name, start)
        flows.append(scenarios.Flow(start, kwh["grid_import"], kwh["grid_export"], kwh["load"],
                                    0.0))
    result = scenarios.compute_bills(tariffs.parse(tou_structure()), flows, period)
    return {s: {p: getattr(result[s], p) for p in bills.PARTS} for s in scenarios.SCENARIOS}


def test_powers_give_the_same_quarter_hours_whatever_the_period(conn, month):
    made = month["sites"]
    reference, result = quarters(conn, made["powers 15 min"][0], MONTH)
    assert result.methods["grid_import"] == "power"
    for every in ("1 min", "5 min"):
        assert_same_quarters(quarters(conn, made[f"powers {every}"][0], MONTH)[0], reference)


def test_one_second_readings_give_the_same_day_as_every_other_period(conn):
    # The 25 October (25 hours, the reset, the gap) reported every second, minute, five
    # minutes and quarter hour: the same quarter hours, and the same October bills.
    profile = Profile(DAY[0] - HOUR, DAY[1] + HOUR)
    made = sites(conn, [f"{kind} {every} (day)" for kind in ("counters", "powers")
                        for every in EVERY])
    for kind, read in (("counters", profile.counters), ("powers", profile.powers)):
        for every in EVERY:
            site, meter = made[f"{kind} {every} (day)"]
            store(conn, meter, read(EVERY[every]))
            roll_up(conn, [meter], DAY[0] - HOUR, DAY[1] + HOUR)
    for kind in ("counters", "powers"):
        reference = quarters(conn, made[f"{kind} 15 min (day)"][0], DAY)[0]
        assert not any(v is None for v in reference["grid_import"][:16])
        bill = amounts(conn, made[f"{kind} 15 min (day)"][0])
        for every in ("1 s", "1 min", "5 min"):
            site = made[f"{kind} {every} (day)"][0]
            assert_same_quarters(quarters(conn, site, DAY)[0], reference)
            assert amounts(conn, site) == bill, (kind, every)
    assert math.isfinite(bill["actual"]["total"])

