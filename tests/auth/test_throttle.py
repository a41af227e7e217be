"""Login throttling per account and per client address, in Redis."""

from __future__ import annotations

from tests.dashboards.conftest import csrf_token, login, make_user, unique_email

WRONG = "definitely not the password"


def _attempt(client, email: str, password: str, ip: str):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip})


def test_eleventh_rapid_wrong_password_for_one_account_is_throttled(app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    client = app.server.test_client()
    # Each attempt from another address: the account's own limit is what stops it.
    statuses = [_attempt(client, account.email, WRONG, f"10.1.0.{n}").status_code
                for n in range(10)]
    assert statuses == [401] * 10
    eleventh = _attempt(client, account.email, account.password, "10.1.0.99")
    assert eleventh.status_code == 429
    assert "Too many failed attempts" in eleventh.get_data(as_text=True)
    assert client.get("/").status_code == 302  # the right password did not get in
    other = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    assert _attempt(client, other.email, other.password, "10.1.0.99").status_code == 302


def test_email_case_does_not_bypass_the_account_limit(app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    client = app.server.test_client()
    for n in range(10):
        email = account.email.upper() if n % 2 else account.email
        assert _attempt(client, email, WRONG, f"10.2.0.{n}").status_code == 401
    assert _attempt(client, account.email.title(), WRONG, "10.2.0.50").status_code == 429


def test_successful_logins_do_not_count(app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    for n in range(12):
        client = app.server.test_client()
        assert _attempt(client, account.email, account.password,
                        f"10.3.0.{n}").status_code == 302


def test_one_address_trying_many_accounts_is_throttled(app, conn, tenants):
    app.server.config["KILOWATCH_LOGIN_LIMIT_IP"] = "20 per 15 minutes"
    client = app.server.test_client()
    for n in range(20):
        assert _attempt(client, f"guess{n}@example.com", WRONG, "10.4.0.1").status_code == 401
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    assert _attempt(client, account.email, account.password, "10.4.0.1").status_code == 429
    assert _attempt(client, account.email, account.password, "10.4.0.2").status_code == 302


def _change_password(client, current: str, ip: str = "10.5.0.1"):
    token = csrf_token(client, "/account/password")
    return client.post("/account/password", data={
        "current": current, "new": "a brand new passphrase", "confirm": "a brand new passphrase",
        "csrf_token": token}, environ_base={"REMOTE_ADDR": ip})


def test_guessing_the_current_password_is_throttled(app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    statuses = [_change_password(client, WRONG, f"10.5.0.{n}").status_code for n in range(10)]
    assert statuses == [400] * 10
    eleventh = _change_password(client, account.password, "10.5.1.1")
    assert eleventh.status_code == 429
    assert "Too many wrong current passwords" in eleventh.get_data(as_text=True)
    # The right password was not checked: the old one still signs in.
    assert login(app.server.test_client(), account.email, account.password).status_code == 302


def test_right_current_passwords_do_not_count(app, conn, tenants):
    account = make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)
    client = app.server.test_client()
    login(client, account.email, account.password)
    for _ in range(3):
        assert _change_password(client, WRONG).status_code == 400
    # The session continues across a change (a new one starts); the limit is per account.
    password = account.password
    for n in range(12):
        new = f"passphrase number {n:02d} is long"
        token = csrf_token(client, "/account/password")
        response = client.post("/account/password", data={
            "current": password, "new": new, "confirm": new, "csrf_token": token})
        assert response.status_code == 200, n
        password = new
