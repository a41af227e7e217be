"""User accounts and the access scope they log in with, read and changed within a scope.

Who may do what is decided here with the caller's scope, not in the UI:
company admins manage the company roles of their own company only;
superadmins manage everything; nobody else lists or changes accounts and groups.
Every change is written to the audit log with its before and after state.
A one-time password (``must_change_password``) stops working after
:data:`ONE_TIME_PASSWORD_LIFETIME`; a password change or reset and a
deactivation end every login session of the user in the same transaction.
Groups, their members and site grants are in :mod:`kilowatch.accounts.groups`.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import (
    COMPANY_ROLES,
    PLATFORM_ROLES,
    ROLES,
    AccessDenied,
    AccessScope,
    company_filter,
    site_filter,
)
from kilowatch.accounts import login_sessions
from kilowatch.errors import UserFacingError
from kilowatch.ids import parse_id

log = logging.getLogger(__name__)
# For anyone but a superadmin: the address may belong to another company (docs/access.md:
# nothing of one company shows, not even in an error message).
DUPLICATE_EMAIL = "this e-mail address cannot be used; contact support if it should be"
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LANGUAGES = ("en", "fr", "de", "es", "it", "nl")
ONE_TIME_PASSWORD_LIFETIME = timedelta(hours=24)
_PUBLIC = ("email", "display_name", "role", "company_id", "active", "language")
_USER_COLUMNS = sql.SQL(
    "u.id, u.email, u.display_name, u.company_id, u.role, u.active, u.language, "
    "u.must_change_password, u.created_at, u.last_login_at, u.password_changed_at, "
    "u.password_hash IS NOT NULL AS has_password, c.name AS company_name"
)


class AccountError(UserFacingError, ValueError):
    """A request about users or groups that cannot be carried out as asked."""


def normalize_email(email: str) -> str:
    """Return the e-mail address lowercased and trimmed, or raise AccountError."""
    value = (email or "").strip().lower()
    if len(value) > 254 or not EMAIL_PATTERN.match(value):
        raise AccountError(f"{email!r} is not a valid e-mail address")
    return value


def check_role(role: str, company_id: int | None) -> None:
    """Raise AccountError unless the role exists and fits having (or not) a company."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if role in COMPANY_ROLES and company_id is None:
        raise AccountError(f"a {role} belongs to a company; give one")
    if role in PLATFORM_ROLES and company_id is not None:
        raise AccountError(f"a {role} is platform staff and belongs to no company")


def _may_manage(scope: AccessScope, role: str, company_id: int | None) -> bool:
    if scope.role == "superadmin":
        return True
    return scope.role == "admin" and role in COMPANY_ROLES and company_id == scope.company_id


def _require_manage(scope: AccessScope, role: str, company_id: int | None) -> None:
    if not _may_manage(scope, role, company_id):
        raise AccessDenied("you may not manage this account")


def _user_query(scope: AccessScope, where: str) -> sql.Composable:
    return sql.SQL(
        "SELECT {} FROM users u LEFT JOIN companies c ON c.id = u.company_id "
        "WHERE {} AND {} ORDER BY u.email"
    ).format(_USER_COLUMNS, sql.SQL(where), _company(scope, "u"))


def _require_directory(scope: AccessScope) -> None:
    # Support staff read sites, alarms and diagnostics (docs/access.md), not user directories.
    if scope.role not in ("admin", "superadmin"):
        raise AccessDenied("only administrators see users and groups")


def _company(scope: AccessScope, alias: str) -> sql.Composable:
    return company_filter(scope, sql.Identifier(alias, "company_id"))


def _public(row: dict) -> dict:
    return {name: row[name] for name in _PUBLIC}


# --- reading ---------------------------------------------------------------------------------


