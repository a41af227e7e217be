"""The logged-in user of this request and their access scope, loaded fresh from the database.

Flask-Login calls :func:`load_user` once per request; the user carries the
:class:`~kilowatch.access.AccessScope` built from their role, company and
group grants at that moment, so a revoked grant or a deactivated account
takes effect at the very next request.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import psycopg
from flask import current_app
from flask_login import current_user

from kilowatch import db
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.accounts import users
from kilowatch.ids import parse_id
from kilowatch.settings import Settings


@dataclasses.dataclass(frozen=True)
class SessionUser:
    """The person behind a request, as Flask-Login sees them."""

    id: int
    email: str
    display_name: str
    role: str
    company_id: int | None
    company_name: str | None
    language: str
    must_change_password: bool
    scope: AccessScope

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """Return the id Flask-Login keeps in the session."""
        return str(self.id)


def app_settings() -> Settings:
    """Return the settings of the running web app."""
    return current_app.config["KILOWATCH_SETTINGS"]


@contextlib.contextmanager
def connection(*, read_only: bool = False) -> Iterator[psycopg.Connection]:
    """Lend a pooled database connection of the running web app.

    ``read_only=True`` reads from KILOWATCH_DATABASE_READ_URL when it is set (a
    replica, possibly a little behind): only for views that write nothing and do
    not need what was written a moment ago.
    """
    with db.connection(app_settings(), read_only=read_only) as conn:
        yield conn


def load_user(user_id: str) -> SessionUser | None:
    """Load an active user and their scope by id (Flask-Login's user loader)."""
    user_id = parse_id(user_id)
    if user_id is None:
        return None
    with connection() as conn:
        loader = system_scope("session")
        scope = users.build_scope(conn, loader, user_id)
        if scope is None:
            return None
        row = users.get_user(conn, loader, user_id)
    return SessionUser(id=row["id"], email=row["email"], display_name=row["display_name"],
                       role=row["role"], company_id=row["company_id"],
                       company_name=row["company_name"], language=row["language"],
                       must_change_password=row["must_change_password"], scope=scope)


def current_scope() -> AccessScope:
    """Return the access scope of the logged-in user, or raise AccessDenied."""
    if not current_user or not current_user.is_authenticated:
        raise AccessDenied("not logged in")
    return current_user.scope


def current_account() -> SessionUser | None:
    """Return the logged-in user, or None."""
    if current_user and current_user.is_authenticated:
        return current_user._get_current_object()
    return None
