"""Invitations and password-reset links end to end: outbox, a real SMTP server, the link pages."""

from __future__ import annotations

import hashlib
import re

from kilowatch.accounts import passwords
from tests.auth.mail import deliver, link_of, mails_to, path_of
from tests.dashboards.conftest import call_callback, csrf_token, login, make_user, unique_email

NEW_PASSWORD = "a password chosen from a link"


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _forgot(client, email: str, ip: str):
    token = csrf_token(client, "/login/forgot")
    return client.post("/login/forgot", data={"email": email, "csrf_token": token},
                       environ_base={"REMOTE_ADDR": ip})


def _open(client, link: str):
    """Follow an e-mailed link as the browser does; return the page it lands on."""
    opened = client.get(path_of(link))
    assert opened.status_code == 302
    assert opened.headers["Location"] == "/account/new-password"
    return client.get("/account/new-password")


def _choose(client, password: str, confirm: str | None = None, *, token: str | None = None):
    token = token if token is not None else csrf_token(client, "/account/new-password")
    return client.post("/account/new-password", data={
        "new": password, "confirm": confirm or password, "csrf_token": token})


def _reset_link(app, settings, smtp, email: str, ip: str) -> str:
    assert _forgot(app.server.test_client(), email, ip).status_code == 200
    messages = mails_to(settings, smtp, email)
    assert messages, f"no reset e-mail for {email}"
    return link_of(messages[-1])


def _viewer(conn, tenants, prefix: str):
    return make_user(conn, email=unique_email(prefix), role="viewer", company_id=tenants.a.id)


def _hash(conn, email: str) -> str | None:
    return conn.execute("SELECT password_hash FROM users WHERE email = %s",
                        (email,)).fetchone()["password_hash"]


def _text(response) -> str:
    return response.get_data(as_text=True)


def test_invitation_arrives_in_the_users_language_and_its_link_works_once(
        app, conn, settings, smtp, tenants):
    email = unique_email("invited")
    created = call_callback(_as(app, tenants.a.admin), app, "admin-users-message.children", {
        "admin-users-create.n_clicks": 1, "admin-users-company.value": str(tenants.a.id),
        "admin-users-email.value": email, "admin-users-new-role.value": "operator",
        "admin-users-language.value": "fr", "admin-users-changed.data": 0},
        triggered="admin-users-create.n_clicks")
    assert "invitation" in _text(created)
    assert login(app.server.test_client(), email, "any password at all").status_code == 401

    [message] = mails_to(settings, smtp, email)
    assert message["Subject"] == ("[Kilowatch] Votre compte Kilowatch : choisissez votre mot "
                                  "de passe")
    link = link_of(message)
    token = link.rsplit("/", 1)[1]
    stored = conn.execute("SELECT token_hash FROM account_tokens t JOIN users u ON u.id = "
                          "t.user_id WHERE u.email = %s", (email,)).fetchone()
    assert bytes(stored["token_hash"]) == hashlib.sha256(token.encode()).digest()
    sent = conn.execute("SELECT secret, text_body || html_body AS bodies FROM email_outbox "
                        "WHERE recipient = %s", (email,)).fetchone()
    assert sent["secret"] is None and token not in sent["bodies"]  # the kept copy opens nothing

    invitee = app.server.test_client()
    page = _open(invitee, link)
    assert page.status_code == 200 and email in _text(page) and "Welcome" in _text(page)
    chosen = _choose(invitee, NEW_PASSWORD)
    assert chosen.headers["Location"] == "/login?password_set=1"
    assert "Your password is set" in _text(invitee.get(chosen.headers["Location"]))
    assert login(invitee, email, NEW_PASSWORD).headers["Location"] == "/"
    assert invitee.get("/").status_code == 200

    again = app.server.test_client()
    reused = _open(again, link)
    assert reused.status_code == 410 and "already been used" in _text(reused)
    stored_hash = _hash(conn, email)
    assert _choose(again, "someone else's password",
                   token=csrf_token(again, "/login/forgot")).status_code == 410
    assert _hash(conn, email) == stored_hash


