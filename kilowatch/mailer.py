"""Send e-mails over SMTP as ``KILOWATCH_SMTP_URL`` says, with the standard library.

- ``smtps://user:password@host:465`` — TLS from the first byte (``SMTP_SSL``);
- ``smtp://host:587`` — STARTTLS when the server offers it (``?starttls=required``
  refuses to send without it, ``?starttls=off`` never tries), then login when the
  URL carries a user. A password is never sent over an unencrypted connection
  unless the URL says ``?starttls=off`` (an explicit choice, e.g. a local relay).

Certificates are verified with the system's trust store. One :class:`Mailer`
holds one connection for a batch of messages.
"""

from __future__ import annotations

import dataclasses
import email.message
import email.utils
import smtplib
import ssl
from collections.abc import Iterable
from urllib.parse import parse_qs, unquote, urlsplit

STARTTLS_MODES = ("auto", "required", "off")
Attachment = tuple[str, str, bytes]  # file name, content type, content


class MailError(RuntimeError):
    """The SMTP server could not be reached or refused to talk."""


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    """Where and how to reach the SMTP server."""

    host: str
    port: int
    implicit_tls: bool
    starttls: str
    username: str | None
    password: str | None
    timeout_s: float = 20.0


def parse_smtp_url(url: str) -> SmtpConfig:
    """Read an ``smtp://`` or ``smtps://`` URL into a config; raise ValueError when bad."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("the SMTP URL looks like smtp://[user:password@]host[:port]")
    implicit = parts.scheme == "smtps"
    mode = parse_qs(parts.query).get("starttls", ["off" if implicit else "auto"])[-1]
    if mode not in STARTTLS_MODES:
        raise ValueError(f"starttls must be one of {', '.join(STARTTLS_MODES)}")
    return SmtpConfig(host=parts.hostname, port=parts.port or (465 if implicit else 25),
                      implicit_tls=implicit, starttls=mode,
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password else None)


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str,
                  attachments: Iterable[Attachment] = ()) -> email.message.EmailMessage:
    """Return a message with a plain-text and an HTML body, and any attached files.

    ``attachments`` are (file name, content type, bytes); with them the message is
    multipart/mixed around the multipart/alternative bodies.
    """
    message = email.message.EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain="kilowatch")
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    for name, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message


class Mailer:
    """One SMTP session: ``with Mailer(config) as mailer: mailer.send(message)``."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> Mailer:
        config = self.config
        context = ssl.create_default_context()
        try:
            if config.implicit_tls:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port,
                                                      timeout=config.timeout_s, context=context)
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
            smtp.ehlo()
            encrypted = config.implicit_tls
            if not config.implicit_tls and config.starttls != "off":
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                    encrypted = True
                elif config.starttls == "required" or config.username:
                    # Someone on the path can strip STARTTLS from the server's answer:
                    # without it, a login would send the password in clear text.
                    smtp.close()
                    raise MailError("the SMTP server does not offer STARTTLS; refusing to "
                                    "send the password unencrypted (use smtps:// or "
                                    "?starttls=off to allow it)")
            if config.username and (encrypted or config.starttls == "off"):
                smtp.login(config.username, config.password or "")
        except (OSError, smtplib.SMTPException) as error:
            raise MailError(f"cannot talk to {config.host}:{config.port}: {error}") from error
        self._smtp = smtp
        return self

    def send(self, message: email.message.EmailMessage) -> None:
        """Send one message; SMTP errors propagate (the caller decides to retry or give up)."""
        if self._smtp is None:
            raise MailError("the mailer is not connected")
        self._smtp.send_message(message)

    def __exit__(self, *exc) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None
