"""The device's built-in program: night charge, daytime self-consumption, evening peak shaving."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kilowatch.billing import bills, scenarios, urdb
from simulator.controller import BuiltInProgram, default_controller
from simulator.model import SiteModel
from simulator.sites import make_sites

SUNRIDGE = Path(__file__).parents[1] / "kilowatch" / "data" / "urdb_sunridge.json"
STEP_S = 300.0


def run(site, start: datetime, end: datetime) -> list:
    """Samples of a site under its built-in program, every 5 minutes from start to end."""
    model = SiteModel(site, default_controller(site))
    t, samples = start.timestamp(), []
    while t < end.timestamp():
        t += STEP_S
        samples.append(model.step(t, STEP_S))
    return samples


def local_hour(site, sample) -> tuple[int, float]:
    """(weekday, hour) of a sample in the site's zone (the mode is chosen at that time)."""
    local = datetime.fromtimestamp(sample.t, ZoneInfo(site.timezone))
    return local.weekday(), local.hour + local.minute / 60


@pytest.fixture(scope="module")
def weeks():
    """Two weeks (from a Monday) of four sites in winter and in summer."""
    runs = []
    for site in make_sites(4, seed=13):
        for first in ("2026-01-05", "2026-07-06"):
            start = datetime.fromisoformat(first).replace(tzinfo=ZoneInfo(site.timezone))
            runs.append((site, BuiltInProgram(site), run(site, start, start + timedelta(14))))
    return runs


def test_weekday_nights_charge_slowly_from_the_grid_up_to_60_percent(weeks):
    for site, program, samples in weeks:
        night = [s for s in samples if local_hour(site, s)[0] < 5 and local_hour(site, s)[1] < 6]
        rate = program.night_charge["power_kw"]
        assert rate == min(site.rated_power_kw, site.capacity_kwh / 8)
        charging = [s for s in night if s.values["pcs.p"] < 0]
        assert charging, site.name
        assert all(s.values["pcs.p"] >= -rate - 1e-9 for s in night)
        assert max(s.values["bms.soc"] for s in charging) == pytest.approx(60, abs=1e-6)
        dark = [s for s in charging if local_hour(site, s)[1] < 4]
        assert dark and all(s.values["meter.pv.p"] == 0 for s in dark)  # from the grid


def test_evening_peak_shaving_caps_the_import_and_never_buys_to_recharge(weeks):
    shaved = 0
    for site, program, samples in weeks:
        limit = program.evening["grid_limit_kw"]
        assert limit == pytest.approx(site.load_peak_kw / 2, abs=0.05)
        evening = [s for s in samples
                   if local_hour(site, s)[0] < 5 and 16 <= local_hour(site, s)[1] < 22]
        assert all(s.values["pcs.p"] >= 0 for s in evening)
        for sample in evening:
            if sample.values["bms.soc"] > 10 + 1e-6:  # energy left: the import stays capped
                assert sample.values["meter.grid.p"] <= limit + 1e-6
            shaved += sample.values["pcs.p"] > 0
    assert shaved > 100


def test_days_keep_half_the_battery_for_the_evening_and_weekends_never_buy_to_charge(weeks):
    for site, _, samples in weeks:
        for sample in samples:
            weekday, hour = local_hour(site, sample)
            v = sample.values
            if weekday < 5 and 6 <= hour < 16 and v["pcs.p"] > 0:
                assert v["bms.soc"] >= 50 - 1e-6
            if weekday >= 5 and v["pcs.p"] < 0:  # charging only from PV surplus
                assert -v["pcs.p"] <= v["meter.pv.p"] - v["meter.load.p"] + 1e-6
            if weekday < 5 and hour >= 22:
                assert v["pcs.p"] == 0
    socs = [s.values["bms.soc"] for _, _, samples in weeks for s in samples]
    assert min(socs) >= 10 - 1e-9 and max(socs) <= 95 + 1e-9


def test_the_program_is_the_same_for_the_same_seed():
    first, again, other = (BuiltInProgram(make_sites(3, seed=s)[2]) for s in (5, 5, 6))
    moment = datetime(2026, 3, 3, 18, tzinfo=UTC)
    assert vars(first) == vars(again) and first.mode_at(moment) == again.mode_at(moment)
    assert first.evening != other.evening


def month_flows(site, year: int, month: int) -> tuple[bills.BillingPeriod, list[scenarios.Flow]]:
    """Simulate a billing month (after a few days' warm-up) and sum it per 15 minutes."""
    period = bills.BillingPeriod(site.timezone, year, month)
    samples = run(site, period.start - timedelta(days=3), period.end)
    energy = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for sample in samples:
        start = datetime.fromtimestamp(sample.t - STEP_S, UTC)
        slot = start.replace(minute=start.minute // 15 * 15, second=0)
        grid, hours = sample.values["meter.grid.p"], STEP_S / 3600
        for index, kw in enumerate((max(grid, 0), max(-grid, 0), sample.values["meter.load.p"],
                                    sample.values["meter.pv.p"])):
            energy[slot][index] += kw * hours
    return period, [scenarios.Flow(slot, *kwh) for slot, kwh in energy.items()
                    if period.start <= slot < period.end]


def test_storage_saves_money_on_a_time_of_use_tariff_with_demand_charges():
    tariff = urdb.import_urdb(json.loads(SUNRIDGE.read_text()))
    totals = defaultdict(float)
    for site in make_sites(3, seed=1):
        site_total = 0.0
        for month in (1, 7):
            period, flows = month_flows(site, 2026, month)
            saved = scenarios.savings(scenarios.compute_bills(tariff, flows, period))["storage"]
            site_total += saved["total"]
            for part, amount in saved.items():
                totals[part] += amount
        assert site_total > 0, site.name
    assert totals["energy"] > 0 and totals["demand"] > 0 and totals["total"] > 0
