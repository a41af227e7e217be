"""Login, logout, sessions, cookies, timeouts and password changes on the real app."""

from __future__ import annotations

import dataclasses
import re

import pytest

from dashboards.app import create_app
from kilowatch.access import system_scope
from kilowatch.accounts import passwords, users
from kilowatch.redis_client import get_redis, key
from tests.dashboards.conftest import (
    call_callback,
    csrf_token,
    finish_setup,
    login,
    make_user,
    unique_email,
)


def _session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie")
               if c.startswith("kilowatch_session=")]
    assert cookies, "no session cookie set"
    return cookies[-1]


def _sid(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("sid")


def _fresh_user(conn, tenants, **kwargs):
    return make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id, **kwargs)


def test_good_login_redirects_to_the_app(client, tenants):
    response = login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200


def test_login_follows_a_local_next_but_not_an_external_one(client, tenants):
    token = csrf_token(client)
    data = {"email": tenants.a.admin.email, "password": tenants.a.admin.password,
            "csrf_token": token}
    response = client.post("/login?next=/admin/users", data=data)
    assert response.headers["Location"] == "/admin/users"
    other = client.application.test_client()
    data["csrf_token"] = csrf_token(other)
    response = other.post("/login?next=//evil.example.com/", data=data)
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", [
    "/%09/evil.example", "/%0a/evil.example", "/%0d%0a/evil.example", "//evil.example",
    "///evil.example", "%5C%5Cevil.example", "/%5Cevil.example", "/%5C/evil.example",
    "https://evil.example", "http:evil.example", "javascript:alert(1)", "evil.example",
    "/%252F/evil.example".replace("%25", "%"), "%2F%2Fevil.example", "/%E3%80%80/evil.example",
])
def test_login_never_redirects_off_site(client, tenants, target):
    data = {"email": tenants.a.viewer.email, "password": tenants.a.viewer.password,
            "csrf_token": csrf_token(client)}
    response = client.post(f"/login?next={target}", data=data)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/site/3?range=7d", "/admin/users", "/alarms/12"])
def test_login_follows_a_path_of_the_site(client, tenants, target):
    data = {"email": tenants.a.viewer.email, "password": tenants.a.viewer.password,
            "csrf_token": csrf_token(client)}
    response = client.post("/login", query_string={"next": target}, data=data)
    assert response.headers["Location"] == target


def test_email_is_case_insensitive(client, tenants):
    assert login(client, tenants.a.viewer.email.upper(), tenants.a.viewer.password
                 ).status_code == 302


def test_unknown_user_and_wrong_password_get_the_same_answer(app, tenants):
    wrong = login(app.server.test_client(), tenants.a.viewer.email, "not the password at all")
    unknown = login(app.server.test_client(), "nobody@nowhere.example.com",
                    "not the password at all")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong e-mail or password." in wrong.get_data(as_text=True)
    assert "Wrong e-mail or password." in unknown.get_data(as_text=True)
    assert _without_token(wrong).replace(tenants.a.viewer.email, "X") == \
        _without_token(unknown).replace("nobody@nowhere.example.com", "X")


def _without_token(response) -> str:
    return re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "",
                  response.get_data(as_text=True))


def test_deactivated_user_cannot_log_in(client, conn, tenants):
    account = _fresh_user(conn, tenants)
    users.set_active(conn, system_scope("test"), account.id, False)
    response = login(client, account.email, account.password)
    assert response.status_code == 401
    assert "Wrong e-mail or password." in response.get_data(as_text=True)


def test_login_post_without_csrf_token_is_refused(client, tenants):
    client.get("/login")
    response = client.post("/login", data={"email": tenants.a.viewer.email,
                                           "password": tenants.a.viewer.password})
    assert response.status_code == 400
    assert "expired" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_login_post_with_a_forged_csrf_token_is_refused(client, tenants):
    client.get("/login")
    response = client.post("/login", data={"email": tenants.a.viewer.email,
                                           "password": tenants.a.viewer.password,
                                           "csrf_token": "forged"})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_session_id_changes_at_login(app, tenants):
    client = app.server.test_client()
    before = _session_cookie(client.get("/login"))
    response = login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    after = _session_cookie(response)
    assert before.split(";")[0] != after.split(";")[0]
    first_sid = _sid(client)
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    second_sid = _sid(client)
    assert first_sid and second_sid and first_sid != second_sid
    assert get_redis().get(key("session", first_sid)) is None


