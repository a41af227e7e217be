"""The ``kilowatch`` command: migrations and fleet commands with one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys


def run(kw_env, *args, stdin=None):
    """Run the real ``kilowatch`` executable against this module's services."""
    env = {**os.environ, **kw_env}
    return subprocess.run(["kilowatch", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_db_upgrade_is_idempotent_and_status_lists_migrations(kw_env):
    result = run(kw_env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    status = run(kw_env, "db", "status")
    assert "001_core.sql" in status.stdout and "applied" in status.stdout


def test_a_core_command_imports_no_other_package_but_lists_and_runs_theirs(kw_env):
    # Each `kilowatch` process (the demo runs some thirty) would otherwise import the
    # web app, the collector, the simulator and the PDF library before doing anything.
    probe = ("import sys; from kilowatch.cli import main; main(['company', '--help'], "
             "standalone_mode=False); print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'dashboards', 'collector', 'simulator', 'reportlab', 'gunicorn', 'dash'}))")
    loaded = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **kw_env},
                            capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip().splitlines()[-1] == "[]"
    listed = run(kw_env, "--help").stdout
    assert all(f"  {name} " in listed for name in ("collector", "simulate", "web", "company"))
    assert "Serve the web app" in run(kw_env, "web", "--help").stdout


def test_company_site_device_and_name_resolution(kw_env):
    assert run(kw_env, "company", "create", "Northwind").returncode == 0
    created = run(kw_env, "site", "create", "--company", "northwind", "--name", "Depot",
                  "--timezone", "Europe/Berlin", "--latitude", "52.5", "--longitude", "13.4")
    assert created.returncode == 0, created.stderr
    device = run(kw_env, "device", "register", "--site", "Depot", "--serial", "NW-1",
                 "--model", "HES-XL", "--rated-power-kw", "250", "--capacity-kwh", "500")
    assert device.returncode == 0, device.stderr
    assert "NW-1" in run(kw_env, "device", "register", "--site", "Depot", "--serial", "NW-1",
                         "--model", "HES-XL").stderr


def test_ambiguous_site_name_lists_matches(kw_env):
    run(kw_env, "company", "create", "Alpha")
    run(kw_env, "company", "create", "Beta")
    for company in ("Alpha", "Beta"):
        run(kw_env, "site", "create", "--company", company, "--name", "Harbor",
            "--timezone", "UTC")
    result = run(kw_env, "device", "register", "--site", "Harbor", "--serial", "H-1",
                 "--model", "meter")
    assert result.returncode != 0
    assert "ambiguous" in result.stderr and "Alpha" in result.stderr and "Beta" in result.stderr
    assert "Traceback" not in result.stderr


def test_errors_are_one_line_without_traceback(kw_env):
    result = run(kw_env, "site", "create", "--company", "Nobody", "--name", "X",
                 "--timezone", "UTC")
    assert result.returncode != 0
    assert result.stderr.strip() == "Error: no company matches 'Nobody'"
    bad_tz = run(kw_env, "site", "create", "--company", "Northwind", "--name", "Y",
                 "--timezone", "Mars/Olympus")
    assert "IANA" in bad_tz.stderr and bad_tz.returncode != 0


def test_bad_setting_stops_with_the_variable_name(kw_env):
    result = run({**kw_env, "KILOWATCH_OFFLINE_AFTER": "later"}, "db", "status")
    assert result.returncode != 0
    assert "KILOWATCH_OFFLINE_AFTER" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_site_update_changes_only_the_options_given_and_offers_the_optimizer(kw_env, conn):
    run(kw_env, "company", "create", "Updaters")
    created = run(kw_env, "site", "create", "--company", "Updaters", "--name", "Quay",
                  "--timezone", "Europe/Paris", "--latitude", "48.85", "--address", "1 quai")
    assert created.returncode == 0, created.stderr
    before = conn.execute("SELECT * FROM sites WHERE name = 'Quay'").fetchone()
    assert before["has_optimizer"] is False
    updated = run(kw_env, "site", "update", "--site", "Quay", "--optimizer", "--longitude", "2.35")
    assert updated.returncode == 0, updated.stderr
    assert "longitude, has_optimizer changed" in updated.stdout
    after = conn.execute("SELECT * FROM sites WHERE name = 'Quay'").fetchone()
    assert after["has_optimizer"] is True and after["longitude"] == 2.35
    unchanged = ("name", "timezone", "address", "latitude")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert "nothing changed" in run(kw_env, "site", "update", "--site", "Quay").stdout
    off = run(kw_env, "site", "update", "--site", "Quay", "--no-optimizer")
    assert off.returncode == 0 and "has_optimizer changed" in off.stdout
    # A bad value is refused in one line, and nothing else changes.
    bad = run(kw_env, "site", "update", "--site", "Quay", "--timezone", "Mars/Base")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "IANA time zone" in bad.stderr
    assert conn.execute("SELECT timezone FROM sites WHERE name = 'Quay'").fetchone()[
        "timezone"] == "Europe/Paris"
    missing = run(kw_env, "site", "update", "--site", "Nowhere", "--optimizer")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr


def test_db_upgrade_to_an_unknown_number_says_so(kw_env):
    result = run(kw_env, "db", "upgrade", "--to", "999")
    assert result.returncode != 0
    assert "there is no migration 999" in result.stderr and "Traceback" not in result.stderr
