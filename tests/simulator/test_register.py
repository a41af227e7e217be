"""``kilowatch simulate --register`` creates the fleet through the CLI, idempotently."""

from __future__ import annotations

import os
import subprocess

from kilowatch import fleet
from kilowatch.access import system_scope
from simulator.sites import make_sites
from tests.simulator.conftest import run_simulate


def site_list(kw_env) -> list[str]:
    """The lines of ``kilowatch site list``."""
    result = subprocess.run(["kilowatch", "site", "list"], env={**os.environ, **kw_env},
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def test_register_creates_company_sites_and_devices_once(kw_env, inbox, conn):
    args = ("--register", "--sites", "2", "--seed", "9", "--serial-prefix", "REG",
            "--duration", "0")
    first = run_simulate(kw_env, *args)
    assert first.returncode == 0, first.stderr
    assert "company 'Demo Energy' created" in first.stderr
    again = run_simulate(kw_env, *args)
    assert again.returncode == 0, again.stderr
    assert "already registered" in again.stderr
    grown = run_simulate(kw_env, "--register", "--sites", "3", "--seed", "9",
                         "--serial-prefix", "REG", "--duration", "0")
    assert grown.returncode == 0, grown.stderr

    expected = make_sites(3, seed=9, serial_prefix="REG")
    lines = site_list(kw_env)
    for site in expected:
        assert [line for line in lines if f"Demo Energy / {site.name}" in line
                and site.timezone in line], lines
    rows = {row["name"]: row for row in fleet.list_sites(conn, system_scope())}
    assert set(rows) == {site.name for site in expected}
    for site in expected:
        row = rows[site.name]
        assert (row["latitude"], row["longitude"]) == (site.latitude, site.longitude)
        devices = fleet.list_devices(conn, system_scope(), row["id"])
        assert [(d["serial"], d["model"], d["rated_power_kw"], d["capacity_kwh"])
                for d in devices] == [(site.serial, site.model, site.rated_power_kw,
                                       site.capacity_kwh)]


def test_register_under_another_company_name(kw_env, inbox, conn):
    result = run_simulate(kw_env, "--register", "--sites", "1", "--seed", "3",
                          "--serial-prefix", "ACME", "--company", "Acme Storage",
                          "--duration", "0")
    assert result.returncode == 0, result.stderr
    acme = [row for row in fleet.list_sites(conn, system_scope())
            if row["company_name"] == "Acme Storage"]
    assert [row["name"] for row in acme] == [make_sites(1, 3, "ACME")[0].name]
