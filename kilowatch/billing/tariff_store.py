"""Store tariffs and their assignment to sites, always within an access scope.

A site has one tariff at a time. Assignments are never edited or deleted: a new
assignment supersedes the live rows it overlaps (marking them ``superseded_at``)
and re-inserts what remains of them before and after it, so the full history
stays readable. Any change marks the affected stored bills stale; the worker
(``kilowatch.jobs.savings``) recomputes them.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from kilowatch import audit, fleet
from kilowatch.access import AccessDenied, AccessScope, company_filter, site_filter
from kilowatch.billing.tariffs import Tariff, TariffError, parse
from kilowatch.ids import parse_id


def create_tariff(conn: psycopg.Connection, scope: AccessScope, *, company_id: int, name: str,
                  tariff: Tariff, source: Any = None) -> int:
    """Store a new tariff of a company the caller administers and return its id."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not manage this company's tariffs")
    name = name.strip()
    if not name:
        raise TariffError("name: a tariff needs a name")
    structure = tariff.to_dict()
    with conn.transaction():
        try:
            row = conn.execute(
                """INSERT INTO tariffs (company_id, name, currency, structure, source, created_by)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                (company_id, name, tariff.currency, Jsonb(structure),
                 None if source is None else Jsonb(source), scope.actor),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise TariffError(f"name: the company already has a tariff named {name!r}") from None
        audit.record(conn, scope, "tariff.create", target=f"tariff:{row['id']}",
                     company_id=company_id, after={"name": name, "structure": structure})
    return row["id"]


def update_tariff(conn: psycopg.Connection, scope: AccessScope, tariff_id: int,
                  tariff: Tariff) -> int:
    """Replace a tariff's structure; mark the bills computed with it stale; return their count."""
    current = get_tariff(conn, scope, tariff_id)
    if not scope.may_administer_company(current["company_id"]):
        raise AccessDenied("you may not manage this company's tariffs")
    structure = tariff.to_dict()
    with conn.transaction():
        conn.execute(
            """UPDATE tariffs SET structure = %s, currency = %s, updated_at = now()
               WHERE id = %s""", (Jsonb(structure), tariff.currency, tariff_id))
        audit.record(conn, scope, "tariff.update", target=f"tariff:{tariff_id}",
                     company_id=current["company_id"], before=current["structure"],
                     after=structure)
        stale = conn.execute("UPDATE bills SET stale = true WHERE tariff_id = %s",
                             (tariff_id,)).rowcount
    return stale


def list_tariffs(conn: psycopg.Connection, scope: AccessScope,
                 company_id: int | None = None) -> list[dict]:
    """Return the tariffs the caller may see (optionally of one company), with site counts."""
    query = sql.SQL(
        """SELECT t.id, t.company_id, c.name AS company_name, t.name, t.currency, t.structure,
                  t.created_at, t.updated_at,
                  (SELECT count(DISTINCT a.site_id) FROM site_tariffs a
                   WHERE a.tariff_id = t.id AND a.superseded_at IS NULL) AS sites
           FROM tariffs t JOIN companies c ON c.id = t.company_id
           WHERE {} AND (%(company)s::int IS NULL OR t.company_id = %(company)s)
           ORDER BY c.name, t.name"""
    ).format(company_filter(scope, sql.Identifier("t", "company_id")))
    return conn.execute(query, {"company": company_id}).fetchall()


def get_tariff(conn: psycopg.Connection, scope: AccessScope, tariff_id: int) -> dict:
    """Return one visible tariff row with its parsed model under ``tariff``."""
    query = sql.SQL("SELECT t.* FROM tariffs t WHERE t.id = %s AND {}").format(
        company_filter(scope, sql.Identifier("t", "company_id")))
    row = conn.execute(query, (tariff_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such tariff")
    return {**row, "tariff": parse(row["structure"])}


def resolve_tariff(conn: psycopg.Connection, scope: AccessScope, ref: str,
                   company_id: int | None = None) -> dict:
    """Find one visible tariff by id or unambiguous name (within a company if given)."""
    query = sql.SQL(
        "SELECT t.id, t.name, t.company_id, t.name || ' / ' || c.name AS label "
        "FROM tariffs t JOIN companies c ON c.id = t.company_id "
        "WHERE (t.id = %(ref_id)s OR lower(t.name) = lower(%(ref)s)) AND {} "
        "AND (%(company)s::int IS NULL OR t.company_id = %(company)s) ORDER BY t.id"
    ).format(company_filter(scope, sql.Identifier("t", "company_id")))
    ref_id = parse_id(str(ref).strip())
    rows = conn.execute(query, {"ref": ref, "ref_id": ref_id, "company": company_id}).fetchall()
    exact = [row for row in rows if row["id"] == ref_id]
    if exact:
        return exact[0]
    if not rows:
        raise TariffError(f"tariff: no tariff matches {ref!r}")
    if len(rows) > 1:
        names = ", ".join(f"{row['id']} ({row['label']})" for row in rows)
        raise TariffError(f"tariff: {ref!r} is ambiguous: {names}")
    return rows[0]


def assign_tariff(conn: psycopg.Connection, scope: AccessScope, *, site_id: int, tariff_id: int,
                  valid_from: date, valid_to: date | None = None) -> int:
    """Give a site a tariff from ``valid_from`` (to ``valid_to``, exclusive); return the row id."""
    site = fleet.get_site(conn, scope, site_id)
    if not scope.may_administer_company(site["company_id"]):
        raise AccessDenied("you may not change this site's tariff")
    tariff = get_tariff(conn, scope, tariff_id)
    if tariff["company_id"] != site["company_id"]:
        raise TariffError("tariff: it belongs to another company than the site")
    if valid_to is not None and valid_to <= valid_from:
        raise TariffError("to: the end date must be after the start date")
    with conn.transaction():
        conn.execute("SELECT id FROM sites WHERE id = %s FOR UPDATE", (site_id,))
        before = _supersede_overlaps(conn, scope, site_id, valid_from, valid_to)
        row = conn.execute(
            """INSERT INTO site_tariffs (site_id, tariff_id, valid_from, valid_to, created_by)
               VALUES (%s, %s, %s, %s, %s) RETURNING id""",
            (site_id, tariff_id, valid_from, valid_to, scope.actor),
        ).fetchone()
        after = {"tariff_id": tariff_id, "tariff": tariff["name"],
                 "valid_from": valid_from.isoformat(),
                 "valid_to": valid_to.isoformat() if valid_to else None}
        audit.record(conn, scope, "site.tariff.assign", target=f"site:{site_id}",
                     company_id=site["company_id"], before=before or None, after=after)
        mark_stale(conn, site_id=site_id, since=valid_from, until=valid_to)
    return row["id"]


def _supersede_overlaps(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                        valid_from: date, valid_to: date | None) -> list[dict]:
    """Supersede the live rows overlapping [from, to) and keep their parts outside it."""
    overlapping = conn.execute(
        """UPDATE site_tariffs SET superseded_at = now()
           WHERE site_id = %s AND superseded_at IS NULL
             AND daterange(valid_from, valid_to) && daterange(%s, %s)
           RETURNING tariff_id, valid_from, valid_to""",
        (site_id, valid_from, valid_to),
    ).fetchall()
    for row in overlapping:
        pieces = []
        if row["valid_from"] < valid_from:
            pieces.append((row["valid_from"], valid_from))
        if valid_to is not None and (row["valid_to"] is None or row["valid_to"] > valid_to):
            pieces.append((valid_to, row["valid_to"]))
        for start, end in pieces:
            conn.execute(
                """INSERT INTO site_tariffs (site_id, tariff_id, valid_from, valid_to, created_by)
                   VALUES (%s, %s, %s, %s, %s)""",
                (site_id, row["tariff_id"], start, end, scope.actor))
    return [{"tariff_id": r["tariff_id"], "valid_from": r["valid_from"].isoformat(),
             "valid_to": r["valid_to"].isoformat() if r["valid_to"] else None}
            for r in overlapping]


def assignments(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
                history: bool = False) -> list[dict]:
    """Return a visible site's tariff assignments (live ones, or all with ``history``)."""
    query = sql.SQL(
        """SELECT a.*, t.name AS tariff_name, t.currency
           FROM site_tariffs a JOIN tariffs t ON t.id = a.tariff_id JOIN sites s ON s.id = a.site_id
           WHERE a.site_id = %s AND {} AND (%s OR a.superseded_at IS NULL)
           ORDER BY a.valid_from, a.created_at"""
    ).format(site_filter(scope))
    return conn.execute(query, (site_id, history)).fetchall()


def tariff_for_period(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                      first_day: date, end_day: date) -> dict | None:
    """Return the assignment covering most days of [first_day, end_day), later ones on ties."""
    query = sql.SQL(
        """SELECT a.*, t.name AS tariff_name, t.structure,
                  upper(r) - lower(r) AS days
           FROM site_tariffs a
           JOIN tariffs t ON t.id = a.tariff_id JOIN sites s ON s.id = a.site_id
           CROSS JOIN LATERAL (SELECT daterange(a.valid_from, a.valid_to)
                                      * daterange(%(first)s, %(end)s) AS r) x
           WHERE a.site_id = %(site)s AND a.superseded_at IS NULL AND NOT isempty(r) AND {}
           ORDER BY days DESC, a.valid_from DESC LIMIT 1"""
    ).format(site_filter(scope))
    return conn.execute(query, {"site": site_id, "first": first_day, "end": end_day}).fetchone()


def mark_stale(conn: psycopg.Connection, *, site_id: int, since: date,
               until: date | None = None) -> int:
    """Mark a site's stored bills of the months touching [since, until) stale; return the count."""
    return conn.execute(
        """UPDATE bills SET stale = true
           WHERE site_id = %s AND period_start >= date_trunc('month', %s::date)
             AND (%s::date IS NULL OR period_start < %s::date)""",
        (site_id, since, until, until),
    ).rowcount
