"""``kilowatch demo --check`` starts every service on a simulated fleet and prints logins."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from collector import metrics
from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.accounts import users
from kilowatch.cli import UserError
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


def test_demo_check_runs_everything_and_prints_one_login_per_role(kw_env, conn, tmp_path):
    # No KILOWATCH_SECRET_KEY: `kilowatch web` refuses the development key, so the demo
    # must hand its services one. Passwords in the URLs must not be printed. No bench
    # login either: each simulated device activates over HTTPS and logs in as itself.
    env = {**os.environ, **kw_env,
           "KILOWATCH_DATABASE_URL": _with_password(kw_env["KILOWATCH_DATABASE_URL"],
                                                    DB_PASSWORD)}
    env.pop("KILOWATCH_SECRET_KEY")
    env.pop("KILOWATCH_SIMULATOR_MQTT_URL")
    mqtt_password = broker_address(kw_env["KILOWATCH_MQTT_URL"]).password
    result = subprocess.run(
        [sys.executable, "-m", "kilowatch", "demo", "--check", "--sites", "2",
         "--backfill", "0.02", "--port", str(free_port()),
         "--state", str(tmp_path / "devices.json")],
        env=env, capture_output=True, text=True, timeout=280, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert DB_PASSWORD not in output and mqtt_password not in output
    assert re.search(r"^database\s+postgresql://\w+:\*\*\*@127\.0\.0\.1:55432/", result.stdout,
                     re.MULTILINE), result.stdout[:500]
    assert re.search(r"^broker\s+mqtt://kwtest-\w+-collector:\*\*\*@127\.0\.0\.1:\d+ ",
                     result.stdout, re.MULTILINE), result.stdout[:500]
    assert "Kilowatch demo: open https://127.0.0.1:" in result.stdout
    assert "check ok: web up, 2 site(s), 2 device(s) storing telemetry" in output
    assert sorted(re.findall(r"^(SIM-\d+) activated$", output, re.MULTILINE)) == [
        "SIM-0001", "SIM-0002"]
    identities = conn.execute("SELECT serial, activated_at, credential_nonce FROM devices "
                              "ORDER BY serial").fetchall()
    assert all(d["activated_at"] and d["credential_nonce"] for d in identities)
    logins = dict(re.findall(r"^\s+(\w+)\s+(\S+@demo\.kilowatch\.example)\s+\S+$", result.stdout,
                             re.MULTILINE))
    assert set(logins) == {"viewer", "operator", "admin", "support", "superadmin"}
    scope = system_scope("test")
    for role, email in logins.items():
        user = users.resolve_user(conn, scope, email)
        assert user["role"] == role and user["active"] and not user["must_change_password"]
    viewer = users.build_scope(conn, scope, users.resolve_user(conn, scope, logins["viewer"])["id"])
    assert len(viewer.site_ids) == 1  # the group grants all sites but the last
    for name in ("collector", "web", "broker", "simulator", "worker"):
        assert re.search(rf"^{name}\s+started \(pid \d+\)", result.stdout, re.MULTILINE)


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
