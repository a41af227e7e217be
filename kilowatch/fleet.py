"""Companies, sites and devices: create them and read them within an access scope."""

from __future__ import annotations

import functools
import math
import re
import zoneinfo
from typing import Any

import psycopg
from psycopg import sql

from kilowatch import audit
from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.accounts.users import EMAIL_PATTERN
from kilowatch.errors import UserFacingError
from kilowatch.ids import parse_id

DEVICE_MODELS = ("HES-L", "HES-XL", "HES-XXL", "meter", "gateway")
STORAGE_MODELS = ("HES-L", "HES-XL", "HES-XXL")
SERIAL_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PHONE_PATTERN = re.compile(r"^[0-9+\-() ]{1,30}$")
PHONE_DIGITS = (6, 20)
# Longest free texts of a company or site (the contact's are also checked by the database).
TEXT_LIMITS = {"company": 120, "name": 120, "address": 300, "contact_name": 120}
# The serial may belong to another company: nothing of it shows (docs/access.md).
DUPLICATE_SERIAL = "this serial cannot be used; contact support if it should be"


class FleetError(UserFacingError, ValueError):
    """A request about companies, sites or devices that cannot be carried out.

    ``field`` names the faulty input when there is one, so a form shows the message there.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


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
    name = _text(name, "name", TEXT_LIMITS["company"], missing="a company needs a name")
    with conn.transaction():
        try:
            row = conn.execute(
                "INSERT INTO companies (name) VALUES (%s) RETURNING id", (name,)
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"a company named {name!r} already exists", "name") from None
        audit.record(conn, scope, "company.create", target=f"company:{row['id']}",
                     company_id=row["id"], after={"name": name})
    return row["id"]


@functools.cache
def timezones() -> frozenset[str]:
    """Return the IANA time-zone names a site may have."""
    # "localtime" and "posixrules" name files of this machine, not places.
    return frozenset(zoneinfo.available_timezones() - {"localtime", "posixrules", "Factory"})


def validate_timezone(name: str) -> str:
    """Return an IANA time-zone name unchanged, or raise FleetError."""
    if not isinstance(name, str) or name not in timezones():
        raise FleetError(f"{str(name)[:60]!r} is not an IANA time zone (e.g. Europe/Paris)",
                         "timezone")
    return name


def _text(value: object, field: str, limit: int, *, missing: str | None = None) -> str | None:
    """Return a stripped text (None when empty), or raise ``missing`` when it is required."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        if missing:
            raise FleetError(missing, field)
        return None
    if len(text) > limit:
        raise FleetError(f"{field.replace('_', ' ')} is at most {limit} characters, "
                         f"not {len(text)}", field)
    return text


def _coordinate(value: object, field: str, limit: int) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not -limit <= value <= limit:
        raise FleetError(f"{field} must be between -{limit} and {limit}", field)
    return float(value)


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FleetError(f"{field} must be on or off", field)
    return value


def _email(value: object) -> str | None:
    text = value.strip() if isinstance(value, str) else ""
    if text and (len(text) > 254 or not EMAIL_PATTERN.match(text)):
        raise FleetError(f"{text[:60]!r} is not an e-mail address", "contact_email")
    return text or None


def _phone(value: object) -> str | None:
    text = " ".join(value.split()) if isinstance(value, str) else ""
    digits = sum(char.isdigit() for char in text)
    low, high = PHONE_DIGITS
    if text and (not PHONE_PATTERN.match(text) or not low <= digits <= high):
        raise FleetError(f"a phone number has {low} to {high} digits and only spaces, "
                         "+, -, ( and )", "contact_phone")
    return text or None


def site_values(*, name: str, timezone: str, address: str | None = None,
                latitude: float | None = None, longitude: float | None = None,
                contact_name: str | None = None, contact_email: str | None = None,
                contact_phone: str | None = None,
                has_optimizer: bool | None = None) -> dict[str, Any]:
    """Return a site's checked columns, or raise FleetError naming the faulty field.

    ``has_optimizer`` offers the site's schedules the ``optimized`` mode (forecasts
    and a dispatch plan every 15 minutes); None (not given) counts as off.
    """
    return {"name": _text(name, "name", TEXT_LIMITS["name"], missing="a site needs a name"),
            "timezone": validate_timezone(timezone),
            "address": _text(address, "address", TEXT_LIMITS["address"]),
            "latitude": _coordinate(latitude, "latitude", 90),
            "longitude": _coordinate(longitude, "longitude", 180),
            "contact_name": _text(contact_name, "contact_name", TEXT_LIMITS["contact_name"]),
            "contact_email": _email(contact_email), "contact_phone": _phone(contact_phone),
            "has_optimizer": _flag(has_optimizer, "has_optimizer")}


def create_site(conn: psycopg.Connection, scope: AccessScope, *, company_id: int,
                **fields: Any) -> int:
    """Create a site of a company the caller administers and return its id.

    ``fields`` are those of :func:`site_values` (name and timezone required).
    """
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not create sites for this company")
    after = site_values(**fields)
    columns = sql.SQL(", ").join(map(sql.Identifier, after))
    with conn.transaction():
        try:
            row = conn.execute(
                sql.SQL("INSERT INTO sites (company_id, {}) VALUES (%s, {}) RETURNING id").format(
                    columns, sql.SQL(", ").join(sql.Placeholder() * len(after))),
                (company_id, *after.values())).fetchone()
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"the company already has a site named {after['name']!r}",
                             "name") from None
        audit.record(conn, scope, "site.create", target=f"site:{row['id']}",
                     company_id=company_id, after=after)
    return row["id"]


