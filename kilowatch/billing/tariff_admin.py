"""Tariff administration for the web pages: upload import, assignable sites, a tariff's use.

Builds on :mod:`kilowatch.billing.tariff_store` (which checks who may change what) and
:mod:`kilowatch.billing.tariffs` (validation), :mod:`kilowatch.billing.urdb` (URDB import);
every failure a user can cause is a :class:`kilowatch.billing.tariffs.TariffError` naming
the field.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import psycopg
from psycopg import sql

from kilowatch.access import AccessDenied, AccessScope, site_filter
from kilowatch.billing import tariff_store, tariffs, urdb
from kilowatch.billing.tariffs import Tariff, TariffError

MAX_UPLOAD_BYTES = 2_000_000


def decode_upload(contents: Any, filename: Any = None) -> Any:
    """Return the JSON document of a browser upload (a ``data:…;base64,…`` URL)."""
    name = filename if isinstance(filename, str) and filename else "file"
    if not isinstance(contents, str) or "," not in contents:
        raise TariffError(f"{name}: no file content was received")
    header, _, payload = contents.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise TariffError(f"{name}: the upload is not encoded as expected")
    if len(payload) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise TariffError(f"{name}: larger than {MAX_UPLOAD_BYTES // 1_000_000} MB")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TariffError(f"{name}: the upload is not valid base64") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TariffError(f"{name}: not a UTF-8 text file") from None
    except json.JSONDecodeError as error:
        raise TariffError(f"{name}: not valid JSON ({error.msg} at line {error.lineno} "
                          f"column {error.colno})") from None


def import_tariff(conn: psycopg.Connection, scope: AccessScope, *, company_id: int,
                  document: Any, name: str | None = None, label: str | None = None,
                  currency: str = "USD", export_rate: float = 0.0,
                  fallback_name: str = "Imported tariff") -> tuple[int, str, Tariff]:
    """Store a URDB rate (or a Kilowatch tariff JSON) for a company; return id, name, tariff."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not manage this company's tariffs")
    if isinstance(document, dict) and isinstance(document.get("energy"), dict):
        tariff, source, default_name = tariffs.parse(document), None, document.get("name")
    else:
        tariff = urdb.import_urdb(document, label=label or None, currency=currency,
                                  export_rate=export_rate)
        source = urdb.select_urdb_rate(document, label or None)
        default_name = source.get("name")
    chosen = (name or "").strip() or str(default_name or "").strip() or fallback_name
    tariff_id = tariff_store.create_tariff(conn, scope, company_id=company_id, name=chosen[:200],
                                           tariff=tariff, source=source)
    return tariff_id, chosen[:200], tariff


def assignable_sites(conn: psycopg.Connection, scope: AccessScope, company_id: int) -> list[dict]:
    """Return the sites of a company whose tariff the caller may set."""
    if not scope.may_administer_company(company_id):
        raise AccessDenied("you may not manage this company's tariffs")
    query = sql.SQL(
        "SELECT s.id, s.name, s.timezone FROM sites s WHERE s.company_id = %s AND {} "
        "ORDER BY s.name, s.id").format(site_filter(scope))
    return conn.execute(query, (company_id,)).fetchall()


def managed_tariff(conn: psycopg.Connection, scope: AccessScope, tariff_id: int) -> dict:
    """Return a tariff the caller may edit (with its parsed model), or raise AccessDenied."""
    row = tariff_store.get_tariff(conn, scope, tariff_id)
    if not scope.may_administer_company(row["company_id"]):
        raise AccessDenied("you may not manage this company's tariffs")
    return row
