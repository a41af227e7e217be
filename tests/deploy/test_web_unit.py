"""The web unit's command line serves the app under gunicorn as the web's own database role."""

from __future__ import annotations

import http.cookiejar
import os
import re
import secrets
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from kilowatch import db
from tests.conftest import drop_service_logins, service_logins, wait_for
from tests.dashboards.conftest import make_user
from tests.deploy.units import UNITS, exec_start, local


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, f"the web app exited with {process.returncode}"
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def logins(kw_env) -> Iterator[dict[str, str]]:
    token = secrets.token_hex(4)
    yield service_logins(kw_env["KILOWATCH_DATABASE_URL"], token)
    db.close_pools()
    drop_service_logins(token)


@pytest.fixture(scope="module")
def web(kw_env, logins) -> Iterator[str]:
    argv = local(exec_start(UNITS / "kilowatch-web.service"))
    port = _free_port()
    argv[argv.index("--port") + 1] = str(port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **kw_env, "KILOWATCH_BASE_URL": url, "KILOWATCH_LOG_LEVEL": "WARNING",
           "KILOWATCH_WEB_DATABASE_URL": logins["KILOWATCH_WEB_DATABASE_URL"]}
    process = subprocess.Popen(argv, env=env)
    try:
        wait_for(lambda: _answers(url, process), what="/healthz of gunicorn", timeout_s=90)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_healthz_answers_under_gunicorn(web):
    with urllib.request.urlopen(f"{web}/healthz", timeout=5) as response:  # noqa: S310
        assert response.status == 200 and b'"ok"' in response.read()


def test_a_user_signs_in_as_the_web_role(web, conn, logins):
    account = make_user(conn, email=f"unit-{secrets.token_hex(3)}@example.com", role="superadmin")
    browser = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    form = browser.open(f"{web}/login", timeout=10).read().decode()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    body = urllib.parse.urlencode({"email": account.email, "password": account.password,
                                   "csrf_token": token}).encode()
    with browser.open(f"{web}/login", data=body, timeout=30) as response:
        assert response.status == 200 and not response.url.endswith("/login")
    assert conn.execute("SELECT last_login_at FROM users WHERE id = %s",
                        (account.id,)).fetchone()["last_login_at"] is not None
    web_login = logins["KILOWATCH_WEB_DATABASE_URL"].split("//")[1].split("@")[0]
    users = {row["usename"] for row in conn.execute(
        "SELECT usename FROM pg_stat_activity WHERE datname = current_database()")}
    assert web_login in users