def _without_token(response) -> str:
    return re.sub(r'value="[^"]{40,}"', "", _text(response))


def test_unknown_address_gets_the_same_answer_and_no_mail(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "known")
    unknown = unique_email("nobody")
    answer_known = _forgot(app.server.test_client(), account.email, "10.20.0.1")
    answer_unknown = _forgot(app.server.test_client(), unknown, "10.20.0.2")
    assert answer_known.status_code == answer_unknown.status_code == 200
    assert _without_token(answer_known) == _without_token(answer_unknown)
    assert "If an account uses this address" in _text(answer_unknown)
    deliver(settings, smtp)
    assert smtp.to(unknown) == []
    [message] = smtp.to(account.email)
    assert message["Subject"] == "[Kilowatch] Reset your Kilowatch password"
    assert conn.execute("SELECT count(*) AS n FROM email_outbox WHERE recipient = %s",
                        (unknown,)).fetchone()["n"] == 0


def test_a_deactivated_account_gets_no_mail_and_its_links_stop_working(app, conn, settings,
                                                                       smtp, tenants):
    account = _viewer(conn, tenants, "leaver")
    link = _reset_link(app, settings, smtp, account.email, "10.21.0.1")
    deactivate = call_callback(_as(app, tenants.a.admin), app, "admin-users-message.children", {
        "admin-users-deactivate.n_clicks": 1, "admin-users-selected.value": str(account.id),
        "admin-users-changed.data": 0}, triggered="admin-users-deactivate.n_clicks")
    assert "deactivated" in _text(deactivate)
    assert _forgot(app.server.test_client(), account.email, "10.21.0.2").status_code == 200
    assert len(mails_to(settings, smtp, account.email)) == 1  # the first one only
    refused = _open(app.server.test_client(), link)
    assert refused.status_code == 404 and "not valid" in _text(refused)


def test_expired_link_says_so_and_changes_nothing(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "late")
    link = _reset_link(app, settings, smtp, account.email, "10.22.0.1")
    conn.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second' "
                 "WHERE user_id = %s", (account.id,))
    client = app.server.test_client()
    page = _open(client, link)
    assert page.status_code == 410 and "This link has expired" in _text(page)
    assert _choose(client, NEW_PASSWORD, token=csrf_token(client, "/login/forgot")
                   ).status_code == 410
    assert login(app.server.test_client(), account.email, account.password).status_code == 302
    assert login(app.server.test_client(), account.email, NEW_PASSWORD).status_code == 401


def test_reset_link_is_single_use(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "twice")
    link = _reset_link(app, settings, smtp, account.email, "10.23.0.1")
    first = app.server.test_client()
    _open(first, link)
    assert _choose(first, NEW_PASSWORD).status_code == 302
    second = app.server.test_client()
    page = _open(second, link)
    assert page.status_code == 410 and "already been used" in _text(page)
    assert login(app.server.test_client(), account.email, NEW_PASSWORD).status_code == 302


def test_link_stops_working_once_the_password_changed(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "changer")
    older = _reset_link(app, settings, smtp, account.email, "10.24.0.1")
    newer = _reset_link(app, settings, smtp, account.email, "10.24.0.2")
    assert older != newer
    client = _as(app, account)
    changed = client.post("/account/password", data={
        "current": account.password, "new": "changed by the user", "confirm":
        "changed by the user", "csrf_token": csrf_token(client, "/account/password")})
    assert changed.status_code == 200
    for link in (older, newer):
        visitor = app.server.test_client()
        page = _open(visitor, link)
        assert page.status_code == 410 and "password was changed after it was sent" in _text(page)
    assert login(app.server.test_client(), account.email, "changed by the user").status_code == 302


def test_using_one_link_outdates_the_others(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "many")
    first = _reset_link(app, settings, smtp, account.email, "10.25.0.1")
    second = _reset_link(app, settings, smtp, account.email, "10.25.0.2")
    client = app.server.test_client()
    _open(client, second)
    assert _choose(client, NEW_PASSWORD).status_code == 302
    page = _open(app.server.test_client(), first)
    assert page.status_code == 410 and "password was changed" in _text(page)


