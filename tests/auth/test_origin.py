"""State-changing requests from another site are refused by their Origin (or Referer)."""

from __future__ import annotations

import secrets

import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from kilowatch.devices import lifecycle
from tests.dashboards.conftest import call_callback, csrf_token, login

OWN = "http://localhost"  # the test client's host


def _login_form(client, account) -> dict:
    return {"email": account.email, "password": account.password,
            "csrf_token": csrf_token(client)}


@pytest.mark.parametrize("origin", ["https://evil.example", "http://localhost.evil.example",
                                    "http://localhost:8051", "https://localhost", "null"])
def test_a_cross_site_login_post_is_refused(client, tenants, origin):
    response = client.post("/login", data=_login_form(client, tenants.a.viewer),
                           headers={"Origin": origin})
    assert response.status_code == 403
    assert "cross-site request refused" in response.get_json()["error"]
    assert client.get("/").status_code == 302  # not signed in


def test_a_same_origin_login_post_is_taken(client, tenants):
    response = client.post("/login", data=_login_form(client, tenants.a.viewer),
                           headers={"Origin": OWN})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_the_base_url_origin_is_taken_behind_a_proxy(client, tenants, settings):
    # nginx speaks https to the browser and http to the app: the request's own origin differs.
    response = client.post("/login", data=_login_form(client, tenants.a.viewer),
                           headers={"Origin": settings.base_url.rstrip("/")})
    assert response.status_code == 302


def test_without_origin_the_referer_decides(client, tenants):
    form = _login_form(client, tenants.a.viewer)
    refused = client.post("/login", data=form, headers={"Referer": "https://evil.example/x"})
    assert refused.status_code == 403
    taken = client.post("/login", data=form, headers={"Referer": f"{OWN}/login"})
    assert taken.status_code == 302


def test_a_client_sending_neither_header_is_not_refused(client, tenants):
    assert login(client, tenants.a.viewer.email, tenants.a.viewer.password).status_code == 302


def test_a_cross_site_dash_callback_is_refused(app, client, tenants):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    same = call_callback(client, app, "alarms-grid.rowData", {"alarms-refresh.n_intervals": 1})
    assert same.status_code == 200
    client.environ_base["HTTP_ORIGIN"] = "https://evil.example"
    try:
        forged = call_callback(client, app, "alarms-grid.rowData",
                               {"alarms-refresh.n_intervals": 2})
    finally:
        del client.environ_base["HTTP_ORIGIN"]
    assert forged.status_code == 403
    assert "rowData" not in forged.get_data(as_text=True)


def test_a_cross_site_sign_out_is_refused(client, tenants):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    token = csrf_token(client, "/logout")
    response = client.post("/logout", data={"csrf_token": token},
                           headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert client.get("/").status_code == 200  # still signed in


def test_reads_are_not_checked(client, tenants):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    assert client.get("/", headers={"Origin": "https://evil.example"}).status_code == 200


def test_device_activation_works_whatever_its_headers(client, conn):
    root = system_scope("test")
    company = fleet.create_company(conn, root, f"Origin {secrets.token_hex(3)}")
    site = fleet.create_site(conn, root, company_id=company, name="Origin site",
                             timezone="Europe/Paris")
    serial = f"ORG-{secrets.token_hex(4)}"
    _, code = lifecycle.register(conn, root, site_id=site, serial=serial, model="HES-XL",
                                 rated_power_kw=100, capacity_kwh=200)
    response = client.post("/api/device/activate", json={"serial": serial,
                                                          "activation_code": code},
                           headers={"Origin": "null"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["mqtt"]["username"] == serial
