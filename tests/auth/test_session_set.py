"""Each user's session set: signing out, password resets and deactivation end every session."""

from __future__ import annotations

import hashlib

from kilowatch.access import system_scope
from kilowatch.accounts import passwords, users
from tests.dashboards.conftest import csrf_token, login, make_user, unique_email


def _signed_in(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    assert client.get("/_dash-layout").status_code == 200
    return client


def _fresh(conn, tenants):
    return make_user(conn, email=unique_email(), role="viewer", company_id=tenants.a.id)


def _sessions(conn, user_id: int) -> int:
    return conn.execute("SELECT count(*) AS n FROM login_sessions WHERE user_id = %s",
                        (user_id,)).fetchone()["n"]


def test_signing_out_ends_every_session_of_the_user(app, conn, tenants):
    account = _fresh(conn, tenants)
    laptop, phone = _signed_in(app, account), _signed_in(app, account)
    colleague = _signed_in(app, tenants.a.viewer)
    assert _sessions(conn, account.id) == 2
    signed_out = laptop.post("/logout", data={"csrf_token": csrf_token(laptop, "/logout")})
    assert signed_out.status_code == 302
    assert phone.get("/").headers["Location"] == "/login?expired=1"
    assert phone.get("/_dash-layout").status_code == 401
    assert colleague.get("/_dash-layout").status_code == 200
    assert _sessions(conn, account.id) == 0


def test_a_new_login_keeps_the_users_other_sessions(app, conn, tenants):
    account = _fresh(conn, tenants)
    laptop, phone = _signed_in(app, account), _signed_in(app, account)
    assert login(laptop, account.email, account.password).status_code == 302  # again
    assert phone.get("/_dash-layout").status_code == 200
    assert _sessions(conn, account.id) == 2  # the laptop's first session was replaced


def test_deactivation_ends_sessions_that_reactivation_does_not_bring_back(app, conn, tenants):
    account = _fresh(conn, tenants)
    client = _signed_in(app, account)
    users.set_active(conn, system_scope("test"), account.id, False)
    users.set_active(conn, system_scope("test"), account.id, True)
    assert client.get("/_dash-layout").status_code == 401
    assert _signed_in(app, account)  # a new login works


def test_an_administrators_password_reset_ends_the_users_sessions(app, conn, tenants):
    account = _fresh(conn, tenants)
    client = _signed_in(app, account)
    users.reset_password(conn, system_scope("test"), account.id,
                         passwords.hash_password("a one-time password"))
    assert client.get("/_dash-layout").status_code == 401


def test_the_session_set_holds_no_usable_session_id(app, conn, tenants):
    account = _fresh(conn, tenants)
    client = _signed_in(app, account)
    with client.session_transaction() as session:
        sid = session["sid"]
    stored = conn.execute("SELECT id_hash FROM login_sessions WHERE user_id = %s",
                          (account.id,)).fetchone()["id_hash"]
    assert bytes(stored) == hashlib.sha256(sid.encode()).digest()


def test_a_session_past_its_absolute_lifetime_in_the_set_is_refused(app, conn, tenants):
    account = _fresh(conn, tenants)
    client = _signed_in(app, account)
    conn.execute("UPDATE login_sessions SET expires_at = now() WHERE user_id = %s",
                 (account.id,))
    assert client.get("/_dash-layout").status_code == 401
