"""The ``optimized`` mode end to end: the worker plans, the device applies, acks and follows.

The live test runs the real pieces: a simulated device replays three days of history
through the broker into the collector, ``kilowatch worker`` rolls them up and plans
the site, the device receives its plan, acknowledges it (the collector stores the
ack) and runs it over the plan's two days. The month test runs the same device code
(schedule follower, plan follower, site model) offline over June and bills both
months with the bill engine: following plans costs less than self-consumption.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.billing import bills, scenarios, tariff_store
from kilowatch.dispatch import delivery as plan_delivery
from kilowatch.dispatch import message, optimizer, plan
from kilowatch.dispatch import store as dispatch_store
from kilowatch.dispatch.forecast import step_starts
from kilowatch.schedules import delivery as schedule_delivery
from kilowatch.schedules import store as schedule_store
from simulator import physics, runner
from simulator.controller import BuiltInProgram
from simulator.link import MqttLink
from simulator.model import SiteModel
from simulator.plan_follower import PlanFollower
from simulator.schedule_follower import ScheduleFollower, following_controller
from simulator.sites import SiteSpec, make_sites
from tests.collector.helpers import running_collector
from tests.conftest import wait_for
from tests.kilowatch.dispatch import helpers
from tests.simulator.conftest import RecordingLink, clear_retained

ROOT = system_scope("test")
SITE = make_sites(1, seed=7, serial_prefix="OPT")[0]  # Denver: 125 kW, 250 kWh, 300 kWp
STEP = timedelta(minutes=15)
SAMPLE_S = 300
# Cheap all day but 17:00-21:00 local, exports paid 0.05 (net billing).
TARIFF = helpers.tariff((0.10, 0.40), expensive=range(17, 21))


def optimized(timezone: str) -> dict:
    return {"timezone": timezone, "default_mode": "optimized", "periods": [], "exceptions": []}


def obeys(mode: str, params: dict, values: dict, soc_before: float, soc_after: float,
          rated_kw: float) -> bool | None:
    """Whether a sample ran the step's mode; None when a SoC bound or the rating decided."""
    p, grid = values["pcs.p"], values["meter.grid.p"]
    low, high = params.get("soc_min", 0.0), params.get("soc_max", 100.0)
    if mode == "idle":
        return p == 0
    if not (low < soc_before < high and low < soc_after < high) or abs(p) >= rated_kw - 1e-6:
        return None
    wanted = {"charge": lambda: p == pytest.approx(-params["power_kw"]),
              "discharge": lambda: p == pytest.approx(params["power_kw"]),
              "peak_shaving": lambda: grid == pytest.approx(params["grid_limit_kw"], abs=1e-6),
              "self_consumption": lambda: grid == pytest.approx(0.0, abs=1e-6)}
    return wanted[mode]()


def register_site(conn) -> tuple[int, int]:
    """The simulated site as the platform knows it: optimiser, tariff, optimized schedule."""
    company = fleet.create_company(conn, ROOT, f"Optimised {secrets.token_hex(3)}")
    site = fleet.create_site(conn, ROOT, company_id=company, name=SITE.name,
                             timezone=SITE.timezone, latitude=SITE.latitude,
                             longitude=SITE.longitude)
    conn.execute("UPDATE sites SET has_optimizer = true WHERE id = %s", (site,))
    device = fleet.register_device(conn, ROOT, site_id=site, serial=SITE.serial,
                                   model=SITE.model, rated_power_kw=SITE.rated_power_kw,
                                   capacity_kwh=SITE.capacity_kwh)
    tariff_id = tariff_store.create_tariff(conn, ROOT, company_id=company, name="TOU",
                                           tariff=TARIFF)
    tariff_store.assign_tariff(conn, ROOT, site_id=site, tariff_id=tariff_id,
                               valid_from=date.today() - timedelta(days=90))
    schedule_store.save_revision(conn, ROOT, site, optimized(SITE.timezone))
    return site, device


