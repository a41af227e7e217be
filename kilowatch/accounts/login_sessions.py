"""Each user's set of live login sessions, kept in PostgreSQL next to the account.

A session is known by the SHA-256 of its random id (the id itself travels only
in the signed cookie). The web app records a session at login and asks at
every request whether it is still in the set; signing out, a password change
or reset and a deactivation empty the user's set inside the same transaction
as the change, so that no path (web page, link, command line) can change a
password and leave an old session running.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import psycopg


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def record(conn: psycopg.Connection, user_id: int, session_id: str, *,
           lifetime_s: int) -> None:
    """Add a new session to the user's set, forgetting their sessions that are past it."""
    with conn.transaction():
        conn.execute("DELETE FROM login_sessions WHERE user_id = %s AND expires_at <= now()",
                     (user_id,))
        conn.execute("INSERT INTO login_sessions (id_hash, user_id, expires_at) "
                     "VALUES (%s, %s, now() + %s)",
                     (_digest(session_id), user_id, dt.timedelta(seconds=lifetime_s)))


def is_live(conn: psycopg.Connection, user_id: int, session_id: str) -> bool:
    """Say whether this session is still in the user's set and not past its lifetime."""
    row = conn.execute("SELECT 1 FROM login_sessions WHERE id_hash = %s AND user_id = %s "
                       "AND expires_at > now()", (_digest(session_id), user_id)).fetchone()
    return row is not None


def forget(conn: psycopg.Connection, session_id: str) -> None:
    """Remove one session from its user's set."""
    conn.execute("DELETE FROM login_sessions WHERE id_hash = %s", (_digest(session_id),))


def end_all(conn: psycopg.Connection, user_id: int) -> int:
    """End every session of a user (inside the caller's transaction); return how many."""
    return conn.execute("DELETE FROM login_sessions WHERE user_id = %s",
                        (user_id,)).rowcount


def count(conn: psycopg.Connection, user_id: int) -> int:
    """Return how many live sessions a user has."""
    return conn.execute("SELECT count(*) AS n FROM login_sessions WHERE user_id = %s "
                        "AND expires_at > now()", (user_id,)).fetchone()["n"]


def purge_expired(conn: psycopg.Connection) -> int:
    """Delete every session past its absolute lifetime (users who never came back)."""
    return conn.execute("DELETE FROM login_sessions WHERE expires_at <= now()").rowcount