def site_for_admin(conn: psycopg.Connection, scope: AccessScope, site_id: int, *,
                   lock: bool = False) -> dict:
    """Return a site the caller may change (its company's admins, superadmins) or deny."""
    row = conn.execute("SELECT * FROM sites WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                       (site_id,)).fetchone()
    if row is None or not scope.may_administer_company(row["company_id"]):
        raise AccessDenied("no such site, or not yours to change")
    return row


def update_site(conn: psycopg.Connection, scope: AccessScope, site_id: int,
                **fields: Any) -> dict[str, Any]:
    """Change a site the caller administers (fields as :func:`site_values`); return the changes."""
    with conn.transaction():
        site = site_for_admin(conn, scope, site_id, lock=True)
        changed = {key: value for key, value in site_values(**fields).items()
                   if site[key] != value}
        if not changed:
            return {}
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(key))
                                         for key in changed)
        try:
            conn.execute(sql.SQL("UPDATE sites SET {}, updated_at = now() WHERE id = %s").format(
                assignments), (*changed.values(), site_id))
        except psycopg.errors.UniqueViolation:
            raise FleetError(f"the company already has a site named {changed['name']!r}",
                             "name") from None
        audit.record(conn, scope, "site.update", target=f"site:{site_id}",
                     company_id=site["company_id"],
                     before={key: site[key] for key in changed}, after=changed)
    return changed


def register_device(conn: psycopg.Connection, scope: AccessScope, *, site_id: int, serial: str,
                    model: str, rated_power_kw: float | None = None,
                    capacity_kwh: float | None = None) -> int:
    """Register a device on a site (superadmins and the company's admins); return its id."""
    site = site_for_admin(conn, scope, site_id)
    if not isinstance(serial, str) or not SERIAL_PATTERN.match(serial):
        raise FleetError("a serial is 1-64 letters, digits, '-' or '_'", "serial")
    if model not in DEVICE_MODELS:
        raise FleetError(f"model must be one of {', '.join(DEVICE_MODELS)}", "model")
    for field, label, value in (("rated_power_kw", "rated power", rated_power_kw),
                                ("capacity_kwh", "capacity", capacity_kwh)):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise FleetError(f"{label} must be a positive finite number, not {value!r}", field)
    after = {"serial": serial, "model": model, "site_id": site_id,
             "rated_power_kw": rated_power_kw, "capacity_kwh": capacity_kwh}
    try:
        with conn.transaction():
            row = conn.execute(
                """INSERT INTO devices (site_id, serial, model, rated_power_kw, capacity_kwh)
                   VALUES (%s, %s, %s, %s, %s) RETURNING id""",
                (site_id, serial, model, rated_power_kw, capacity_kwh),
            ).fetchone()
            audit.record(conn, scope, "device.register", target=f"device:{row['id']}",
                         company_id=site["company_id"], after=after)
    except psycopg.errors.UniqueViolation:
        raise _duplicate_serial(conn, scope, serial) from None
    return row["id"]


def _duplicate_serial(conn: psycopg.Connection, scope: AccessScope, serial: str) -> FleetError:
    owner = conn.execute("SELECT s.company_id FROM devices d JOIN sites s ON s.id = d.site_id "
                         "WHERE d.serial = %s", (serial,)).fetchone()
    if scope.role == "superadmin" or (owner and owner["company_id"] == scope.company_id):
        return FleetError(f"a device with serial {serial!r} is already registered", "serial")
    return FleetError(DUPLICATE_SERIAL, "serial")


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


def reviewable_companies(conn: psycopg.Connection, scope: AccessScope) -> list[dict]:
    """Return the companies whose administration the caller may read, with their counts.

    Platform staff get every company, a company admin their own, anyone else none.
    """
    if not (scope.platform_wide or scope.role == "admin"):
        return []
    query = sql.SQL(
        """SELECT c.id, c.name, c.created_at,
                  (SELECT count(*) FROM sites s WHERE s.company_id = c.id) AS site_count,
                  (SELECT count(*) FROM devices d JOIN sites s ON s.id = d.site_id
                    WHERE s.company_id = c.id) AS device_count,
                  (SELECT count(*) FROM users u WHERE u.company_id = c.id) AS user_count
           FROM companies c WHERE {} ORDER BY c.name"""
    ).format(sql.SQL("TRUE") if scope.platform_wide else sql.SQL("c.id = {}").format(
        sql.Literal(scope.company_id)))
    return conn.execute(query).fetchall()


def list_sites_for_admin(conn: psycopg.Connection, scope: AccessScope,
                         company_id: int) -> list[dict]:
    """Return every site of a company whose administration the caller may read, with contacts."""
    if not scope.may_review_company(company_id):
        raise AccessDenied("not your company")
    return conn.execute(
        """SELECT s.*, (SELECT count(*) FROM devices d WHERE d.site_id = s.id) AS device_count
           FROM sites s WHERE s.company_id = %s ORDER BY s.name""", (company_id,)).fetchall()


def get_site_for_admin(conn: psycopg.Connection, scope: AccessScope, site_id: int) -> dict:
    """Return one site whose company's administration the caller may read, else AccessDenied."""
    row = conn.execute("SELECT * FROM sites WHERE id = %s", (site_id,)).fetchone()
    if row is None or not scope.may_review_company(row["company_id"]):
        raise AccessDenied("no such site")
    return row