def test_cookie_planted_before_login_is_not_logged_in_afterwards(app, tenants):
    victim = app.server.test_client()
    planted = _session_cookie(victim.get("/login")).split(";")[0].split("=", 1)[1]
    attacker = app.server.test_client()
    attacker.set_cookie("kilowatch_session", planted)
    assert login(victim, tenants.a.viewer.email, tenants.a.viewer.password).status_code == 302
    assert attacker.get("/").status_code == 302


def test_session_cookie_flags(client, tenants):
    cookie = _session_cookie(login(client, tenants.a.viewer.email, tenants.a.viewer.password))
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    assert "Expires" not in cookie  # without "remember me" it ends with the browser


def test_no_hsts_over_plain_http(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers


@pytest.mark.parametrize(("overrides", "site"), [
    ({"base_url": "https://kilowatch.example"}, "https://kilowatch.example"),
    ({"secure_cookies": True}, "https://localhost"),  # the older flag
])
def test_https_makes_cookies_secure_and_sends_hsts(settings, tenants, overrides, site):
    https_app = create_app(dataclasses.replace(settings, **overrides))
    client = https_app.server.test_client()
    page = client.get("/login", base_url=site)
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                      page.get_data(as_text=True)).group(1)
    response = client.post("/login", base_url=site, headers={"Referer": f"{site}/login"}, data={
        "email": tenants.a.viewer.email, "password": tenants.a.viewer.password,
        "csrf_token": token})
    assert response.status_code == 302
    cookie = _session_cookie(response)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_pages_carry_the_security_headers(client):
    headers = client.get("/login").headers
    policy = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "object-src 'none'" in policy
    scripts = policy.split("script-src ")[1].split(";")[0].split()
    assert scripts[0] == "'self'" and all(s.startswith("'sha256-") for s in scripts[1:])
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"


def test_remember_me_keeps_the_cookie_until_the_absolute_timeout(client, settings, tenants):
    response = login(client, tenants.a.viewer.email, tenants.a.viewer.password, remember=True)
    cookie = _session_cookie(response)
    assert "Expires=" in cookie
    max_age = int(cookie.split("Max-Age=")[1].split(";")[0]) if "Max-Age=" in cookie else None
    assert max_age is None or max_age <= settings.session_absolute_timeout


def _navbar_sign_out_token(client) -> str:
    """Return the CSRF token of the navbar's sign-out form, as the browser receives it."""
    def find(node):
        if isinstance(node, dict):
            props = node.get("props", {})
            if props.get("name") == "csrf_token" and props.get("type") == "hidden":
                return props["value"]
            return find(props.get("children"))
        for child in node if isinstance(node, list) else ():
            if (token := find(child)) is not None:
                return token
        return None

    token = find(client.get("/_dash-layout").get_json())
    assert token, "no sign-out form with a CSRF token in the navbar"
    return token


def _sign_out(client, token: str | None):
    return client.post("/logout", data={} if token is None else {"csrf_token": token})


def test_sign_out_from_the_navbar_ends_the_session(client, tenants):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    response = _sign_out(client, _navbar_sign_out_token(client))
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/").headers["Location"].startswith("/login")
    assert client.get("/_dash-layout").status_code == 401


def test_navbar_token_survives_a_concurrent_request_rewriting_the_cookie(client, tenants):
    # The browser fetches /_dash-layout and /_dash-dependencies at once, with the same
    # cookie; each answer rewrites it, and the later one wins.
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    before = client.get_cookie("kilowatch_session").value
    token = _navbar_sign_out_token(client)
    client.set_cookie("kilowatch_session", before)
    assert client.get("/_dash-dependencies").status_code == 200
    assert _sign_out(client, token).status_code == 302


def test_a_get_of_logout_only_shows_the_sign_out_button(client, tenants):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    response = client.get("/logout")
    assert response.status_code == 200
    assert 'id="logout-submit"' in response.get_data(as_text=True)
    assert client.get("/").status_code == 200
    assert _sign_out(client, csrf_token(client, "/logout")).status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("token", [None, "", "not-the-token"])
