"""Companies, sites and devices: create them and read them within an access scope."""

from __future__ import annotations

import math
import re
import zoneinfo
from typing import Any

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.errors import UserFacingError
from kilowatch.ids import parse_id

DEVICE_MODELS = ("HES-L", "HES-XL", "HES-XXL", "meter", "gateway")
STORAGE_MODELS = ("HES-L", "HES-XL", "HES-XXL")
SERIAL_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class FleetError(UserFacingError, ValueError):
    """A request about companies, sites or devices that cannot be carried out."""


def _resolve(conn: psycopg.Connection, query: sql.Composable, ref: str, kind: str,
             params: dict[str, Any]) -> dict:
    rows = conn.execute(query, {**params, "ref": ref, "ref_id": _as_id(ref)}).fetchall()
    if not rows:
        raise FleetError(f"no {kind} matches {ref!r}")
    exact = [r for r in rows if r["id"] == _as_id(ref)]
    if exact:
        return exact[0]
    if len(rows) > 1:
        names = ", ".join(f"{r['id']} ({r['label']})" for r in rows)
        raise FleetError(f"{kind} {ref!r} is ambiguous: {names}")
    return rows[0]


def _as_id(ref: str) -> int | None:
    return parse_id(ref)


def resolve_company(conn: psycopg.Connection, scope: AccessScope, ref: str) -> dict:
    """Find one visible company by id or unambiguous name."""
    query = sql.SQL(
        "SELECT id, name, name AS label FROM companies c "
        "WHERE (id = %(ref_id)s OR lower(name) = lower(%(ref)s)) AND {}"
    ).format(
        sql.SQL("TRUE") if scope.platform_wide else sql.SQL("c.id = {}").format(
            sql.Literal(scope.company_id))
    )
    return _resolve(conn, query, ref, "company", {})


def resolve_site(conn: psycopg.Connection, scope: AccessScope, ref: str) -> dict:
    """Find one visible site by id or unambiguous name."""
    query = sql.SQL(
        "SELECT s.*, s.name || ' / ' || c.name AS label, c.name AS company_name "
        "FROM sites s JOIN companies c ON c.id = s.company_id "
        "WHERE (s.id = %(ref_id)s OR lower(s.name) = lower(%(ref)s)) AND {} ORDER BY s.id"
    ).format(site_filter(scope))
    return _resolve(conn, query, ref, "site", {})


def create_company(conn: psycopg.Connection, scope: AccessScope, name: str) -> int:
    """Create a company (superadmins only) and return its id."""
    if scope.role != "superadmin":
        raise AccessDenied("only the platform operator creates companies")
    name = name.strip()
    if not name:
        raise FleetError("a company needs a name")
    with conn.transaction():
        try:
            row = conn.execute(
                "INSERT INTO companies (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"a company named {name!r} already exists") from None
        audit.record(conn, scope, "company.create", target=f"company:{row['id']}",
                     company_id=row["id"], after={"name": name})
    return row["id"]


def validate_timezone(name: str) -> str:
    """Return an IANA time-zone name unchanged, or raise FleetError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise FleetError(f"{name!r} is not an IANA time zone (e.g. Europe/Paris)") from None
    return name


def create_site(conn: psycopg.Connection, scope: AccessScope, *, company_id: int, name: str,
                timezone: str, address: str | None = None, latitude: float | None = None,
                longitude: float | None = None) -> int:
    """Create a site of a company the caller administers and return its id."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not create sites for this company")
    validate_timezone(timezone)
    if latitude is not None and not -90 <= latitude <= 90:
        raise FleetError("latitude must be between -90 and 90")
    if longitude is not None and not -180 <= longitude <= 180:
        raise FleetError("longitude must be between -180 and 180")
    after = {"name": name, "timezone": timezone, "address": address,
             "latitude": latitude, "longitude": longitude}
    with conn.transaction():
        try:
            row = conn.execute(
                """INSERT INTO sites (company_id, name, address, latitude, longitude, timezone)
                   VALUES (%s, %s, %s, %s, %s, %s) RETURNING id""",
                (company_id, name.strip(), address, latitude, longitude, timezone),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"the company already has a site named {name!r}") from None
        audit.record(conn, scope, "site.create", target=f"site:{row['id']}",
                     company_id=company_id, after=after)
    return row["id"]


def register_device(conn: psycopg.Connection, scope: AccessScope, *, site_id: int, serial: str,
                    model: str, rated_power_kw: float | None = None,
                    capacity_kwh: float | None = None) -> int:
    """Register a device on a site (superadmins and the company's admins); return its id."""
    if not SERIAL_PATTERN.match(serial):
        raise FleetError("a serial is 1-64 letters, digits, '-' or '_'")
    if model not in DEVICE_MODELS:
        raise FleetError(f"model must be one of {', '.join(DEVICE_MODELS)}")
    for label, value in (("rated power", rated_power_kw), ("capacity", capacity_kwh)):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise FleetError(f"{label} must be a positive finite number, not {value!r}")
    site = conn.execute("SELECT company_id FROM sites WHERE id = %s", (site_id,)).fetchone()
    if site is None or not scope.may_administer_company(site["company_id"]):
        raise AccessDenied("no such site, or not yours to add devices to")
    after = {"serial": serial, "model": model, "site_id": site_id,
             "rated_power_kw": rated_power_kw, "capacity_kwh": capacity_kwh}
    with conn.transaction():
        try:
            row = conn.execute(
                """INSERT INTO devices (site_id, serial, model, rated_power_kw, capacity_kwh)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (site_id, serial, model, rated_power_kw, capacity_kwh),
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"a device with serial {serial!r} is already registered") from None
        audit.record(conn, scope, "device.register", target=f"device:{row['id']}",
                     company_id=site["company_id"], after=after)
    return row["id"]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def list_sites(conn: psycopg.Connection, scope: AccessScope) -> list[dict]:
    """Return the sites the caller may see, with their company name."""
    query = sql.SQL(
        "SELECT s.*, c.name AS company_name FROM sites s JOIN companies c ON c.id = s.company_id "
        "WHERE {} ORDER BY c.name, s.name"
    ).format(site_filter(scope))
    return conn.execute(query).fetchall()


def get_site(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> dict:
    """Return one site the caller may see, or raise AccessDenied (also when it does not exist)."""
    query = sql.SQL(
        "SELECT s.*, c.name AS company_name FROM sites s JOIN companies c ON c.id = s.company_id "
        "WHERE s.id = %s AND {}"
    ).format(site_filter(scope))
    row = conn.execute(query, (site_id,)).fetchone()
    if row is None:
        raise AccessDenied("no such site")
    return row


def list_devices(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> list[dict]:
    """Return the devices of one visible site."""
    query = sql.SQL(
        "SELECT d.* FROM devices d JOIN sites s ON s.id = d.site_id "
        "WHERE d.site_id = %s AND {} ORDER BY d.model, d.serial"
    ).format(site_filter(scope))
    return conn.execute(query, (site_id,)).fetchall()
