"""Request bodies over the limit get 413; client addresses come from trusted proxies only."""

from __future__ import annotations

import dataclasses

import pytest

from dashboards.app import create_app
from tests.dashboards.conftest import csrf_token, make_user, unique_email

WRONG = "definitely not the password"


@pytest.fixture(scope="module")
def small_app(settings):
    """The app with a 1 KB body limit and a login limit of 3 failures per address."""
    dash_app = create_app(dataclasses.replace(settings, max_content_length=1024))
    dash_app.server.config["KILOWATCH_LOGIN_LIMIT_IP"] = "3 per 15 minutes"
    return dash_app


def test_a_form_over_the_limit_gets_413_with_a_clear_line(small_app):
    client = small_app.server.test_client()
    response = client.post("/login", data={"email": "x" * 2000, "password": "y"})
    assert response.status_code == 413
    assert response.get_data(as_text=True) == (
        "The request is too large: at most 1 KB is accepted.\n")


def test_a_dash_request_over_the_limit_gets_413_in_json_before_the_guard(small_app):
    client = small_app.server.test_client()
    response = client.post("/_dash-update-component", json={"output": "x", "pad": "y" * 2000})
    assert response.status_code == 413
    assert "too large" in response.get_json()["error"]


def test_a_body_under_the_limit_is_taken(small_app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    client = small_app.server.test_client()
    response = client.post("/login", data={"email": account.email, "password": account.password,
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 302


def _wrong_login(client, forwarded_for: str, remote: str = "127.0.0.1"):
    return client.post("/login", data={"email": unique_email(), "password": WRONG,
                                       "csrf_token": csrf_token(client)},
                       headers={"X-Forwarded-For": forwarded_for},
                       environ_base={"REMOTE_ADDR": remote})


def test_without_trusted_proxies_a_forged_forwarded_for_is_ignored(small_app):
    client = small_app.server.test_client()
    # Every attempt claims another address: all count against the real one.
    statuses = [_wrong_login(client, f"10.20.0.{n}", remote="10.30.0.1").status_code
                for n in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_with_one_trusted_proxy_its_forwarded_for_is_the_client(settings):
    proxied = create_app(dataclasses.replace(settings, proxy_hops=1))
    proxied.server.config["KILOWATCH_LOGIN_LIMIT_IP"] = "3 per 15 minutes"
    client = proxied.server.test_client()
    # Through one nginx (one REMOTE_ADDR), distinct clients have distinct limits …
    assert [_wrong_login(client, f"10.40.0.{n}", remote="10.50.0.1").status_code
            for n in range(4)] == [401] * 4
    # … and one client is throttled whatever proxy address it comes through.
    assert [_wrong_login(client, "10.40.1.1", remote=f"10.50.1.{n}").status_code
            for n in range(4)] == [401, 401, 401, 429]
