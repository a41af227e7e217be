"""A device's identity over its life: registered → activated → (revoked), all audited.

Registering issues a one-time activation code (7 days, single use, only its hash
kept). Activation over HTTPS trades the code for MQTT credentials; a new code
lets a device activate again (e.g. after revocation or a lost password). Each
change sets ``identity_changed_at``; the worker pushes it to the broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
from pathlib import Path

import psycopg

from kilowatch import audit, fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.broker import rules
from kilowatch.devices import credentials
from kilowatch.errors import UserFacingError
from kilowatch.settings import Settings

CODE_VALID_FOR = dt.timedelta(days=7)


class ActivationRefused(UserFacingError):
    """Unknown serial, wrong, used or expired code: one answer for all (the reason is audited)."""


@dataclasses.dataclass(frozen=True)
class Activation:
    """What an activated device receives, once."""

    serial: str
    password: str
    url: str
    prefix: str
    ca_certificate: str

    def as_json(self) -> dict:
        """Return the body of the activation answer (the device protocol's shape)."""
        return {"mqtt": {"url": self.url, "username": self.serial, "password": self.password,
                         "prefix": self.prefix},
                "ca_certificate": self.ca_certificate}


def state(device: dict) -> str:
    """Return ``registered``, ``activated`` or ``revoked`` for a device row."""
    if device.get("credential_nonce") is not None:
        return "activated"
    return "revoked" if device.get("revoked_at") else "registered"


def _device_for_admin(conn: psycopg.Connection, scope: AccessScope, device_id: int) -> dict:
    row = conn.execute(
        """SELECT d.*, s.company_id FROM devices d JOIN sites s ON s.id = d.site_id
           WHERE d.id = %s""", (device_id,)).fetchone()
    if row is None or not scope.may_administer_company(row["company_id"]):
        raise AccessDenied("no such device")
    return row


def register(conn: psycopg.Connection, scope: AccessScope, *, site_id: int, serial: str,
             model: str, rated_power_kw: float | None = None,
             capacity_kwh: float | None = None, now: dt.datetime | None = None) -> tuple[int, str]:
    """Register a device and issue its first activation code; return (id, code)."""
    with conn.transaction():
        fleet.site_for_admin(conn, scope, site_id)  # a site not theirs is refused before all
        if isinstance(serial, str) and rules.is_reserved(serial):
            raise fleet.FleetError(f"serials starting with {rules.RESERVED_PREFIX!r} are "
                                   "reserved for the platform's own broker accounts", "serial")
        device_id = fleet.register_device(conn, scope, site_id=site_id, serial=serial,
                                          model=model, rated_power_kw=rated_power_kw,
                                          capacity_kwh=capacity_kwh)
        code = issue_code(conn, scope, device_id, now=now)
    return device_id, code


def issue_code(conn: psycopg.Connection, scope: AccessScope, device_id: int, *,
               now: dt.datetime | None = None) -> str:
    """Issue a new activation code (the previous one stops working); return it, once."""
    now = now or dt.datetime.now(dt.UTC)
    code = credentials.new_code()
    with conn.transaction():
        device = _device_for_admin(conn, scope, device_id)
        expires = now + CODE_VALID_FOR
        conn.execute("""UPDATE devices SET activation_code_hash = %s,
                               activation_code_expires_at = %s WHERE id = %s""",
                     (credentials.hash_code(code), expires, device_id))
        audit.record(conn, scope, "device.activation_code", target=f"device:{device_id}",
                     company_id=device["company_id"],
                     after={"serial": device["serial"], "expires_at": expires.isoformat()})
    return code


def revoke(conn: psycopg.Connection, scope: AccessScope, device_id: int, *,
           now: dt.datetime | None = None) -> bool:
    """Revoke a device's credentials and any pending code; False if it had none to revoke."""
    now = now or dt.datetime.now(dt.UTC)
    with conn.transaction():
        device = _device_for_admin(conn, scope, device_id)
        if device["credential_nonce"] is None and device["activation_code_hash"] is None:
            return False
        conn.execute("""UPDATE devices SET credential_nonce = NULL, revoked_at = %s,
                               activation_code_hash = NULL, activation_code_expires_at = NULL,
                               identity_changed_at = %s WHERE id = %s""",
                     (now, now, device_id))
        audit.record(conn, scope, "device.revoke", target=f"device:{device_id}",
                     company_id=device["company_id"],
                     before={"serial": device["serial"], "state": state(device)},
                     after={"state": "revoked"})
    return True


def activate(conn: psycopg.Connection, settings: Settings, *, serial: str, code: str,
             firmware: str | None = None, client: str = "?",
             now: dt.datetime | None = None) -> Activation:
    """Trade a valid activation code for MQTT credentials; raise ActivationRefused otherwise.

    A refused attempt changes nothing but the audit log, which records the real reason.
    """
    now = now or dt.datetime.now(dt.UTC)
    ca_certificate = _ca_certificate(settings)
    with conn.transaction():
        device = conn.execute(
            """SELECT d.*, s.company_id FROM devices d JOIN sites s ON s.id = d.site_id
               WHERE d.serial = %s FOR UPDATE OF d""", (serial,)).fetchone()
        reason = _refusal(device, code, now)
        if reason is None:
            nonce = credentials.new_nonce()
            conn.execute(
                """UPDATE devices SET credential_nonce = %s, activated_at = %s, revoked_at = NULL,
                          activation_code_hash = NULL, activation_code_expires_at = NULL,
                          firmware = COALESCE(%s, firmware), identity_changed_at = %s
                   WHERE id = %s""", (nonce, now, firmware, now, device["id"]))
        _audit_attempt(conn, serial, device, client, reason, firmware)
    if reason is not None:
        raise ActivationRefused("unknown serial or invalid activation code")
    return Activation(serial, credentials.derive_password(settings.device_key, serial, nonce),
                      settings.mqtt_device_url, settings.mqtt_prefix, ca_certificate)


def _refusal(device: dict | None, code: str, now: dt.datetime) -> str | None:
    if device is None:
        return "unknown serial"
    if device["activation_code_hash"] is None:
        return "no valid code (used, replaced or revoked)"
    if not hmac.compare_digest(bytes(device["activation_code_hash"]),
                               credentials.hash_code(code)):
        return "wrong code"
    if device["activation_code_expires_at"] <= now:
        return "expired code"
    return None


def _audit_attempt(conn: psycopg.Connection, serial: str, device: dict | None, client: str,
                   reason: str | None, firmware: str | None) -> None:
    scope = system_scope(f"device:{serial} from {client}")
    target = f"device:{device['id']}" if device else f"serial:{serial}"
    company = device["company_id"] if device else None
    if reason is None:
        audit.record(conn, scope, "device.activate", target=target, company_id=company,
                     after={"serial": serial, "firmware": firmware})
    else:
        audit.record(conn, scope, "device.activation_refused", target=target,
                     company_id=company, after={"serial": serial, "reason": reason})


def _ca_certificate(settings: Settings) -> str:
    if not settings.mqtt_ca_file:
        return ""
    try:
        return Path(settings.mqtt_ca_file).read_text()
    except OSError as error:
        raise UserFacingError(f"cannot read KILOWATCH_MQTT_CA_FILE: {error}") from None


def authenticate(conn: psycopg.Connection, settings: Settings, serial: str,
                 password: str) -> dict | None:
    """Return the device whose current MQTT credentials these are, else None."""
    device = conn.execute("SELECT * FROM devices WHERE serial = %s", (serial,)).fetchone()
    if device is None:
        # Same work either way, so the answer's timing does not tell which serials exist.
        credentials.password_matches(settings.device_key, serial, b"\0" * 32, password)
        return None
    nonce = device["credential_nonce"]
    if not credentials.password_matches(settings.device_key, serial,
                                        bytes(nonce) if nonce is not None else None, password):
        return None
    return device
