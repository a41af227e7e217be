"""Groups of a company: their members and the sites they grant, read and changed within a scope.

A viewer or operator sees the sites granted to their groups. Who may do what is decided
here with the caller's scope, as in :mod:`kilowatch.accounts.users`: company admins manage
the groups of their own company; superadmins manage every group; nobody else lists or
changes groups. Every change is written to the audit log.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.accounts.users import AccountError, _company, _require_directory
from kilowatch.ids import parse_id


def list_groups(conn: psycopg.Connection, scope: AccessScope,
                company_id: int | None = None) -> list[dict]:
    """Return the visible groups with their member and site counts."""
    _require_directory(scope)
    query = sql.SQL(
        "SELECT g.id, g.name, g.company_id, c.name AS company_name, "
        "(SELECT count(*) FROM group_members m WHERE m.group_id = g.id) AS member_count, "
        "(SELECT count(*) FROM group_sites gs WHERE gs.group_id = g.id) AS site_count "
        "FROM groups g JOIN companies c ON c.id = g.company_id "
        "WHERE {} AND (%s::int IS NULL OR g.company_id = %s) ORDER BY c.name, g.name"
    ).format(_company(scope, "g"))
    return conn.execute(query, (company_id, company_id)).fetchall()


def get_group(conn: psycopg.Connection, scope: AccessScope, group_id: int) -> dict:
    """Return one visible group with its members and granted sites, or raise AccessDenied."""
    _require_directory(scope)
    group = conn.execute(
        sql.SQL("SELECT g.* FROM groups g WHERE g.id = %s AND {}").format(
            _company(scope, "g")), (group_id,)
    ).fetchone()
    if group is None:
        raise AccessDenied("no such group")
    group["members"] = conn.execute(
        "SELECT u.id, u.email, u.display_name, u.role FROM group_members m "
        "JOIN users u ON u.id = m.user_id WHERE m.group_id = %s ORDER BY u.email", (group_id,)
    ).fetchall()
    group["sites"] = conn.execute(
        "SELECT s.id, s.name FROM group_sites gs JOIN sites s ON s.id = gs.site_id "
        "WHERE gs.group_id = %s ORDER BY s.name", (group_id,)
    ).fetchall()
    return group


def resolve_group(conn: psycopg.Connection, scope: AccessScope, ref: str,
                  company_id: int | None = None) -> dict:
    """Find one visible group by id or unambiguous name, or raise AccountError."""
    ref = str(ref).strip()
    query = sql.SQL(
        "SELECT g.id, g.name, g.company_id, c.name AS company_name FROM groups g "
        "JOIN companies c ON c.id = g.company_id "
        "WHERE (g.id = %s OR lower(g.name) = lower(%s)) AND (%s::int IS NULL OR g.company_id = %s) "
        "AND {} ORDER BY g.id"
    ).format(_company(scope, "g"))
    ref_id = parse_id(ref)
    rows = conn.execute(query, (ref_id, ref, company_id, company_id)).fetchall()
    exact = [row for row in rows if row["id"] == ref_id]
    if exact:
        return exact[0]
    if not rows:
        raise AccountError(f"no group matches {ref!r}")
    if len(rows) > 1:
        names = ", ".join(f"{r['id']} ({r['name']} / {r['company_name']})" for r in rows)
        raise AccountError(f"group {ref!r} is ambiguous: {names}; give --company or an id")
    return rows[0]


def create_group(conn: psycopg.Connection, scope: AccessScope, *, company_id: int,
                 name: str) -> int:
    """Create a group in a company the caller administers and return its id."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not manage groups of this company")
    name = name.strip()
    if not 1 <= len(name) <= 120:
        raise AccountError("a group name has 1 to 120 characters")
    with conn.transaction():
        try:
            row = conn.execute("INSERT INTO groups (company_id, name) VALUES (%s, %s) RETURNING id",
                               (company_id, name)).fetchone()
        except psycopg.errors.UniqueViolation:
            raise AccountError(f"the company already has a group named {name!r}") from None
        except psycopg.errors.ForeignKeyViolation:
            raise AccountError(f"no company {company_id}") from None
        audit.record(conn, scope, "group.create", target=f"group:{row['id']}",
                     company_id=company_id, after={"name": name})
    return row["id"]


def _managed_group(conn: psycopg.Connection, scope: AccessScope, group_id: int) -> dict:
    group = conn.execute(
        sql.SQL("SELECT g.* FROM groups g WHERE g.id = %s AND {} FOR UPDATE").format(
            _company(scope, "g")), (group_id,)
    ).fetchone()
    if group is None:
        raise AccessDenied("no such group")
    if not scope.may_administer_company(group["company_id"]):
        raise AccessDenied("you may not manage this group")
    return group