def test_reset_is_throttled_per_address_with_the_same_answer(app, conn, settings, smtp,
                                                             tenants):
    account = _viewer(conn, tenants, "flooded")
    answers = [_forgot(app.server.test_client(), account.email.upper() if n % 2 else
                       account.email, f"10.26.0.{n}") for n in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 5
    assert len({_without_token(answer) for answer in answers}) == 1
    assert len(mails_to(settings, smtp, account.email)) == 3  # the limit: 3 per hour


def test_reset_is_throttled_per_client(app, conn, settings, smtp, tenants):
    client = app.server.test_client()
    for n in range(20):
        assert _forgot(client, f"guess{n}@example.com", "10.27.0.1").status_code == 200
    account = _viewer(conn, tenants, "blocked")
    throttled = _forgot(client, account.email, "10.27.0.1")
    assert throttled.status_code == 429 and "Too many requests" in _text(throttled)
    assert mails_to(settings, smtp, account.email) == []
    assert _forgot(client, account.email, "10.27.0.2").status_code == 200
    assert len(mails_to(settings, smtp, account.email)) == 1


def test_reset_ends_every_session_of_the_user(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "robbed")
    laptop, phone = _as(app, account), _as(app, account)
    bystander = _as(app, tenants.a.viewer)
    assert laptop.get("/_dash-layout").status_code == phone.get("/_dash-layout").status_code \
        == 200
    link = _reset_link(app, settings, smtp, account.email, "10.28.0.1")
    owner = app.server.test_client()
    _open(owner, link)
    assert _choose(owner, NEW_PASSWORD).status_code == 302
    assert laptop.get("/_dash-layout").status_code == 401
    assert phone.get("/").headers["Location"].startswith("/login")
    assert bystander.get("/_dash-layout").status_code == 200
    assert conn.execute("SELECT count(*) AS n FROM login_sessions WHERE user_id = %s",
                        (account.id,)).fetchone()["n"] == 0


def test_the_link_page_applies_the_password_policy_and_csrf(app, conn, settings, smtp, tenants):
    account = _viewer(conn, tenants, "policy")
    link = _reset_link(app, settings, smtp, account.email, "10.29.0.1")
    client = app.server.test_client()
    _open(client, link)
    short = _choose(client, "too short")
    assert short.status_code == 400 and "Field must be between 12" in _text(short)
    differ = _choose(client, NEW_PASSWORD, "another password entirely")
    assert differ.status_code == 400 and "The two passwords differ." in _text(differ)
    forged = client.post("/account/new-password", data={"new": NEW_PASSWORD,
                                                         "confirm": NEW_PASSWORD})
    assert forged.status_code == 400
    assert _hash(conn, account.email) is not None
    assert passwords.verify_password(_hash(conn, account.email), account.password)
    assert _choose(client, NEW_PASSWORD).status_code == 302  # the link still worked after all


def test_an_smtp_outage_delays_the_invitation_but_loses_nothing(app, conn, settings, smtp,
                                                                tenants):
    account = _viewer(conn, tenants, "patient")
    smtp.stop()
    try:
        assert _forgot(app.server.test_client(), account.email, "10.30.0.1").status_code == 200
        assert deliver(settings, smtp)["waiting"] >= 1
    finally:
        smtp.start()
    conn.execute("UPDATE email_outbox SET next_attempt_at = now() WHERE recipient = %s",
                 (account.email,))
    [message] = mails_to(settings, smtp, account.email)
    client = app.server.test_client()
    assert _open(client, link_of(message)).status_code == 200


def test_a_garbage_link_is_not_valid(client):
    page = _open(client, "http://x/account/reset/" + "A" * 300)
    assert page.status_code == 404 and "This link is not valid" in _text(page)
    assert client.get("/account/new-password").status_code == 404