def get_user(conn: psycopg.Connection, scope: AccessScope, user_id: int) -> dict:
    """Return one user the caller may see, or raise AccessDenied (also when it does not exist)."""
    row = conn.execute(_user_query(scope, "u.id = %s"), (user_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such user")
    return row


def manageable_user(conn: psycopg.Connection, scope: AccessScope, user_id: int) -> dict:
    """Return a user the caller may manage, or raise AccessDenied."""
    row = get_user(conn, scope, user_id)
    _require_manage(scope, row["role"], row["company_id"])
    return row


def list_users(conn: psycopg.Connection, scope: AccessScope,
               company_id: int | None = None) -> list[dict]:
    """Return the users of the caller's company (or of every company for platform staff)."""
    _require_directory(scope)
    query = _user_query(scope, "(%s::int IS NULL OR u.company_id = %s)")
    return conn.execute(query, (company_id, company_id)).fetchall()


def find_login(conn: psycopg.Connection, scope: AccessScope, email: str) -> dict | None:
    """Return id, role, password hash and state of the account with this e-mail, if visible."""
    try:
        email = normalize_email(email)
    except AccountError:
        return None
    query = sql.SQL(
        "SELECT u.id, u.email, u.role, u.active, u.password_hash, u.must_change_password, "
        "u.password_expires_at, u.password_changed_at, u.language, u.display_name "
        "FROM users u WHERE lower(u.email) = %s AND {}"
    ).format(_company(scope, "u"))
    return conn.execute(query, (email,)).fetchone()


def resolve_user(conn: psycopg.Connection, scope: AccessScope, ref: str) -> dict:
    """Find one visible user by id or e-mail, or raise AccountError."""
    ref = str(ref).strip()
    ref_id = parse_id(ref)
    if ref_id is not None:
        rows = conn.execute(_user_query(scope, "u.id = %s"), (ref_id,)).fetchall()
    else:
        rows = conn.execute(_user_query(scope, "lower(u.email) = lower(%s)"), (ref,)).fetchall()
    if not rows:
        raise AccountError(f"no user matches {ref!r}")
    return rows[0]


def granted_site_ids(conn: psycopg.Connection, scope: AccessScope, user_id: int) -> frozenset[int]:
    """Return the ids of the sites granted to a user through their groups."""
    query = sql.SQL(
        "SELECT DISTINCT gs.site_id FROM group_members gm "
        "JOIN group_sites gs ON gs.group_id = gm.group_id "
        "JOIN sites s ON s.id = gs.site_id "
        "WHERE gm.user_id = %s AND {}"
    ).format(site_filter(scope))
    return frozenset(row["site_id"] for row in conn.execute(query, (user_id,)))


def build_scope(conn: psycopg.Connection, scope: AccessScope, user_id: int) -> AccessScope | None:
    """Return the access scope of an active user (None when missing or deactivated)."""
    row = conn.execute(_user_query(scope, "u.id = %s AND u.active"), (user_id,)).fetchone()
    if row is None:
        return None
    site_ids = None
    if row["role"] in ("viewer", "operator"):
        site_ids = granted_site_ids(conn, scope, user_id)
    return AccessScope(role=row["role"], user_id=row["id"], company_id=row["company_id"],
                       site_ids=site_ids, actor=row["email"])


def administered_companies(conn: psycopg.Connection, scope: AccessScope) -> list[dict]:
    """Return the companies whose users and groups the caller may manage."""
    if scope.role not in ("admin", "superadmin"):
        return []
    query = sql.SQL("SELECT c.id, c.name FROM companies c WHERE {} ORDER BY c.name").format(
        sql.SQL("TRUE") if scope.role == "superadmin" else sql.SQL("c.id = {}").format(
            sql.Literal(scope.company_id)))
    return conn.execute(query).fetchall()


# --- changing accounts -------------------------------------------------------------------------


def create_user(conn: psycopg.Connection, scope: AccessScope, *, email: str, role: str,
                company_id: int | None, password_hash: str | None,
                display_name: str | None = None, language: str = "en",
                must_change_password: bool = True) -> int:
    """Create an account the caller may manage and return its id.

    ``password_hash=None`` makes an account nobody can sign in to until its user
    chooses a password through an invitation link.
    """
    email = normalize_email(email)
    check_role(role, company_id)
    _require_manage(scope, role, company_id)
    display_name = (display_name or "").strip() or email.split("@")[0]
    if language not in LANGUAGES:
        raise AccountError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
    with conn.transaction():
        if company_id is not None and conn.execute(
                "SELECT 1 FROM companies WHERE id = %s", (company_id,)).fetchone() is None:
            raise AccountError(f"no company {company_id}")
        try:
            row = conn.execute(
                """INSERT INTO users (email, display_name, company_id, role, password_hash,
                                      must_change_password, language, password_changed_at,
                                      password_expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s) RETURNING *""",
                (email, display_name, company_id, role, password_hash, must_change_password,
                 language, _one_time_expiry(must_change_password)),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise _taken(scope, email) from None
        audit.record(conn, scope, "user.create", target=f"user:{row['id']}",
                     company_id=company_id, after=_public(row))
    return row["id"]


def _one_time_expiry(one_time: bool) -> datetime | None:
    return datetime.now(UTC) + ONE_TIME_PASSWORD_LIFETIME if one_time else None


def password_expired(account: dict, now: datetime | None = None) -> bool:
    """Say whether an account's (one-time) password is past its expiry."""
    expires = account.get("password_expires_at")
    return expires is not None and expires <= (now or datetime.now(UTC))


def _taken(scope: AccessScope, email: str) -> AccountError:
    """Say an e-mail is taken, without telling a company admin it exists in another company."""
    if scope.role == "superadmin":
        return AccountError(f"an account with the e-mail {email} already exists")
    log.info("%s tried to create an account for %s, which already exists", scope.actor, email)
    return AccountError(DUPLICATE_EMAIL)


def _change_user(conn: psycopg.Connection, scope: AccessScope, user_id: int, action: str,
                 changes: dict[str, Any], *, audited: dict[str, Any] | None = None) -> dict:
    """Apply column changes to a user the caller may manage, with an audit entry."""
    with conn.transaction():
        before = conn.execute(
            sql.SQL("SELECT u.* FROM users u WHERE u.id = %s AND {} FOR UPDATE").format(
                _company(scope, "u")), (user_id,)
        ).fetchone()
        if before is None:
            raise AccessDenied("no such user")
        _require_manage(scope, before["role"], before["company_id"])
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column))
            for column in changes
        )
        after = conn.execute(
            sql.SQL("UPDATE users SET {} WHERE id = %(user_id)s RETURNING *").format(assignments),
            {**changes, "user_id": user_id},
        ).fetchone()
        audit.record(conn, scope, action, target=f"user:{user_id}",
                     company_id=before["company_id"], before=_public(before),
                     after={**_public(after), **(audited or {})})
    return after