def worker(kw_env, *jobs: str) -> None:
    args = ["kilowatch", "worker", "--once"] + [arg for job in jobs for arg in ("--job", job)]
    result = subprocess.run(args, env={**os.environ, **kw_env}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def last_stored(conn, device: int) -> datetime | None:
    return conn.execute(
        """SELECT max(t.time) AS at FROM telemetry t JOIN points p ON p.id = t.point_id
           WHERE t.device_id = %s AND p.name = 'bms.soc'""", (device,)).fetchone()["at"]


def test_the_worker_plans_the_device_applies_acks_and_follows_the_plan(kw_env, settings, conn):
    site, device_id = register_site(conn)
    link = MqttLink(url=settings.simulator_mqtt_url, prefix=settings.mqtt_prefix,
                    serial=SITE.serial, firmware=SITE.firmware)
    link.connect()
    options = runner.RunOptions(backfill_days=3, backfill_interval_s=SAMPLE_S, fault_rate=0.0)
    [device] = runner.make_devices([SITE], [link], options, following_controller)
    try:
        with running_collector(kw_env):
            assert schedule_delivery.publish_latest(conn, ROOT, site, settings=settings).ok
            wait_for(lambda: schedule_store.delivery_state(conn, ROOT, site)[0]["status"]
                     == "applied", what="the optimized schedule applied")
            runner.backfill([device], options, threading.Event())
            assert link.wait_pending(0, 60)
            end = datetime.fromtimestamp(device.last_t, UTC)
            wait_for(lambda: last_stored(conn, device_id) == end, what="the history stored")
            worker(kw_env, "rollups")
            worker(kw_env, "dispatch.plan")
            row = dispatch_store.latest_plan(conn, ROOT, site)
            assert row["status"] == "planned", row["error"]
            [state] = wait_for(lambda: [r for r in plan_delivery.delivery_state(conn, ROOT, site)
                                        if r["status"] == "applied"], what="the plan applied")
    finally:
        link.close()
        clear_retained(settings.mqtt_prefix)
    assert state["revision"] == row["revision"] and state["acked_at"] is not None
    plans = device.controller.plans
    assert plans.applied.revision == row["revision"]
    assert plans.applied.setpoints == tuple((s["mode"], {k: s[k] for k in s if k in (
        "power_kw", "grid_limit_kw", "soc_min", "soc_max")}) for s in row["plan"]["steps"])

    # The device runs the plan over its two days, then falls back to self-consumption.
    first = datetime.fromisoformat(row["plan"]["steps"][0]["start"])
    verdicts = []
    t = max(device.last_t, first.timestamp())
    while t < plans.applied.expires.timestamp() + 3600:
        t += SAMPLE_S
        moment = datetime.fromtimestamp(t, UTC)
        soc_before = device.model.soc
        values = device.advance(t, SAMPLE_S).values
        step = plans.setpoint_at(moment)
        mode, params = step if step is not None else ("self_consumption",
                                                      {"soc_min": 10.0, "soc_max": 95.0})
        assert device.controller.mode_at(moment) == (step or ("optimized", {}))
        verdicts.append(obeys(mode, params, values, soc_before, device.model.soc,
                              SITE.rated_power_kw))
    assert False not in verdicts
    assert verdicts.count(True) > len(verdicts) / 4  # most samples prove something
    assert len({mode for mode, _ in plans.applied.setpoints}) >= 2


def month_bill(spec: SiteSpec, period: bills.BillingPeriod, *, plans: bool,
               replan_every: int = 24) -> tuple[float, list[dict]]:
    """Run the device over the month (optimized all month) and bill it; also its plan acks.

    With ``plans`` it gets a 48-hour plan every ``replan_every`` steps, made by the
    platform's optimiser on the site's real 15-minute load and PV and turned into its
    message by the platform's own code, exactly as the broker would hand it over.
    """
    t0 = period.start.timestamp()
    link = RecordingLink(spec.serial)
    follower = ScheduleFollower(spec, BuiltInProgram(spec), clock=lambda: t0 - 60,
                                plans=PlanFollower(spec.serial, spec.rated_power_kw))
    follower.attach(link)
    link.deliver("schedule", {"revision": 1, **optimized(spec.timezone)})
    model = SiteModel(spec, follower)
    per, steps, horizon = 900 // SAMPLE_S, period.days * 96, 192
    times = t0 + SAMPLE_S * np.arange(1, (steps + horizon) * per + 1)
    load = np.array([physics.load_power_kw(spec, t) for t in times]).reshape(-1, per).mean(1)
    pv = np.array([physics.pv_power_kw(spec, t) for t in times]).reshape(-1, per).mean(1)
    flows = []
    for q in range(steps):
        start = period.start + q * STEP
        if plans and q % replan_every == 0:
            made = plan.make_plan(optimizer.Problem(
                tariff=TARIFF, timezone=spec.timezone, starts=step_starts(start, horizon),
                load_kw=load[q:q + horizon], pv_kw=pv[q:q + horizon], battery=model.battery,
                soc=model.soc, soc_min=np.full(horizon, 10.0), soc_max=np.full(horizon, 95.0),
                export_allowed=np.ones(horizon, bool)))
            link.deliver("plan", message.device_message(
                q + 1, start, made.to_json(), device_kw=spec.rated_power_kw,
                site_kw=spec.rated_power_kw))
        before = dict(model.counters)
        for k in range(1, per + 1):
            model.step(t0 + q * 900 + k * SAMPLE_S, SAMPLE_S)
        used = {name: model.counters[name] - before[name] for name in before}
        flows.append(scenarios.Flow(start, used["meter.grid.e_import"],
                                    used["meter.grid.e_export"], used["meter.load.e"],
                                    used["meter.pv.e"]))
    bill = scenarios.compute_bills(TARIFF, flows, period, until=period.end)["actual"]
    return bill.total, link.acks()


def test_a_month_following_plans_costs_less_than_self_consumption():
    period = bills.billing_period(SITE.timezone, "2026-06")
    began = time.perf_counter()
    self_consumption, no_acks = month_bill(SITE, period, plans=False)
    planned, acks = month_bill(SITE, period, plans=True)
    print(f"June bills: self-consumption {self_consumption:.2f}, following plans "
          f"{planned:.2f} ({time.perf_counter() - began:.1f} s)")
    assert no_acks == [] and len(acks) == 120
    assert {ack["status"] for ack in acks} == {"applied"}
    assert planned < self_consumption * 0.9
