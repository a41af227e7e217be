"""E-mails that open an account: invitations and password-reset links, queued in the outbox.

Each e-mail carries a single-use link (:mod:`kilowatch.accounts.tokens`) to
``KILOWATCH_BASE_URL``; it is written to the durable outbox in the caller's
transaction, so an SMTP outage delays it but never loses it, and the token sits
in the outbox only until the e-mail is sent. The words are English or French,
after the user's language (English for the others).
"""

from __future__ import annotations

import html
import logging
from datetime import datetime

import psycopg

from kilowatch import audit
from kilowatch.access import AccessScope, system_scope
from kilowatch.accounts import tokens, users
from kilowatch.alarms import outbox
from kilowatch.alarms.texts import Email, html_page, language_of, subject_line

log = logging.getLogger(__name__)

TEXTS = {
    "en": {
        "invitation": {
            "subject": "Your Kilowatch account: choose your password",
            "intro": "Welcome to Kilowatch. An account has been created for you: {email}{company}.",
            "action": "Choose your password with the link below. It works once, until {expires}.",
            "button": "Choose my password",
            "footer": "If you did not expect this e-mail, ignore it: nobody can sign in to the "
                      "account before a password is chosen.",
        },
        "reset": {
            "subject": "Reset your Kilowatch password",
            "intro": "Someone, hopefully you, asked to reset the password of the Kilowatch "
                     "account {email}.",
            "action": "Choose a new password with the link below. It works once, until "
                      "{expires}. Choosing it signs you out everywhere.",
            "button": "Choose a new password",
            "footer": "If you did not ask for it, ignore this e-mail: your password stays "
                      "as it is.",
        },
    },
    "fr": {
        "invitation": {
            "subject": "Votre compte Kilowatch : choisissez votre mot de passe",
            "intro": "Bienvenue sur Kilowatch. Un compte a été créé pour vous : "
                     "{email}{company}.",
            "action": "Choisissez votre mot de passe avec le lien ci-dessous. Il ne sert qu'une "
                      "fois, jusqu'au {expires}.",
            "button": "Choisir mon mot de passe",
            "footer": "Si vous n'attendiez pas cet e-mail, ignorez-le : personne ne peut se "
                      "connecter au compte tant qu'aucun mot de passe n'est choisi.",
        },
        "reset": {
            "subject": "Réinitialisez votre mot de passe Kilowatch",
            "intro": "Quelqu'un, sans doute vous, a demandé à réinitialiser le mot de passe du "
                     "compte Kilowatch {email}.",
            "action": "Choisissez un nouveau mot de passe avec le lien ci-dessous. Il ne sert "
                      "qu'une fois, jusqu'au {expires}. Ce choix vous déconnecte partout.",
            "button": "Choisir un nouveau mot de passe",
            "footer": "Si vous n'avez rien demandé, ignorez cet e-mail : votre mot de passe "
                      "reste inchangé.",
        },
    },
}


def compose(purpose: str, *, email: str, company: str | None, language: str, link: str,
            expires_at: datetime) -> Email:
    """Return the invitation or reset e-mail for one account, with its link."""
    words = TEXTS[language_of(language)][purpose]
    company_part = f" ({company})" if company else ""
    intro = words["intro"].format(email=email, company=company_part)
    action = words["action"].format(expires=f"{expires_at:%Y-%m-%d %H:%M} UTC")
    text = "\n".join([intro, "", action, "", link, "", words["footer"], ""])
    body = (f"<p>{html.escape(action)}</p>"
            f"<p><a href=\"{html.escape(link)}\" style=\"display:inline-block;padding:8px 16px;"
            f"background:#0d6efd;color:#fff;text-decoration:none;border-radius:4px\">"
            f"{html.escape(words['button'])}</a></p>"
            f"<p style=\"font-size:12px;color:#6b7280\">{html.escape(link)}</p>")
    return Email(subject_line(words["subject"]), text,
                 html_page(words["subject"], intro, body, words["footer"]))


def _queue(conn: psycopg.Connection, user: dict, purpose: str, base_url: str) -> None:
    token, expires_at = tokens.issue(conn, user["id"], purpose)
    link = f"{base_url.rstrip('/')}{tokens.LINK_PATHS[purpose]}{outbox.SECRET_MARK}"
    mail = compose(purpose, email=user["email"], company=user.get("company_name"),
                   language=user["language"], link=link, expires_at=expires_at)
    outbox.enqueue(conn, user_id=user["id"], recipient=user["email"], subject=mail.subject,
                   text=mail.text, html=mail.html, secret=token)


def invite(conn: psycopg.Connection, scope: AccessScope, user_id: int, *, base_url: str) -> dict:
    """E-mail a link to choose a password to a user the caller manages; return the user.

    A user who never chose a password gets an invitation, anyone else a reset link.
    """
    with conn.transaction():
        user = users.manageable_user(conn, scope, user_id)
        if not user["active"]:
            raise users.AccountError(f"{user['email']} is deactivated; activate them first")
        purpose = "reset" if user["has_password"] else "invitation"
        _queue(conn, user, purpose, base_url)
        audit.record(conn, scope, f"user.send_{purpose}", target=f"user:{user_id}",
                     company_id=user["company_id"], after={"email": user["email"]})
    return {**user, "purpose": purpose}


def create_and_invite(conn: psycopg.Connection, scope: AccessScope, *, base_url: str,
                      **fields) -> int:
    """Create an account without a password and e-mail its invitation; return its id."""
    with conn.transaction():
        user_id = users.create_user(conn, scope, password_hash=None,
                                    must_change_password=False, **fields)
        invite(conn, scope, user_id, base_url=base_url)
    return user_id


def request_reset(conn: psycopg.Connection, email: str, *, base_url: str) -> bool:
    """Queue a reset link for the active account with this e-mail; say whether there was one.

    The caller must answer the same either way: the result is for logs and tests.
    """
    with conn.transaction():
        account = users.find_login(conn, system_scope("password reset"), email)
        if account is None or not account["active"]:
            log.info("password reset asked for an unknown or inactive address")
            return False
        _queue(conn, account, "reset", base_url)
    log.info("password reset link queued for user %s", account["id"])
    return True