def delete_group(conn: psycopg.Connection, scope: AccessScope, group_id: int) -> None:
    """Delete a group with its memberships and grants."""
    with conn.transaction():
        group = _managed_group(conn, scope, group_id)
        before = get_group(conn, scope, group_id)
        conn.execute("DELETE FROM groups WHERE id = %s", (group_id,))
        audit.record(conn, scope, "group.delete", target=f"group:{group_id}",
                     company_id=group["company_id"],
                     before={"name": group["name"],
                             "members": [m["email"] for m in before["members"]],
                             "sites": [s["id"] for s in before["sites"]]})


def grant_site(conn: psycopg.Connection, scope: AccessScope, group_id: int, site_id: int) -> None:
    """Grant a group access to a site of the same company."""
    with conn.transaction():
        group = _managed_group(conn, scope, group_id)
        site = conn.execute(
            sql.SQL("SELECT s.id, s.company_id FROM sites s WHERE s.id = %s AND {}").format(
                site_filter(scope)), (site_id,)).fetchone()
        if site is None or site["company_id"] != group["company_id"]:
            raise AccountError("the site does not belong to the group's company")
        inserted = conn.execute(
            "INSERT INTO group_sites (group_id, site_id, company_id) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING site_id",
            (group_id, site_id, group["company_id"])).fetchone()
        if inserted:
            audit.record(conn, scope, "group.grant_site", target=f"group:{group_id}",
                         company_id=group["company_id"], after={"site_id": site_id})


def revoke_site(conn: psycopg.Connection, scope: AccessScope, group_id: int, site_id: int) -> None:
    """Take a site away from a group."""
    with conn.transaction():
        group = _managed_group(conn, scope, group_id)
        deleted = conn.execute("DELETE FROM group_sites WHERE group_id = %s AND site_id = %s "
                               "RETURNING site_id", (group_id, site_id)).fetchone()
        if deleted:
            audit.record(conn, scope, "group.revoke_site", target=f"group:{group_id}",
                         company_id=group["company_id"], before={"site_id": site_id})


def add_member(conn: psycopg.Connection, scope: AccessScope, group_id: int, user_id: int) -> None:
    """Add a user of the group's company to the group."""
    with conn.transaction():
        group = _managed_group(conn, scope, group_id)
        user = conn.execute(
            sql.SQL("SELECT u.id, u.company_id FROM users u WHERE u.id = %s AND {}").format(
                _company(scope, "u")), (user_id,)).fetchone()
        if user is None or user["company_id"] != group["company_id"]:
            raise AccountError("the user does not belong to the group's company")
        inserted = conn.execute(
            "INSERT INTO group_members (group_id, user_id, company_id) VALUES (%s, %s, %s) "
            "ON CONFLICT DO NOTHING RETURNING user_id",
            (group_id, user_id, group["company_id"])).fetchone()
        if inserted:
            audit.record(conn, scope, "group.add_member", target=f"group:{group_id}",
                         company_id=group["company_id"], after={"user_id": user_id})


def remove_member(conn: psycopg.Connection, scope: AccessScope, group_id: int,
                  user_id: int) -> None:
    """Remove a user from a group."""
    with conn.transaction():
        group = _managed_group(conn, scope, group_id)
        deleted = conn.execute("DELETE FROM group_members WHERE group_id = %s AND user_id = %s "
                               "RETURNING user_id", (group_id, user_id)).fetchone()
        if deleted:
            audit.record(conn, scope, "group.remove_member", target=f"group:{group_id}",
                         company_id=group["company_id"], before={"user_id": user_id})


def set_group_sites(conn: psycopg.Connection, scope: AccessScope, group_id: int,
                    site_ids: list[int]) -> None:
    """Make a group's site grants exactly ``site_ids`` (each change audited)."""
    with conn.transaction():
        current = {site["id"] for site in get_group(conn, scope, group_id)["sites"]}
        wanted = {int(site_id) for site_id in site_ids}
        for site_id in sorted(wanted - current):
            grant_site(conn, scope, group_id, site_id)
        for site_id in sorted(current - wanted):
            revoke_site(conn, scope, group_id, site_id)


def set_group_members(conn: psycopg.Connection, scope: AccessScope, group_id: int,
                      user_ids: list[int]) -> None:
    """Make a group's members exactly ``user_ids`` (each change audited)."""
    with conn.transaction():
        current = {member["id"] for member in get_group(conn, scope, group_id)["members"]}
        wanted = {int(user_id) for user_id in user_ids}
        for user_id in sorted(wanted - current):
            add_member(conn, scope, group_id, user_id)
        for user_id in sorted(current - wanted):
            remove_member(conn, scope, group_id, user_id)


def grantable_sites(conn: psycopg.Connection, scope: AccessScope, company_id: int) -> list[dict]:
    """Return the sites of a company that the caller may grant to its groups."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not manage groups of this company")
    query = sql.SQL(
        "SELECT s.id, s.name FROM sites s WHERE s.company_id = %s AND {} ORDER BY s.name"
    ).format(site_filter(scope))
    return conn.execute(query, (company_id,)).fetchall()
