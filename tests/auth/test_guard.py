"""The deny-by-default guard: what is public, what needs a login, and how refusals look."""

from __future__ import annotations

import pytest

from tests.dashboards.conftest import dash_post, login

PROTECTED_PAGES = ["/", "/admin/users", "/admin/groups", "/site/1", "/no-such-page",
                   "/account/password"]
DASH_JSON = ["/_dash-layout", "/_dash-dependencies"]


@pytest.mark.parametrize("path", PROTECTED_PAGES)
def test_anonymous_page_request_redirects_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", DASH_JSON)
def test_anonymous_dash_json_gets_401(client, path):
    response = client.get(path)
    assert response.status_code == 401
    assert response.get_json() == {"error": "login required"}


def test_anonymous_callback_post_gets_401(client, tenants):
    response = dash_post(client, "_pages_content.children", [
        {"id": "_pages_location", "property": "pathname", "value": "/"}])
    assert response.status_code == 401
    assert tenants.a.name not in response.get_data(as_text=True)


def test_dash_component_bundles_need_a_login(client):
    response = client.get("/_dash-component-suites/dash/deps/polyfill@7.v3_0_0m1.12.1.js")
    assert response.status_code == 302


@pytest.mark.parametrize("path", ["/login", "/healthz", "/assets/style.css",
                                  "/assets/logo.svg", "/assets/favicon.ico",
                                  "/assets/bootstrap.min.css"])
def test_public_paths_answer_without_login(client, path):
    assert client.get(path).status_code == 200


def test_device_api_prefix_is_not_behind_login(client):
    # Nothing is served there yet; the guard lets it through to a plain 404.
    assert client.get("/api/device/anything").status_code == 404


def test_healthz_reports_ok(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_login_redirect_keeps_the_page_asked_for(client):
    assert client.get("/admin/users").headers["Location"] == "/login?next=/admin/users"


def test_logged_in_user_gets_the_app(client, tenants):
    assert login(client, tenants.a.viewer.email, tenants.a.viewer.password).status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_security_headers_are_set(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
