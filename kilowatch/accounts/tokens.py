"""Single-use links to choose a password: issue them, check them, and redeem them once.

A link carries 32 random bytes; only their SHA-256 is stored (``account_tokens``).
An invitation works for :data:`LIFETIMES` ``["invitation"]`` (72 h), a reset
link for 2 h. A link works once, only while its user is active, and only while
the user's password is the one it was issued for: any password change (by this
link, another one, the user or an administrator) makes it useless.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta

import psycopg

from kilowatch.access import system_scope
from kilowatch.accounts import users
from kilowatch.errors import UserFacingError

LIFETIMES = {"invitation": timedelta(hours=72), "reset": timedelta(hours=2)}
# Where the web app serves each kind of link; the token follows the path.
LINK_PATHS = {"invitation": "/account/invitation/", "reset": "/account/reset/"}
# An expired link is kept a while, so that opening it says "expired", not "not valid".
KEEP_EXPIRED = timedelta(days=30)
MAX_TOKEN_LENGTH = 100  # a token is 43 characters; anything longer is not worth hashing

PROBLEMS = {
    "unknown": "This link is not valid. Check that you opened it whole, or ask for a new one.",
    "used": "This link has already been used. Sign in with your password, "
            "or ask for a new link.",
    "expired": "This link has expired. Ask for a new one.",
    "replaced": "This link no longer works: the password was changed after it was sent. "
                "Sign in with your password, or ask for a new link.",
}


class LinkError(UserFacingError, ValueError):
    """A link that cannot be used; ``problem`` is a key of :data:`PROBLEMS`."""

    def __init__(self, problem: str) -> None:
        super().__init__(PROBLEMS[problem])
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Link:
    """A usable link and the account it opens."""

    purpose: str
    user_id: int
    email: str
    language: str


def digest(token: str) -> bytes:
    """Return the stored form of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def issue(conn: psycopg.Connection, user_id: int, purpose: str) -> tuple[str, datetime]:
    """Store a new link for a user; return its token (to be e-mailed, never stored) and expiry."""
    token = secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO account_tokens (user_id, purpose, token_hash, password_changed_at, "
        "expires_at) SELECT id, %s, %s, password_changed_at, now() + %s FROM users "
        "WHERE id = %s RETURNING expires_at",
        (purpose, digest(token), LIFETIMES[purpose], user_id)).fetchone()
    if row is None:
        raise users.AccountError(f"no user {user_id}")
    return token, row["expires_at"]


def _find(conn: psycopg.Connection, token: str, *, lock: bool) -> dict:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise LinkError("unknown")
    row = conn.execute(
        "SELECT t.id, t.purpose, t.user_id, t.used_at, t.expires_at <= now() AS expired, "
        "t.password_changed_at IS DISTINCT FROM u.password_changed_at AS replaced, "
        "u.email, u.language, u.active FROM account_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = %s" + (" FOR UPDATE OF t, u" if lock else ""),
        (digest(token),)).fetchone()
    if row is None or not row["active"]:
        raise LinkError("unknown")
    if row["used_at"] is not None:
        raise LinkError("used")
    if row["expired"]:
        raise LinkError("expired")
    if row["replaced"]:
        raise LinkError("replaced")
    return row


def check(conn: psycopg.Connection, token: str) -> Link:
    """Return what a token opens, or raise LinkError saying why it cannot be used."""
    row = _find(conn, token, lock=False)
    return Link(row["purpose"], row["user_id"], row["email"], row["language"])


def redeem(conn: psycopg.Connection, token: str, password_hash: str) -> Link:
    """Set the password a link was sent for, use the link up, and end the user's sessions."""
    with conn.transaction():
        row = _find(conn, token, lock=True)
        scope = users.build_scope(conn, system_scope("link"), row["user_id"])
        conn.execute("UPDATE account_tokens SET used_at = now() WHERE id = %s", (row["id"],))
        action = "user.accept_invitation" if row["purpose"] == "invitation" else \
            "user.reset_own_password"
        users.change_own_password(conn, scope, password_hash, action=action)
    return Link(row["purpose"], row["user_id"], row["email"], row["language"])


def purge_expired(conn: psycopg.Connection) -> int:
    """Delete the links expired for longer than :data:`KEEP_EXPIRED`; return how many."""
    return conn.execute("DELETE FROM account_tokens WHERE expires_at < now() - %s",
                        (KEEP_EXPIRED,)).rowcount
