"""End to end: a simulated site's backfilled months, through the real collector and worker,
give positive storage savings under a TOU tariff with demand charges, and the savings
page's callbacks return exactly the stored bills.

Kept light for a 2-core machine: one site, readings every 15 minutes, from the first
day of last month (in the site's zone) to now.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kilowatch.access import system_scope
from kilowatch.billing import savings
from simulator.sites import make_site
from tests.conftest import collector_ready, wait_for
from tests.dashboards.conftest import call_callback, login, make_user
from tests.dashboards.savings_helpers import tou_structure

SEED = 22  # Phoenix (no summer time), a 50 kW storage system, PV about 3 × the peak load
COMPANY = "Integration Energy"
RETENTION_DAYS = "80"  # the backfill reaches back up to 62 days


def _env(kw_env) -> dict[str, str]:
    return {**os.environ, **kw_env, "KILOWATCH_RAW_RETENTION_DAYS": RETENTION_DAYS,
            "KILOWATCH_LOG_LEVEL": "WARNING"}


def _run(kw_env, *args: str, timeout_s: float = 600) -> str:
    result = subprocess.run(["kilowatch", *args], env=_env(kw_env), capture_output=True,
                            text=True, timeout=timeout_s, check=False)
    assert result.returncode == 0, f"kilowatch {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


def _months(now: datetime, timezone: str) -> tuple[date, date]:
    today = now.astimezone(ZoneInfo(timezone)).date()
    this_month = today.replace(day=1)
    return (this_month - timedelta(days=1)).replace(day=1), this_month


def _rollups_done(conn) -> bool:
    rows = conn.execute("SELECT watermark, done_until FROM rollup_state").fetchall()
    dirty = conn.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"]
    return dirty == 0 and all(r["done_until"] is not None and r["done_until"] >= r["watermark"]
                              for r in rows)


@pytest.fixture(scope="module")
def simulated(kw_env, settings, tmp_path_factory):
    """Register and backfill one simulated site, ingest, roll up, assign a tariff, bill."""
    import psycopg

    spec = make_site(1, SEED, "INT")
    last_month, this_month = _months(datetime.now(UTC), spec.timezone)
    start = datetime.combine(last_month, datetime.min.time(), ZoneInfo(spec.timezone))
    backfill_days = (datetime.now(UTC) - start).total_seconds() / 86400 + 0.05
    collector = subprocess.Popen(
        ["kilowatch", "collector", "--client-id", f"kwtest-int-{secrets.token_hex(4)}"],
        env=_env(kw_env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: collector_ready(kw_env["KILOWATCH_METRICS_PORT"], collector),
                 what="the collector to subscribe")  # before the device speaks
        _run(kw_env, "simulate", "--register", "--company", COMPANY, "--sites", "1",
             "--seed", str(SEED), "--serial-prefix", "INT", "--backfill", f"{backfill_days:.3f}",
             "--backfill-interval", "900", "--duration", "0", "--fault-rate", "0")
        with psycopg.connect(settings.database_url, autocommit=True,
                             row_factory=psycopg.rows.dict_row) as conn:
            device = conn.execute("SELECT id FROM devices WHERE serial = %s",
                                  (spec.serial,)).fetchone()["id"]

            def newest_is_recent() -> bool:  # the collector has written the last sample
                newest = conn.execute("SELECT max(time) AS t FROM telemetry WHERE device_id = %s",
                                      (device,)).fetchone()["t"]
                return newest is not None and newest > datetime.now(UTC) - timedelta(minutes=20)

            wait_for(newest_is_recent, what="the last backfilled sample stored", timeout_s=300,
                     interval_s=1)
    finally:
        collector.terminate()
        collector.wait(30)
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        for _ in range(20):
            _run(kw_env, "worker", "--once", "--job", "rollups", "--job", "rollups.late")
            if _rollups_done(conn):
                break
        assert _rollups_done(conn)
        tariff_file = tmp_path_factory.mktemp("tariff") / "tou.json"
        tariff_file.write_text(json.dumps({"name": "Office TOU", **tou_structure("USD")}))
        _run(kw_env, "tariff", "import", str(tariff_file), "--company", COMPANY)
        _run(kw_env, "tariff", "assign", "--site", spec.name, "--tariff", "Office TOU",
             "--from", last_month.isoformat())
        _run(kw_env, "worker", "--once", "--job", "savings")
        site = conn.execute("SELECT id, company_id FROM sites WHERE name = %s",
                            (spec.name,)).fetchone()
        admin = make_user(conn, email=f"admin-{secrets.token_hex(3)}@integration.example",
                          role="admin", company_id=site["company_id"])
    return {"site_id": site["id"], "admin": admin, "months": (last_month, this_month)}


def _bills(conn, site_id, month: date) -> dict:
    rows = conn.execute("SELECT * FROM bills WHERE site_id = %s AND period_start = %s",
                        (site_id, month)).fetchall()
    return {row["scenario"]: row for row in rows}


def test_the_worker_bills_both_months_and_the_storage_saves_money(simulated, conn):
    last_month, this_month = simulated["months"]
    stored = _bills(conn, simulated["site_id"], last_month)
    assert set(stored) == {"without_system", "pv_only", "actual"}
    assert all(row["final"] and row["complete"] and not row["stale"] for row in stored.values())
    assert stored["without_system"]["total"] > stored["pv_only"]["total"] > \
        stored["actual"]["total"]
    assert stored["pv_only"]["energy"] > stored["actual"]["energy"]  # storage shifts energy
    assert stored["pv_only"]["demand"] >= stored["actual"]["demand"]
    current = _bills(conn, simulated["site_id"], this_month)
    assert set(current) == {"without_system", "pv_only", "actual"}
    assert not current["actual"]["final"]


def test_the_page_shows_exactly_the_stored_bills(app, simulated, conn):
    client = app.server.test_client()
    admin = simulated["admin"]
    assert login(client, admin.email, admin.password).status_code == 302
    site_id = simulated["site_id"]
    last_month, this_month = simulated["months"]
    label = f"{last_month:%Y-%m}"
    response = call_callback(client, app, "savings-kpis.children",
                             {"savings-month.value": label, "savings-site.data": site_id})
    assert response.status_code == 200
    out = response.get_json()["response"]
    stored = _bills(conn, site_id, last_month)
    order = ("without_system", "pv_only", "actual")
    traces = {t["name"]: t["y"] for t in out["savings-breakdown-graph"]["figure"]["data"]}
    assert traces["Energy"] == [float(stored[s]["energy"]) for s in order]
    assert traces["Demand"] == [float(stored[s]["demand"]) for s in order]
    assert traces["Fixed charge"] == [float(stored[s]["fixed"]) for s in order]
    assert traces["Export credit"] == [-float(stored[s]["export_credit"]) for s in order]
    assert traces["Total"] == [float(stored[s]["total"]) for s in order]
    storage = stored["pv_only"]["total"] - stored["actual"]["total"]
    assert f"{storage:,.2f} USD" in json.dumps(out["savings-kpis"]["children"])

    history = call_callback(client, app, "savings-monthly.figure",
                            {"savings-computed.data": "x", "savings-site.data": site_id})
    bars = {t["name"]: t for t in history.get_json()["response"]["savings-monthly"]["figure"][
        "data"]}
    current = _bills(conn, site_id, this_month)
    assert bars["Actual"]["x"] == [label, f"{this_month:%Y-%m}"]
    assert bars["Actual"]["y"] == [float(stored["actual"]["total"]),
                                   float(current["actual"]["total"])]
    assert bars["Storage saves"]["y"][0] == float(storage)
    summary = savings.month_summary(conn, system_scope("test"), site_id, label)
    assert summary["savings"]["storage"]["total"] == float(storage) > 0
