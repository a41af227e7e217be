"""``kilowatch demo --check`` starts every service on a simulated fleet and prints logins."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from kilowatch import users
from kilowatch.access import system_scope


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_check_runs_everything_and_prints_one_login_per_role(kw_env, conn):
    result = subprocess.run(
        [sys.executable, "-m", "kilowatch", "demo", "--check", "--sites", "2",
         "--backfill", "0.02", "--port", str(_free_port())],
        env={**os.environ, **kw_env}, capture_output=True, text=True, timeout=280, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "check ok: web up, 2 site(s), 2 device(s) storing telemetry" in output
    logins = dict(re.findall(r"^\s+(\w+)\s+(\S+@demo\.kilowatch\.example)\s+\S+$", result.stdout,
                             re.MULTILINE))
    assert set(logins) == {"viewer", "operator", "admin", "support", "superadmin"}
    scope = system_scope("test")
    for role, email in logins.items():
        user = users.resolve_user(conn, scope, email)
        assert user["role"] == role and user["active"] and not user["must_change_password"]
    viewer = users.build_scope(conn, scope, users.resolve_user(conn, scope, logins["viewer"])["id"])
    assert len(viewer.site_ids) == 1  # the group grants all sites but the last
    for name in ("collector", "web", "simulator", "worker"):
        assert re.search(rf"^{name}\s+started \(pid \d+\)", result.stdout, re.MULTILINE)
