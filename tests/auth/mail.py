"""Helpers for tests of the e-mailed links: deliver the outbox to a real SMTP server, read links."""

from __future__ import annotations

import dataclasses
import re
from email.message import EmailMessage
from urllib.parse import urlsplit

from kilowatch import db
from kilowatch.alarms import outbox
from kilowatch.settings import Settings
from tests.kilowatch.smtp_server import SmtpServer, bodies

LINK = re.compile(r"https?://\S+/account/(?:invitation|reset)/[A-Za-z0-9_-]+")


def deliver(settings: Settings, smtp: SmtpServer) -> dict[str, int]:
    """Send the due outbox e-mails to the test's SMTP server, as the worker's job does."""
    with db.connect(settings.database_url, autocommit=True) as conn:
        return outbox.send_due(conn, dataclasses.replace(settings, smtp_url=smtp.url))


def mails_to(settings: Settings, smtp: SmtpServer, address: str) -> list[EmailMessage]:
    """Deliver the outbox, then return every message the SMTP server received for an address."""
    deliver(settings, smtp)
    return smtp.to(address)


def link_of(message: EmailMessage) -> str:
    """Return the one link of an invitation or reset e-mail (checking both bodies carry it)."""
    text, html = bodies(message)
    links = set(LINK.findall(text))
    assert len(links) == 1, f"expected one link in {text!r}"
    link = links.pop()
    assert link in html
    return link


def path_of(link: str) -> str:
    """Return the path of a link, for a Flask test client."""
    return urlsplit(link).path
