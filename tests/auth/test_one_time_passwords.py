"""The command line's accounts: printed one-time passwords that expire after 24 h, invitations."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

from tests.auth.mail import link_of, mails_to, path_of
from tests.dashboards.conftest import csrf_token, login, unique_email

EXPIRED = "This one-time password has expired"


def _cli(kw_env, *args, stdin=None):
    """Run the real ``kilowatch`` executable against this module's services."""
    return subprocess.run(["kilowatch", *args], env={**os.environ, **kw_env}, input=stdin,
                          capture_output=True, text=True, timeout=60)


def _printed_password(result) -> str:
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "one-time password" in line)
    assert "within 24 h" in line
    return line.rsplit(": ", 1)[1]


def _expires_at(conn, email: str) -> dt.datetime | None:
    return conn.execute("SELECT password_expires_at FROM users WHERE email = %s",
                        (email,)).fetchone()["password_expires_at"]


def _age_password(conn, email: str, hours: float) -> None:
    """Move the one-time password's expiry ``hours`` into the past (time passing, no sleep)."""
    conn.execute("UPDATE users SET password_expires_at = password_expires_at - %s "
                 "WHERE email = %s", (dt.timedelta(hours=hours), email))


def test_printed_one_time_password_expires_after_24_hours(app, conn, kw_env, tenants):
    email = unique_email("cli")
    password = _printed_password(_cli(kw_env, "user", "create", "--email", email, "--role",
                                      "viewer", "--company", tenants.a.name))
    left = _expires_at(conn, email) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)
    _age_password(conn, email, 23.9)  # 6 minutes left: still good
    assert login(app.server.test_client(), email, password).headers["Location"] == \
        "/account/password"
    _age_password(conn, email, 0.2)  # 24 h 6 min after it was printed
    late = login(app.server.test_client(), email, password)
    assert late.status_code == 401 and EXPIRED in late.get_data(as_text=True)
    wrong = login(app.server.test_client(), email, "not the one-time password")
    assert EXPIRED not in wrong.get_data(as_text=True)  # only the holder learns it expired


def test_choosing_a_password_removes_the_expiry(app, conn, kw_env, tenants):
    email = unique_email("cli")
    password = _printed_password(_cli(kw_env, "user", "create", "--email", email, "--role",
                                      "viewer", "--company", tenants.a.name))
    client = app.server.test_client()
    login(client, email, password)
    changed = client.post("/account/password", data={
        "current": password, "new": "my own lasting password", "confirm":
        "my own lasting password", "csrf_token": csrf_token(client, "/account/password")})
    assert changed.status_code == 200
    assert _expires_at(conn, email) is None
    assert client.get("/").status_code == 200


def test_set_password_prints_an_expiring_one_and_ends_sessions(app, conn, kw_env, tenants):
    email = unique_email("cli")
    _cli(kw_env, "user", "create", "--email", email, "--role", "viewer", "--company",
         tenants.a.name, "--password-stdin", stdin="first lasting password\n")
    assert _expires_at(conn, email) is None  # a chosen password does not expire
    signed_in = app.server.test_client()
    assert login(signed_in, email, "first lasting password").status_code == 302
    result = _cli(kw_env, "user", "set-password", "--user", email)
    password = _printed_password(result)
    assert "their sessions are ended" in result.stdout
    assert signed_in.get("/_dash-layout").status_code == 401
    _age_password(conn, email, 24.1)
    assert EXPIRED in login(app.server.test_client(), email, password).get_data(as_text=True)


def test_cli_invitation_is_e_mailed_and_its_link_works(app, conn, kw_env, settings, smtp,
                                                       tenants):
    email = unique_email("invited")
    result = _cli(kw_env, "user", "create", "--email", email, "--role", "admin", "--company",
                  tenants.b.name, "--invite")
    assert result.returncode == 0, result.stderr
    assert "invitation e-mail queued" in result.stdout and "password" not in result.stdout
    [message] = mails_to(settings, smtp, email)
    assert message["Subject"] == "[Kilowatch] Your Kilowatch account: choose your password"
    assert tenants.b.name in message.get_body(preferencelist=("plain",)).get_content()
    client = app.server.test_client()
    assert client.get(path_of(link_of(message))).status_code == 302
    chosen = client.post("/account/new-password", data={
        "new": "an invited admin's password", "confirm": "an invited admin's password",
        "csrf_token": csrf_token(client, "/account/new-password")})
    assert chosen.status_code == 302
    assert login(client, email, "an invited admin's password").status_code == 302

    again = _cli(kw_env, "user", "invite", "--user", email)
    assert again.returncode == 0 and "password reset link e-mail queued" in again.stdout
    assert mails_to(settings, smtp, email)[-1]["Subject"] == \
        "[Kilowatch] Reset your Kilowatch password"


def test_invite_and_password_stdin_exclude_each_other(kw_env, conn, tenants):
    email = unique_email("cli")
    result = _cli(kw_env, "user", "create", "--email", email, "--role", "viewer", "--company",
                  tenants.a.name, "--invite", "--password-stdin", stdin="some long password\n")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: --invite and --password-stdin exclude each other"]
    assert conn.execute("SELECT 1 FROM users WHERE email = %s", (email,)).fetchone() is None
