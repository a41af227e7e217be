"""The access scope: which companies and sites a caller may read or change.

Every function in ``kilowatch`` that reads or writes tenant data takes a scope
as a required argument and puts :func:`site_filter` into its SQL, so that the
database itself never returns a row the caller may not see.
"""

from __future__ import annotations

import dataclasses

from psycopg import sql

ROLES = ("viewer", "operator", "admin", "support", "superadmin")
COMPANY_ROLES = ("viewer", "operator", "admin")
PLATFORM_ROLES = ("support", "superadmin")


class AccessDenied(PermissionError):
    """The caller may not see or do this."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccessScope:
    """What one caller may see and do, built per request from the database.

    ``company_id`` is None only for platform staff. ``site_ids`` lists the sites
    granted through groups; None means every site of ``company_id`` (admins) or,
    for platform staff, every site of every company.
    """

    role: str
    user_id: int | None = None
    company_id: int | None = None
    site_ids: frozenset[int] | None = None
    actor: str = "system"

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")
        if self.role in COMPANY_ROLES and self.company_id is None:
            raise ValueError("company roles need a company")
        if self.role in ("viewer", "operator") and self.site_ids is None:
            raise ValueError("viewers and operators need explicit site grants")

    @property
    def platform_wide(self) -> bool:
        """True for support staff and superadmins, who see every company."""
        return self.role in PLATFORM_ROLES

    def may_see_site(self, site_company_id: int, site_id: int) -> bool:
        """Say whether the caller may read this site (for already-loaded rows)."""
        if self.platform_wide:
            return True
        if site_company_id != self.company_id:
            return False
        return self.site_ids is None or site_id in self.site_ids

    def may_edit_site(self, site_company_id: int, site_id: int) -> bool:
        """Say whether the caller may change a site's schedules and settings."""
        if self.role == "superadmin":
            return True
        if self.role not in ("operator", "admin"):
            return False
        return self.may_see_site(site_company_id, site_id)

    def may_administer_company(self, company_id: int) -> bool:
        """Say whether the caller may manage users, tariffs and rules of a company."""
        return self.role == "superadmin" or (
            self.role == "admin" and self.company_id == company_id
        )

    def may_review_company(self, company_id: int) -> bool:
        """Say whether the caller may read a company's administration (sites, devices).

        Its admins and superadmins change it; support staff read every company's, read-only.
        """
        return self.platform_wide or (self.role == "admin" and self.company_id == company_id)

    @property
    def may_acknowledge_alarms(self) -> bool:
        """Operators, admins, support and superadmins acknowledge and comment alarms."""
        return self.role != "viewer"


def system_scope(actor: str = "cli") -> AccessScope:
    """Scope of the platform operator's own tools (CLI, worker): everything."""
    return AccessScope(role="superadmin", actor=actor)


def site_filter(scope: AccessScope, site_alias: str = "s") -> sql.Composable:
    """Return an SQL condition limiting rows of ``site_alias`` (a sites row) to the scope."""
    company = sql.Identifier(site_alias, "company_id")
    site = sql.Identifier(site_alias, "id")
    if scope.platform_wide:
        return sql.SQL("TRUE")
    if scope.site_ids is None:
        return sql.SQL("{} = {}").format(company, sql.Literal(scope.company_id))
    return sql.SQL("({} = {} AND {} = ANY({}::int[]))").format(
        company, sql.Literal(scope.company_id), site, sql.Literal(sorted(scope.site_ids))
    )


def company_filter(scope: AccessScope, column: sql.Composable) -> sql.Composable:
    """Return an SQL condition limiting a company_id ``column`` to the caller's company."""
    if scope.platform_wide:
        return sql.SQL("TRUE")
    return sql.SQL("{} = {}").format(column, sql.Literal(scope.company_id))