def set_role(conn: psycopg.Connection, scope: AccessScope, user_id: int, role: str) -> dict:
    """Change a user's role within what the caller may grant."""
    if user_id == scope.user_id:
        raise AccountError("you cannot change your own role")
    target = get_user(conn, scope, user_id)
    check_role(role, target["company_id"])
    _require_manage(scope, role, target["company_id"])
    return _change_user(conn, scope, user_id, "user.set_role", {"role": role})


def set_active(conn: psycopg.Connection, scope: AccessScope, user_id: int, active: bool) -> dict:
    """Activate or deactivate a user (never yourself)."""
    if user_id == scope.user_id:
        raise AccountError("you cannot deactivate your own account")
    action = "user.activate" if active else "user.deactivate"
    with conn.transaction():
        row = _change_user(conn, scope, user_id, action, {"active": bool(active)})
        if not active:
            login_sessions.end_all(conn, user_id)
    return row


def update_profile(conn: psycopg.Connection, scope: AccessScope, user_id: int, *,
                   display_name: str, language: str) -> dict:
    """Change a user's display name and language."""
    display_name = display_name.strip()
    if not 1 <= len(display_name) <= 120:
        raise AccountError("a display name has 1 to 120 characters")
    if language not in LANGUAGES:
        raise AccountError(f"unknown language {language!r}; use one of {', '.join(LANGUAGES)}")
    return _change_user(conn, scope, user_id, "user.update",
                        {"display_name": display_name, "language": language})


def reset_password(conn: psycopg.Connection, scope: AccessScope, user_id: int,
                   password_hash: str, *, must_change: bool = True) -> dict:
    """Set another user's password (a one-time one by default), ending their sessions."""
    with conn.transaction():
        row = _change_user(conn, scope, user_id, "user.reset_password",
                           {"password_hash": password_hash, "must_change_password": must_change,
                            "password_changed_at": datetime.now(UTC),
                            "password_expires_at": _one_time_expiry(must_change)},
                           audited={"password": "reset"})
        login_sessions.end_all(conn, user_id)
    return row


def change_own_password(conn: psycopg.Connection, scope: AccessScope, password_hash: str, *,
                        action: str = "user.change_password") -> None:
    """Store the caller's new password hash and end all their sessions.

    The caller checked who they are (the current password, or a link from their
    mailbox) and starts a new session afterwards if it should go on.
    """
    if scope.user_id is None:
        raise AccessDenied("only a logged-in user changes their own password")
    with conn.transaction():
        row = conn.execute(
            """UPDATE users SET password_hash = %s, must_change_password = false,
                      password_changed_at = now(), password_expires_at = NULL
               WHERE id = %s AND active RETURNING company_id""",
            (password_hash, scope.user_id),
        ).fetchone()
        if row is None:
            raise AccessDenied("no such user")
        login_sessions.end_all(conn, scope.user_id)
        audit.record(conn, scope, action, target=f"user:{scope.user_id}",
                     company_id=row["company_id"], after={"password": "changed"})


def record_login(conn: psycopg.Connection, scope: AccessScope, user_id: int,
                 new_hash: str | None = None) -> None:
    """Note a successful login, storing a re-computed password hash when given one."""
    query = sql.SQL(
        "UPDATE users u SET last_login_at = now(), "
        "password_hash = coalesce(%s, u.password_hash) WHERE u.id = %s AND {}"
    ).format(_company(scope, "u"))
    conn.execute(query, (new_hash, user_id))
