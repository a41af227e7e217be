"""Bad arguments to any ``kilowatch`` command: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

URDB = str(Path(__file__).parent / "data" / "urdb_sunridge.json")
BAD_COMMANDS = [
    # ids with Unicode digits, ids past PostgreSQL's int range, unknown names
    ["site", "create", "--company", "²", "--name", "X", "--timezone", "UTC"],
    ["site", "create", "--company", "99999999999", "--name", "X", "--timezone", "UTC"],
    ["device", "register", "--site", "²", "--serial", "S-1", "--model", "meter"],
    ["schedule", "show", "--site", "²"],
    ["schedule", "show", "--site", "99999999999"],
    ["schedule", "show", "--site", "Depot", "--revision", "99999999999"],
    ["schedule", "show", "--site", "Depot", "--revision", "7"],
    ["schedule", "diff", "--site", "Depot", "1", "99999999999"],
    ["schedule", "restore", "--site", "Depot", "--revision", "²"],
    ["user", "set-password", "--user", "²"],
    ["user", "set-password", "--user", "99999999999"],
    ["user", "deactivate", "--user", "nobody@example.com"],
    ["user", "create", "--email", "not-an-email", "--role", "viewer", "--company", "Acme"],
    ["user", "create", "--email", "x@example.com", "--role", "boss"],
    ["group", "grant", "--group", "²", "--site", "Depot"],
    ["group", "list", "--company", "99999999999"],
    ["tariff", "assign", "--site", "Depot", "--tariff", "²", "--from", "2026-01-01"],
    ["tariff", "show", "99999999999"],
    ["tariff", "list", "--company", "Nobody"],
    # bad dates, months, times and numbers
    ["tariff", "assign", "--site", "Depot", "--tariff", "1", "--from", "2026-13-01"],
    ["savings", "show", "--site", "Depot", "--month", "2026-13"],
    ["savings", "show", "--site", "Depot", "--month", "9999-12"],
    ["savings", "show", "--site", "Depot", "--month", "²⁰²⁶-01"],
    ["site", "create", "--company", "Acme", "--name", "X", "--timezone", "Mars/Olympus"],
    ["site", "create", "--company", "Acme", "--name", "X", "--timezone", "UTC",
     "--latitude", "nan"],
    ["deadletter", "list", "--limit", "0"],
    ["device", "register", "--site", "Depot", "--serial", "S-1", "--model", "HES-L",
     "--rated-power-kw", "nan"],
    ["device", "register", "--site", "Depot", "--serial", "S-1", "--model", "HES-L",
     "--capacity-kwh", "inf"],
    ["tariff", "import", URDB, "--company", "Acme", "--export-rate", "nan"],
    ["tariff", "import", URDB, "--company", "Acme", "--export-rate", "-inf"],
    ["worker", "--once", "--job", "nope"],
    ["schedule", "set", "--site", "Depot", "--file", "/nonexistent/schedule.json"],
]


def run(kw_env, *args):
    """Run the real ``kilowatch`` executable against this module's services."""
    env = {**os.environ, **kw_env}
    return subprocess.run(["kilowatch", *args], env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture(scope="module")
def fleet(kw_env):
    """A company with one site, so that only the bad argument is wrong."""
    for args in (["company", "create", "Acme"],
                 ["site", "create", "--company", "Acme", "--name", "Depot", "--timezone",
                  "Europe/Paris"]):
        result = run(kw_env, *args)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("args", BAD_COMMANDS, ids=" ".join)
def test_bad_arguments_give_one_line_and_no_traceback(kw_env, fleet, args):
    result = run(kw_env, *args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")


def test_a_bad_option_names_it_and_points_at_help(kw_env, fleet):
    result = run(kw_env, "schedule", "show", "--site", "Depot", "--revision", "99999999999")
    assert result.returncode == 2
    assert "--revision" in result.stderr
    assert "kilowatch schedule show --help" in result.stderr


def test_a_group_without_a_subcommand_still_shows_its_help(kw_env):
    result = run(kw_env, "schedule")
    assert "Usage:" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
