"""A hung Redis or a stopped PostgreSQL costs a page a few seconds and a clear 503, never a hang.

``kilowatch web`` runs as a real process against a private Redis (hung with
SIGSTOP) or a private PostgreSQL (stopped), so the shared servers are never
touched; once the server is back, the same web process serves pages again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from kilowatch import db
from tests.collector.servers import free_port
from tests.conftest import wait_for
from tests.dashboards.conftest import make_user

REDIS_BOUND_S = 3.0  # a page answers within this while Redis hangs
DATABASE_BOUND_S = 5.0  # and within this while PostgreSQL is down
THREADS = 4


@contextlib.contextmanager
def web(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``kilowatch web`` (gunicorn, one worker) with ``env``; yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kilowatch", "web", "--port", str(port), "--workers", "1",
             "--threads", str(THREADS)],
            env={**os.environ, **env, "KILOWATCH_BASE_URL": url}, stdout=log, stderr=log)
    try:
        wait_for(lambda: _status(f"{url}/healthz") == 200, what="web app up", timeout_s=60)
        yield url
    finally:
        process.terminate()
        process.wait(20)


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


def signed_in(url: str, email: str, password: str) -> requests.Session:
    """Return a session signed in through the login form."""
    session = requests.Session()
    form = session.get(f"{url}/login", timeout=10).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', form).group(1)
    answer = session.post(f"{url}/login", timeout=10, allow_redirects=False,
                          data={"email": email, "password": password, "csrf_token": token})
    assert answer.status_code == 302, answer.text[:300]
    return session


def timed_get(session: requests.Session, url: str) -> tuple[float, requests.Response]:
    started = time.monotonic()
    response = session.get(url, timeout=30, allow_redirects=False)
    return time.monotonic() - started, response


def assert_clear_outage(response: requests.Response) -> None:
    assert response.status_code == 503
    assert "temporarily unavailable" in response.text
    assert "Traceback" not in response.text


def test_hung_redis_gives_a_quick_503_and_service_resumes(kw_env, own_redis, tmp_path):
    with db.connect(kw_env["KILOWATCH_DATABASE_URL"], autocommit=True) as conn:
        user = make_user(conn, email="redis-outage@example.com", role="superadmin")
    log_path = tmp_path / "web.log"
    with web({**kw_env, "KILOWATCH_REDIS_URL": own_redis.url}, log_path) as url:
        session = signed_in(url, user.email, user.password)
        assert timed_get(session, f"{url}/")[1].status_code == 200
        own_redis.pause()
        try:
            # As many requests at once as the web app has threads: none may stay stuck.
            with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
                answers = list(pool.map(lambda path: timed_get(session, url + path),
                                        ["/", "/healthz", "/alarms", "/healthz"]))
            for seconds, response in answers:
                assert seconds < REDIS_BOUND_S, f"{response.url} took {seconds:.1f} s"
                assert_clear_outage(response)
            assert answers[1][1].json()["status"] == "unavailable"
        finally:
            own_redis.resume()
        wait_for(lambda: timed_get(session, f"{url}/")[1].status_code == 200,
                 what="pages served again once Redis answers", timeout_s=30)
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:  # every thread free again
            answers = list(pool.map(lambda path: timed_get(session, url + path),
                                    ["/healthz"] * THREADS))
        assert [response.status_code for _, response in answers] == [200] * THREADS
    log = log_path.read_text()
    assert "Redis unavailable" in log and "Traceback" not in log


def test_stopped_database_gives_503_within_seconds_and_recovers(kw_env, own_database,
                                                                 tmp_path):
    with db.connect(own_database.url, autocommit=True) as conn:
        user = make_user(conn, email="db-outage@example.com", role="superadmin")
    log_path = tmp_path / "web.log"
    with web({**kw_env, "KILOWATCH_DATABASE_URL": own_database.url}, log_path) as url:
        session = signed_in(url, user.email, user.password)
        assert timed_get(session, f"{url}/")[1].status_code == 200
        own_database.stop()
        try:
            for path in ("/", "/healthz"):
                seconds, response = timed_get(session, url + path)
                assert seconds < DATABASE_BOUND_S, f"{path} took {seconds:.1f} s"
                assert_clear_outage(response)
        finally:
            own_database.start()
        wait_for(lambda: timed_get(session, f"{url}/")[1].status_code == 200,
                 what="pages served again once PostgreSQL is back", timeout_s=30)
        assert timed_get(session, f"{url}/healthz")[1].status_code == 200
    log = log_path.read_text()
    assert "PostgreSQL unavailable" in log and "Traceback" not in log
