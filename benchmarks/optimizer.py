"""Measure what the dispatch optimiser saves on simulated sites, and how fast it re-plans.

For each simulated site (``simulator/sites.py``, load and PV from ``simulator/physics.py``
minute by minute) and each tariff below, one month is run four ways and each month is
billed by the bill engine (``kilowatch.billing.scenarios.compute_bills``):

- self-consumption all month (SoC 10-95 %);
- the best fixed time-of-use schedule: the cheapest bill among a grid of weekly
  schedules (charge from the grid in the cheapest hours at 0, ¼, ½ or all of the
  rating; discharge or peak-shave at three limits in the dearest hours;
  self-consumption or idle otherwise), chosen with hindsight;
- the optimiser, receding horizon: every 15 minutes forecasts (load and PV, from the
  history up to then) and a 48-hour plan; the battery runs the first step's mode
  minute by minute on the real load and PV;
- the perfect-foresight optimum: the same LP over the whole month with the real
  15-minute load and PV, the lower bound.

Savings are against the same month without storage (the ``pv_only`` bill). Then
it times re-planning a fleet of sites (forecast + plan) on ``--workers`` processes:
the first run of a day (PV model fitted, clear sky computed) and the runs after it.

    uv run python benchmarks/optimizer.py [--sites 3] [--days 30] [--fleet 1000] [--oracle]

``--oracle`` gives the optimiser the real load and PV instead of forecasts, to
separate what forecast errors cost from what receding-horizon control costs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import optimizer_sim as sim
from kilowatch.billing import bills, tariffs
from kilowatch.dispatch import forecast, optimizer, plan, solar
from kilowatch.dispatch.forecast import Series
from simulator.sites import make_sites


def _table(peak_hours, mid_hours=range(0)):
    """12×24 periods: 0 off-peak, 1 mid, 2 peak."""
    return [[2 if h in peak_hours else 1 if h in mid_hours else 0 for h in range(24)]
            for _ in range(12)]


def _tariff(rates, *, export, demand=None, flat_kw=None):
    weekday = _table(range(16, 21), range(7, 16))
    structure = {
        "currency": "USD",
        "energy": {"periods": [{"label": label, "tiers": [{"rate": rate}]}
                               for label, rate in zip(("off-peak", "mid", "peak"), rates,
                                                      strict=True)],
                   "weekday": weekday, "weekend": _table(range(0), range(7, 22))},
        "export": export,
    }
    if flat_kw is not None:
        structure["flat_demand"] = {"periods": [{"tiers": [{"rate": flat_kw}]}],
                                    "months": [0] * 12}
    if demand is not None:
        structure["demand"] = {
            "periods": [{"label": "none", "tiers": [{"rate": 0.0}]},
                        {"label": "on-peak", "tiers": [{"rate": demand}]}],
            "weekday": [[1 if 16 <= h < 21 else 0 for h in range(24)] for _ in range(12)],
            "weekend": [[0] * 24 for _ in range(12)]}
    return tariffs.parse(structure)


TARIFFS = {
    "time-of-use (net metering)": _tariff(
        (0.12, 0.22, 0.42), export={"compensation": "net_metering", "rate": 0.04}),
    "time-of-use + demand charges": _tariff(
        (0.10, 0.14, 0.22), export={"compensation": "net_billing", "rate": 0.04},
        flat_kw=12.0, demand=9.0),
    "net billing (hourly netting)": _tariff(
        (0.12, 0.22, 0.42), export={"compensation": "net_billing", "rate": 0.05,
                                    "netting": "hourly"}),
}


def run_site(job):
    """All strategies of one site and one tariff: bills and timings."""
    site, name, label, days, follow, oracle = job
    tariff = TARIFFS[name]
    period = bills.billing_period(site.timezone, label)
    start = period.start - timedelta(days=sim.HISTORY_DAYS)
    wx = sim.weather(site, start, sim.HISTORY_DAYS + period.days + 3)
    offset, steps = sim.month_offset(period, wx), min(days, period.days) * 96
    minutes, until = steps * 15, period.start + timedelta(minutes=steps * 15)

    def bill(battery_kw):
        return sim.bill_of(tariff, period, sim.flows(wx, offset, battery_kw), until)

    pv_only, _ = bill(np.zeros(minutes))
    self_run = sim.simulate(site, wx, offset, minutes,
                            lambda _k: ("self_consumption", {"soc_min": sim.SOC_MIN,
                                                             "soc_max": sim.SOC_MAX}))
    fixed_bill, fixed_desc = sim.fixed_schedules(site, tariff, period, wx, offset, minutes, until)
    began = time.perf_counter()
    receding = sim.receding_horizon(site, tariff, period, wx, offset, steps, follow, oracle)
    receding_s = time.perf_counter() - began
    pf_bill, pf_s = sim.perfect_foresight(site, tariff, period, wx, offset, steps, until)
    return {"site": site.serial, "tariff": name, "pv_only": pv_only,
            "self": bill(self_run.battery_kw)[1], "fixed": fixed_bill, "fixed_desc": fixed_desc,
            "optimizer": bill(receding.battery_kw)[1], "perfect": pf_bill, "pf_solve_s": pf_s,
            "plan_s": receding.plan_s, "plan_cpu_s": receding.plan_cpu_s,
            "solve_s": receding.solve_s,
            "failures": receding.failures, "receding_s": receding_s,
            "load_nmae": np.mean(receding.load_mae) / wx.load.mean(),
            "pv_nmae": np.mean(receding.pv_mae) / max(wx.pv.mean(), 1e-9)}


def fleet_chunk(job):
    """Re-plan a share of the fleet twice: cold (PV fit, clear sky) then warm; times."""
    sites, label, seed = job
    period = bills.billing_period("UTC", label)
    now = period.start + timedelta(days=10, hours=9)
    start = now - timedelta(days=sim.HISTORY_DAYS)
    profiles = []  # four real sites' 15-minute load and PV, scaled to each site of the fleet
    for spec in make_sites(4, seed + 1):
        wx = sim.weather(spec, start, sim.HISTORY_DAYS)  # the fit reads the last 14 days
        profiles.append((spec, wx.load15, wx.pv15))
    names, models, results = list(TARIFFS), {}, {}
    for phase in ("cold", "warm"):
        began, began_cpu, per_site = time.perf_counter(), time.process_time(), []
        for number, site in enumerate(sites):
            spec, load, pv = profiles[number % len(profiles)]
            one = time.perf_counter()
            history_l = Series(start, load * site.load_peak_kw / spec.load_peak_kw)
            history_p = Series(start, pv * site.pv_peak_kw / spec.pv_peak_kw)
            if phase == "cold":  # the first run of a day fits the PV model; later runs reuse it
                fit_from = now - timedelta(days=14)
                models[site.serial] = solar.fit_pv(
                    Series(fit_from, history_p.window(fit_from, 14 * 96)), site.latitude,
                    site.longitude)
            n, tariff = forecast.HORIZON_STEPS, TARIFFS[names[number % len(names)]]
            problem = optimizer.Problem(
                tariff=tariff, timezone=site.timezone, starts=forecast.step_starts(now, n),
                load_kw=forecast.forecast_load(history_l, site.timezone, now),
                pv_kw=solar.forecast_pv(models[site.serial], history_p, now, n,
                                        quantile=plan.pv_quantile(tariff)),
                battery=sim.pack(site), soc=50.0, soc_min=np.full(n, sim.SOC_MIN),
                soc_max=np.full(n, sim.SOC_MAX), export_allowed=np.ones(n, bool),
                wear_cost_per_kwh=sim.WEAR)
            plan.make_plan(problem)
            per_site.append(time.perf_counter() - one)
        results[phase] = (time.perf_counter() - began, per_site,
                          time.process_time() - began_cpu)
    return results


def fleet_timing(count, seed, label, workers):
    """Wall time to re-plan ``count`` sites on ``workers`` processes, cold and warm."""
    sites = make_sites(count, seed)
    chunks = [(sites[i::workers], label, seed) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        began = time.perf_counter()
        results = pool.map(fleet_chunk, chunks)
        total = time.perf_counter() - began
    out = {}
    for phase in ("cold", "warm"):
        out[phase] = (max(r[phase][0] for r in results),
                      [s for r in results for s in r[phase][1]],
                      sum(r[phase][2] for r in results))
    return out, total


def p95(values):
    return float(np.percentile(values, 95)) if values else float("nan")


def report(results, args):
    print(f"\nbills of {args.month} ({args.days} days), {args.sites} sites, USD "
          f"(savings against the same month without storage)")
    captured = {}
    for name in args.tariff or TARIFFS:
        rows = [r for r in results if r["tariff"] == name]
        total = {k: sum(r[k] for r in rows) for k in ("pv_only", "self", "fixed", "optimizer",
                                                     "perfect")}
        saved = {k: total["pv_only"] - total[k] for k in ("self", "fixed", "optimizer",
                                                           "perfect")}
        captured[name] = 100 * saved["optimizer"] / saved["perfect"] if saved["perfect"] else 0
        print(f"\n{name}")
        print(f"  without storage     {total['pv_only']:>11.2f}")
        for key, title in (("self", "self-consumption"), ("fixed", "best fixed TOU"),
                           ("optimizer", "optimiser"), ("perfect", "perfect foresight")):
            print(f"  {title:<19} {total[key]:>11.2f}   saves {saved[key]:>9.2f}")
        beats = saved["optimizer"] > saved["self"] and saved["optimizer"] > saved["fixed"]
        print(f"  optimiser captures {captured[name]:.1f} % of perfect-foresight savings; "
              f"beats both heuristics: {'yes' if beats else 'NO'}")
        for r in rows:
            print(f"    {r['site']}: pv_only {r['pv_only']:.2f} self {r['self']:.2f} "
                  f"fixed {r['fixed']:.2f} opt {r['optimizer']:.2f} pf {r['perfect']:.2f} "
                  f"failures {r['failures']} | fixed = {r['fixed_desc']}")
    worst = min(captured, key=captured.get)
    plan_s = [s for r in results for s in r["plan_s"]]
    plan_cpu_s = [s for r in results for s in r["plan_cpu_s"]]
    solve_s = [s for r in results for s in r["solve_s"]]
    print(f"\nforecast nMAE over 48 h: load {100 * np.mean([r['load_nmae'] for r in results]):.1f}"
          f" %, PV {100 * np.mean([r['pv_nmae'] for r in results]):.1f} % (of the mean)")
    print(f"re-plans: {len(plan_s)}; LP (price + build + solve) p50 "
          f"{1000 * statistics.median(solve_s):.1f} ms, p95 {1000 * p95(solve_s):.1f} ms; "
          f"forecast + plan p95 {1000 * p95(plan_s):.1f} ms (CPU time p95 "
          f"{1000 * p95(plan_cpu_s):.1f} ms); perfect-foresight month LP "
          f"p50 {statistics.median(r['pf_solve_s'] for r in results):.2f} s")
    print(f"captured: {captured[worst]:.1f} % of perfect-foresight savings (worst: {worst})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--month", default="2026-06")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--tariff", choices=list(TARIFFS), action="append",
                        help="only this tariff (repeatable; all by default)")
    parser.add_argument("--follow", choices=plan.FOLLOW, default="grid")
    parser.add_argument("--oracle", action="store_true",
                        help="the optimiser plans on the real load and PV (no forecast error)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    jobs = [(site, name, args.month, args.days, args.follow, args.oracle)
            for site in make_sites(args.sites, args.seed) for name in args.tariff or TARIFFS]
    began = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(run_site, jobs, chunksize=1)
    print(f"simulated in {time.perf_counter() - began:.0f} s")
    report(results, args)
    if args.fleet:
        phases, _ = fleet_timing(args.fleet, args.seed, args.month, args.workers)
        for phase, (wall, per_site, cpu) in phases.items():
            what = "fit PV, clear sky, forecast, plan" if phase == "cold" else "forecast, plan"
            print(f"{args.fleet} sites re-planned ({phase}: {what}) in {wall:.1f} s on "
                  f"{args.workers} processes ({cpu:.1f} s of CPU in all); per site p95 "
                  f"{1000 * p95(per_site):.0f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
