"""The mailer never sends an SMTP password in clear text unless told to."""

from __future__ import annotations

import pytest
from aiosmtpd.controller import Controller

from kilowatch.mailer import Mailer, MailError, build_message, parse_smtp_url
from tests.kilowatch.smtp_server import _Inbox, free_port


class _Authenticator:
    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.logins.append(auth_data.login.decode())
        return AuthResult(success=True)


@pytest.fixture
def plain_auth_server():
    """A real SMTP server that offers AUTH without STARTTLS (as a stripped answer would)."""
    authenticator = _Authenticator()
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    yield port, authenticator, inbox
    controller.stop()


def _message():
    return build_message(sender="k@example.com", recipient="admin@example.com",
                         subject="Test", text="hello", html="<p>hello</p>")


def test_password_is_not_sent_without_tls(plain_auth_server):
    port, authenticator, inbox = plain_auth_server
    config = parse_smtp_url(f"smtp://mailer:s3cret@127.0.0.1:{port}")
    with pytest.raises(MailError, match="refusing to send the password"), Mailer(config):
        pass
    assert authenticator.logins == []
    assert inbox.messages == []


def test_explicit_starttls_off_allows_a_plain_login(plain_auth_server):
    port, authenticator, inbox = plain_auth_server
    config = parse_smtp_url(f"smtp://mailer:s3cret@127.0.0.1:{port}?starttls=off")
    with Mailer(config) as mailer:
        mailer.send(_message())
    assert authenticator.logins == ["mailer"]
    assert len(inbox.messages) == 1


def test_without_credentials_plain_smtp_still_works(plain_auth_server):
    port, _, inbox = plain_auth_server
    with Mailer(parse_smtp_url(f"smtp://127.0.0.1:{port}")) as mailer:
        mailer.send(_message())
    assert len(inbox.messages) == 1
