"""``kilowatch demo --check`` starts every service on a simulated fleet and prints logins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from collector import metrics
from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.accounts import passwords, users
from kilowatch.billing import savings
from kilowatch.cli import UserError
from kilowatch.commands import demo_fleet
from kilowatch.commands.demo import (
    COMPANY,
    GROUP,
    create_logins,
    free_port,
    service_env,
)
from kilowatch.mqtt import broker_address
from kilowatch.settings import DEFAULT_SECRET_KEY, load_settings
from tests.collector.helpers import running_collector

DB_PASSWORD = "db-pw-9f3k"  # the database ignores it (trust)


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user = rest.split("@", 1)[0] if "@" in rest else "demo"
    return f"{scheme}://{user.split(':')[0]}:{password}@{rest.split('@')[-1]}"


def test_demo_check_shows_strategies_bills_and_alarms_and_prints_working_logins(kw_env, conn,
                                                                                tmp_path):
    # No KILOWATCH_SECRET_KEY: `kilowatch web` refuses the development key, so the demo
    # must hand its services one. Passwords in the URLs must not be printed. No bench
    # login either: each simulated device activates over HTTPS and logs in as itself.
    # The default history (two months) is longer than the raw retention of this
    # environment: the demo gives its own services a longer one.
    env = {**os.environ, **kw_env, "KILOWATCH_RAW_RETENTION_DAYS": "31",
           "KILOWATCH_DATABASE_URL": _with_password(kw_env["KILOWATCH_DATABASE_URL"],
                                                    DB_PASSWORD)}
    env.pop("KILOWATCH_SECRET_KEY")
    env.pop("KILOWATCH_SIMULATOR_MQTT_URL")
    mqtt_password = broker_address(kw_env["KILOWATCH_MQTT_URL"]).password
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kilowatch", "demo", "--check", "--port", str(free_port()),
         "--state", str(tmp_path / "devices.json")],
        env=env, capture_output=True, text=True, timeout=480, check=False)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    last_month = demo_fleet.first_of_month(datetime.now(UTC).date(), 1)
    assert re.search(rf"^check ok: web up, 3 site\(s\), 3 device\(s\) storing telemetry, "
                     rf"schedules applied, 1 dispatch plan\(s\) applied, batteries working, "
                     rf"{last_month:%Y-%m} bills with savings, device alarms "
                     r"\(ready \d+ s after start\)$", result.stdout, re.MULTILINE), output[-3000:]
    # The demo admin signs in and gets the commissioning page, the report's HTML and PDF.
    assert re.search(r"^check ok: commissioning page and report of site \d+ answer over HTTPS$",
                     result.stdout, re.MULTILINE), output[-3000:]
    print(f"kilowatch demo --check took {elapsed:.0f} s")  # shown with pytest -s
    assert DB_PASSWORD not in output and mqtt_password not in output
    assert re.search(r"^database\s+postgresql://\w+:\*\*\*@127\.0\.0\.1:55432/",
                     result.stdout, re.MULTILINE), result.stdout[:500]
    assert re.search(r"^broker\s+mqtt://kwtest-\w+-collector:\*\*\*@127\.0\.0\.1:\d+ ",
                     result.stdout, re.MULTILINE), result.stdout[:500]
    assert "Kilowatch demo: open https://127.0.0.1:" in result.stdout
    assert sorted(re.findall(r"^(SIM-\d+) activated$", output, re.MULTILINE)) == [
        "SIM-0001", "SIM-0002", "SIM-0003"]
    for name in ("collector", "web", "broker", "simulator", "worker"):
        assert re.search(rf"^{name}\s+started \(pid \d+\)", result.stdout, re.MULTILINE)
    assert re.search(r"^commissioning: report issued for site \d+; site \d+ in progress, "
                     r"\d+ of \d+ checklist items open$", result.stdout, re.MULTILINE)
    issued = conn.execute("SELECT r.version, r.pdf FROM commissioning_reports r JOIN devices d "
                          "ON d.site_id = r.site_id WHERE d.serial = 'SIM-0001'").fetchall()
    assert [r["version"] for r in issued] == [1] and bytes(issued[0]["pdf"]).startswith(b"%PDF")
    _assert_logins_work(conn, result.stdout)
    _assert_fleet_shows_everything(conn, last_month)


def _assert_logins_work(conn, stdout: str) -> None:
    logins = {role: (email, password) for role, email, password in re.findall(
        r"^\s+(\w+)\s+(\S+@demo\.kilowatch\.example)\s+(\S+)$", stdout, re.MULTILINE)}
    assert set(logins) == {"viewer", "operator", "admin", "support", "superadmin"}
    scope = system_scope("test")
    for role, (email, password) in logins.items():
        login = users.find_login(conn, scope, email)
        assert login["role"] == role and login["active"] and not login["must_change_password"]
        assert passwords.verify_password(login["password_hash"], password), role
    viewer = users.build_scope(conn, scope, users.resolve_user(conn, scope,
                                                               logins["viewer"][0])["id"])
    assert len(viewer.site_ids) == 2  # the group grants all sites but the last


def _assert_fleet_shows_everything(conn, last_month) -> None:
    sites = conn.execute(
        """SELECT s.id, d.serial, d.activated_at, d.credential_nonce, r.body AS schedule,
                  sd.status AS delivery,
                  (SELECT t.valid_from FROM site_tariffs t WHERE t.site_id = s.id
                   AND t.superseded_at IS NULL) AS tariff_from
           FROM sites s JOIN devices d ON d.site_id = s.id
           JOIN schedule_revisions r ON r.site_id = s.id
           LEFT JOIN schedule_deliveries sd ON sd.revision_id = r.id AND sd.device_id = d.id
           ORDER BY d.serial""").fetchall()
    assert [s["serial"] for s in sites] == ["SIM-0001", "SIM-0002", "SIM-0003"]
    assert all(s["activated_at"] and s["credential_nonce"] for s in sites)
    # Three strategies, each applied by its device, and the tariff since the history began.
    assert [s["delivery"] for s in sites] == ["applied"] * 3
    peak, arbitrage, optimized = (s["schedule"] for s in sites)
    assert peak["default_mode"] == "peak_shaving"
    assert 0 < peak["default_params"]["grid_limit_kw"] < 63.6  # Madrid's peak load, kW
    assert [p["mode"] for p in arbitrage["periods"]] == ["charge", "discharge"]
    assert optimized["default_mode"] == "optimized" and not optimized["periods"]
    # The optimized site (offered the optimizer by `kilowatch site update`) has a plan that
    # its device applied, made from forecasts stored beside it.
    plans = conn.execute(
        """SELECT d.serial, s.has_optimizer, pd.status,
                  (SELECT count(*) FROM dispatch_forecasts f WHERE f.site_id = s.id) AS forecasts
           FROM sites s JOIN devices d ON d.site_id = s.id
           LEFT JOIN dispatch_plan_deliveries pd ON pd.device_id = d.id
           ORDER BY d.serial""").fetchall()
    assert {p["serial"]: p["has_optimizer"] for p in plans} == {
        "SIM-0001": False, "SIM-0002": False, "SIM-0003": True}
    assert "applied" in {p["status"] for p in plans if p["serial"] == "SIM-0003"}, plans
    assert all(p["forecasts"] > 0 for p in plans if p["serial"] == "SIM-0003"), plans
    first_day = demo_fleet.first_of_month(datetime.now(UTC).date(), 2)
    assert [s["tariff_from"] for s in sites] == [first_day] * 3
    tariff = conn.execute("SELECT name, structure FROM tariffs").fetchone()
    assert tariff["name"] == demo_fleet.TARIFF_NAME
    structure = tariff["structure"]
    assert structure["export"]["rate"] == demo_fleet.EXPORT_RATE  # export compensation
    assert structure["demand"]["periods"] and structure["flat_demand"]  # demand charges
    assert len(structure["energy"]["periods"]) == 3  # time of use
    # The batteries charge and discharge: power in both directions over the last hour.
    power = conn.execute(
        """SELECT t.device_id, min(t.value) AS low, max(t.value) AS high, count(*) AS n
           FROM telemetry t JOIN points p ON p.id = t.point_id
           WHERE p.name = 'pcs.p' AND t.time > now() - interval '1 hour'
           GROUP BY t.device_id""").fetchall()
    assert len(power) == 3 and all(max(abs(r["low"]), abs(r["high"])) > 0.01 for r in power)
    # Last month's bills, final, with savings on every site and on the fleet page's list.
    month = savings.list_bills(conn, system_scope("test"), since=last_month,
                               until=demo_fleet.first_of_month(last_month, -1))
    assert len(month) == 3, month
    assert all(row["final"] and row["complete"] and row["system_savings"] > 0
               for row in month), month
    # Device alarms: some raised and cleared in the history, and one still active.
    alarms = conn.execute("SELECT d.serial, a.code, a.cleared_at, a.raised_at FROM alarms a "
                          "JOIN devices d ON d.id = a.device_id WHERE a.source = 'device'"
                          ).fetchall()
    history = [a for a in alarms if a["cleared_at"] and a["raised_at"] < datetime.fromisoformat(
        f"{last_month + timedelta(days=31):%Y-%m}-01T00:00:00+00:00")]
    assert history, alarms
    assert ("SIM-0003", demo_fleet.STUCK_ALARM) in {
        (a["serial"], a["code"]) for a in alarms if a["cleared_at"] is None}


def test_services_get_a_random_key_unless_one_is_configured(kw_env):
    default = load_settings({**kw_env, "KILOWATCH_SECRET_KEY": DEFAULT_SECRET_KEY})
    first, second = (service_env(default)["KILOWATCH_SECRET_KEY"] for _ in range(2))
    assert first != second and len(first) == 64 and DEFAULT_SECRET_KEY not in (first, second)
    configured = load_settings(kw_env)  # this module's own key, also in os.environ
    assert service_env(configured)["KILOWATCH_SECRET_KEY"] == kw_env["KILOWATCH_SECRET_KEY"]


def test_logins_fail_loudly_when_a_grant_fails_and_a_rerun_reuses_the_group(kw_env, conn):
    scope = system_scope("test")
    known = conn.execute("SELECT id FROM companies WHERE name = %s", (COMPANY,)).fetchone()
    demo = known["id"] if known else fleet.create_company(conn, scope, COMPANY)  # a demo ran?
    other = fleet.create_company(conn, scope, "Not the demo's")
    own = fleet.create_site(conn, scope, company_id=demo, name="Demo site",
                            timezone="Europe/Paris")
    foreign = fleet.create_site(conn, scope, company_id=other, name="Foreign site",
                                timezone="Europe/Paris")
    # The last site is left out of the group: a foreign one before it must stop the demo.
    with pytest.raises(UserError, match=f"could not grant site {foreign} to the demo group: "
                                        ".*does not belong to the group's company"):
        create_logins([foreign, own])

    logins = create_logins([own])  # run twice: the group of the first run is reused
    again = create_logins([own])
    assert set(logins) == set(again) == {"viewer", "operator", "admin", "support",
                                         "superadmin"}
    groups = conn.execute("SELECT id FROM groups WHERE name = %s", (GROUP,)).fetchall()
    assert len(groups) == 1
    viewer = users.build_scope(conn, scope, users.resolve_user(conn, scope,
                                                               again["viewer"][0])["id"])
    assert own in viewer.site_ids and foreign not in viewer.site_ids


def test_is_subscribed_reads_the_collectors_metrics(kw_env):
    assert not metrics.is_subscribed(free_port())  # nothing listens there
    with running_collector(kw_env) as collector:  # it returns once the gauge reads 1
        assert metrics.is_subscribed(collector.metrics_port)
    assert not metrics.is_subscribed(collector.metrics_port)
