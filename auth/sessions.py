"""Login sessions: a random id per login, kept in the user's session set, with two timeouts.

The signed Flask cookie carries the Flask-Login user id plus ``sid`` (a fresh
random id at every login, so a session planted before login is worthless),
``login_at``, ``seen_at`` and a fresh CSRF token. Two stores hold the session
on the server, and a request needs both:

- the user's session set in PostgreSQL (:mod:`kilowatch.accounts.login_sessions`),
  bounded by the absolute timeout. Signing out ends every session of the user;
  a password change or reset and a deactivation empty the set in the same
  transaction as the change, whichever path made it.
- ``key("session", sid)`` → user id in Redis, with a time to live of the idle
  timeout, renewed at each request but never past the absolute timeout.

So a copied cookie dies with the session, and no timestamp in the cookie
decides whether a session outlived a password change.
"""

from __future__ import annotations

import logging
import secrets
import time

from flask import current_app, g, session
from flask_wtf.csrf import generate_csrf

from auth import scope as auth_scope
from kilowatch.accounts import login_sessions
from kilowatch.redis_client import get_redis, key
from kilowatch.settings import Settings

log = logging.getLogger(__name__)

SESSION_KEYS = ("sid", "login_at", "seen_at")


def _settings() -> Settings:
    return current_app.config["KILOWATCH_SETTINGS"]


def _redis_key(sid: str) -> str:
    return key("session", sid, settings=_settings())


def start(user_id: int, *, remember: bool) -> str:
    """Begin a new session for a user who just proved who they are; return its id."""
    end()
    session.clear()
    now = int(time.time())
    sid = secrets.token_urlsafe(32)
    session.update(sid=sid, login_at=now, seen_at=now)
    _mint_csrf_token()
    # "Remember me" keeps the cookie across browser restarts; the timeouts still apply.
    session.permanent = remember
    settings = _settings()
    with auth_scope.connection() as conn:
        login_sessions.record(conn, user_id, sid, lifetime_s=settings.session_absolute_timeout)
    get_redis(settings).set(_redis_key(sid), str(user_id), ex=settings.session_idle_timeout)
    return sid


def _mint_csrf_token() -> None:
    # Every request rewrites the cookie, so a token first minted by one of several
    # concurrent requests (the navbar's, in /_dash-layout) would be lost to the others:
    # mint it with the session instead, after dropping Flask-WTF's copy of the old one.
    g.pop("csrf_token", None)
    generate_csrf()


def current_id() -> str | None:
    """Return the id of the current login session, if any."""
    return session.get("sid")


def is_alive(user_id: str | int) -> bool:
    """Say whether the session in the cookie is a live login of this user within both timeouts."""
    sid, login_at, seen_at = (session.get(name) for name in SESSION_KEYS)
    if not (isinstance(sid, str) and isinstance(login_at, int) and isinstance(seen_at, int)):
        return False
    settings = _settings()
    now = time.time()
    if now - login_at > settings.session_absolute_timeout:
        return False
    if now - seen_at > settings.session_idle_timeout:
        return False
    if get_redis(settings).get(_redis_key(sid)) != str(user_id):
        return False
    with auth_scope.connection() as conn:
        return login_sessions.is_live(conn, int(user_id), sid)


def touch() -> None:
    """Note activity: push the idle deadline forward, never past the absolute one."""
    settings = _settings()
    now = int(time.time())
    session["seen_at"] = now
    remaining = session["login_at"] + settings.session_absolute_timeout - now
    ttl = max(1, min(settings.session_idle_timeout, remaining))
    get_redis(settings).expire(_redis_key(session["sid"]), ttl)


def end() -> None:
    """Forget the current login session (this one only) on the server and in the cookie."""
    sid = session.get("sid")
    if isinstance(sid, str):
        with auth_scope.connection() as conn:
            login_sessions.forget(conn, sid)
        get_redis(_settings()).delete(_redis_key(sid))
    for name in SESSION_KEYS:
        session.pop(name, None)


def end_all(user_id: int) -> None:
    """Sign a user out everywhere: end every session of theirs, this one included."""
    with auth_scope.connection() as conn:
        ended = login_sessions.end_all(conn, user_id)
    end()
    log.info("user %s signed out: %d session(s) ended", user_id, ended)