def test_sign_out_without_the_sessions_csrf_token_is_refused(client, tenants, token):
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    response = _sign_out(client, token)
    assert response.status_code == 400
    assert "This sign-out button has expired" in response.get_data(as_text=True)
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_another_sessions_token_does_not_sign_out(app, tenants):
    client, other = app.server.test_client(), app.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    login(other, tenants.a.viewer.email, tenants.a.viewer.password)
    assert _sign_out(client, _navbar_sign_out_token(other)).status_code == 400
    assert client.get("/").status_code == 200


def test_sign_out_after_the_session_ended_goes_to_the_login_page(client):
    response = _sign_out(client, "whatever the page held")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_logout_ends_the_session_even_for_a_copied_cookie(app, tenants):
    client = app.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    copied = client.get_cookie("kilowatch_session").value
    assert _sign_out(client, _navbar_sign_out_token(client)).status_code == 302
    assert client.get("/").status_code == 302
    thief = app.server.test_client()
    thief.set_cookie("kilowatch_session", copied)
    assert thief.get("/").status_code == 302
    assert thief.get("/_dash-layout").status_code == 401


def _age_session(client, seconds: int) -> None:
    """Move the session's last activity ``seconds`` into the past (time passing, no sleep)."""
    with client.session_transaction() as session:
        session["seen_at"] -= seconds


def _interval_tick(client, app, site_id):
    """Post what a page's 5-second refresh posts: an update fired by ``n_intervals`` alone."""
    return call_callback(client, app, "schedule-delivery.children",
                         {"schedule-refresh.n_intervals": 7, "schedule-site-id.data": site_id},
                         triggered="schedule-refresh.n_intervals")


def test_idle_timeout_logs_out(settings, tenants):
    short = create_app(dataclasses.replace(settings, session_idle_timeout=100))
    client = short.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    for _ in range(3):  # activity keeps the session alive past the idle timeout
        _age_session(client, 90)
        assert client.get("/_dash-layout").status_code == 200
    _age_session(client, 101)
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?expired=1"
    assert client.get("/_dash-layout").status_code == 401


def test_a_page_refreshing_itself_does_not_keep_the_session_alive(settings, tenants):
    short = create_app(dataclasses.replace(settings, session_idle_timeout=100))
    finish_setup(short)
    client = short.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    _age_session(client, 60)
    assert _interval_tick(client, short, tenants.a.sites[0]).status_code == 200
    _age_session(client, 50)  # 110 s since the last click: the ticks did not count
    assert _interval_tick(client, short, tenants.a.sites[0]).status_code == 401
    assert client.get("/").headers["Location"].startswith("/login")


def test_a_click_beside_the_timer_counts_as_activity(settings, tenants):
    short = create_app(dataclasses.replace(settings, session_idle_timeout=100))
    finish_setup(short)
    client = short.server.test_client()
    login(client, tenants.a.viewer.email, tenants.a.viewer.password)
    _age_session(client, 60)
    both = call_callback(client, short, "schedule-delivery.children",
                         {"schedule-refresh.n_intervals": 8, "schedule-changed.data": 1,
                          "schedule-site-id.data": tenants.a.sites[0]})
    assert both.status_code == 200
    _age_session(client, 50)
    assert _interval_tick(client, short, tenants.a.sites[0]).status_code == 200


def test_absolute_timeout_logs_out_despite_activity(settings, conn, tenants):
    short = create_app(dataclasses.replace(settings, session_absolute_timeout=300,
                                           session_idle_timeout=100))
    client = short.server.test_client()
    user = _fresh_user(conn, tenants)
    login(client, user.email, user.password, remember=True)
    for _ in range(3):  # active every 90 s: only the absolute timeout can end it
        with client.session_transaction() as session:
            session["login_at"] -= 90
        _age_session(client, 90)
        assert client.get("/_dash-layout").status_code == 200
    with client.session_transaction() as session:
        session["login_at"] -= 31  # 301 s after the login
    assert client.get("/_dash-layout").status_code == 401
    assert client.get("/").headers["Location"].startswith("/login")


def test_expired_login_page_says_so(client):
    assert "session has ended" in client.get("/login?expired=1").get_data(as_text=True)


def test_deactivation_ends_a_running_session(client, conn, tenants):
    account = _fresh_user(conn, tenants)
    login(client, account.email, account.password)
    assert client.get("/_dash-layout").status_code == 200
    users.set_active(conn, system_scope("test"), account.id, False)
    assert client.get("/_dash-layout").status_code == 401


def _change(client, current: str, new: str, confirm: str | None = None):
    token = csrf_token(client, "/account/password")
    return client.post("/account/password", data={
        "current": current, "new": new, "confirm": confirm or new, "csrf_token": token})


def test_change_password_needs_the_current_one_and_12_characters(app, conn, tenants):
    account = _fresh_user(conn, tenants)
    client = app.server.test_client()
    login(client, account.email, account.password)
    assert _change(client, "wrong current password", "a brand new password").status_code == 400
    assert _change(client, account.password, "too short").status_code == 400
    assert _change(client, account.password, "a brand new password",
                   "another new password").status_code == 400
    response = _change(client, account.password, "a brand new password")
    assert response.status_code == 200
    assert "Your password has been changed." in response.get_data(as_text=True)
    assert client.get("/_dash-layout").status_code == 200  # this session continues
    assert login(app.server.test_client(), account.email, account.password).status_code == 401
    assert login(app.server.test_client(), account.email,
                 "a brand new password").status_code == 302


def test_sign_out_works_from_the_password_changed_page(app, conn, tenants):
    account = _fresh_user(conn, tenants)
    client = app.server.test_client()
    login(client, account.email, account.password)
    page = _change(client, account.password, "a brand new password").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    assert _sign_out(client, token).status_code == 302
    assert client.get("/").status_code == 302


def test_password_change_ends_the_other_sessions(app, conn, tenants):
    account = _fresh_user(conn, tenants)
    laptop, phone = app.server.test_client(), app.server.test_client()
    login(laptop, account.email, account.password)
    login(phone, account.email, account.password)
    assert _change(laptop, account.password, "a brand new password").status_code == 200
    assert laptop.get("/_dash-layout").status_code == 200
    assert phone.get("/_dash-layout").status_code == 401


def _signed_in_with_a_one_time_password(app, conn, tenants):
    """Create a viewer who must replace "one-time password 1", sign in; return client, answer."""
    email = unique_email()
    users.create_user(conn, system_scope("test"), email=email, role="viewer",
                      company_id=tenants.a.id, password_hash=passwords.hash_password(
                          "one-time password 1"), must_change_password=True)
    client = app.server.test_client()
    return client, login(client, email, "one-time password 1")


def test_one_time_password_must_be_replaced_first(app, conn, tenants):
    client, response = _signed_in_with_a_one_time_password(app, conn, tenants)
    assert response.headers["Location"] == "/account/password"
    assert client.get("/").headers["Location"] == "/account/password"
    assert client.get("/_dash-layout").status_code == 403
    assert _change(client, "one-time password 1", "my own password 123").status_code == 200
    assert client.get("/").status_code == 200


def test_one_time_password_user_can_sign_out_from_the_password_page(app, conn, tenants):
    client, _ = _signed_in_with_a_one_time_password(app, conn, tenants)
    assert 'id="password-logout"' in client.get("/account/password").get_data(as_text=True)
    assert _sign_out(client, csrf_token(client, "/account/password")).status_code == 302
    assert client.get("/account/password").headers["Location"].startswith("/login")


def test_outdated_hash_is_rehashed_at_login(client, conn, tenants):
    from argon2 import PasswordHasher

    account = _fresh_user(conn, tenants)
    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(account.password)
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s", (old, account.id))
    assert login(client, account.email, account.password).status_code == 302
    stored = conn.execute("SELECT password_hash, last_login_at FROM users WHERE id = %s",
                          (account.id,)).fetchone()
    assert stored["password_hash"] != old
    assert not passwords.needs_rehash(stored["password_hash"])
    assert passwords.verify_password(stored["password_hash"], account.password)
    assert stored["last_login_at"] is not None
