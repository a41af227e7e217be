"""Device administration: who may list, register, re-code and revoke devices, and what they see."""

from __future__ import annotations

import dataclasses
import datetime as dt

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.devices import admin, lifecycle

ROOT = system_scope("test")
SUPPORT = AccessScope(role="support", actor="support@example.com")


def _admin(company: int) -> AccessScope:
    return AccessScope(role="admin", company_id=company, actor=f"admin@{company}")


@dataclasses.dataclass(frozen=True)
class Fleet:
    """Two companies, a site each, and a device on B's site."""

    a: int
    b: int
    site_a: int
    site_b: int
    device_b: int


@pytest.fixture(scope="module")
def two(settings) -> Fleet:
    """Company A (no device yet) and company B with device DEV-B1."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = fleet.create_company(conn, ROOT, "Devices A")
        b = fleet.create_company(conn, ROOT, "Devices B")
        site_a = fleet.create_site(conn, ROOT, company_id=a, name="A yard", timezone="UTC")
        site_b = fleet.create_site(conn, ROOT, company_id=b, name="B yard", timezone="UTC")
        device_b, _code = lifecycle.register(conn, ROOT, site_id=site_b, serial="DEV-B1",
                                             model="HES-XL", rated_power_kw=100,
                                             capacity_kwh=215)
    return Fleet(a=a, b=b, site_a=site_a, site_b=site_b, device_b=device_b)


def _device(conn, device_id):
    return conn.execute("SELECT * FROM devices WHERE id = %s", (device_id,)).fetchone()


def test_a_device_goes_registered_activated_revoked_as_the_admin_list_shows(conn, two,
                                                                             settings):
    scope = _admin(two.a)
    device_id, code = lifecycle.register(conn, scope, site_id=two.site_a, serial="DEV-A1",
                                         model="HES-L", rated_power_kw=50, capacity_kwh=100)

    def shown(now=None):
        rows = admin.list_devices_for_admin(conn, scope, two.a, now=now)
        return next(row for row in rows if row["id"] == device_id)

    row = shown()
    assert (row["serial"], row["site_name"], row["model"], row["rated_power_kw"],
            row["capacity_kwh"]) == ("DEV-A1", "A yard", "HES-L", 50, 100)
    assert (row["state"], row["code"], row["activated_at"]) == ("registered", "valid", None)
    assert "credential_nonce" not in row and "activation_code_hash" not in row
    later = dt.datetime.now(dt.UTC) + lifecycle.CODE_VALID_FOR + dt.timedelta(minutes=1)
    assert shown(now=later)["code"] == "expired"
    lifecycle.activate(conn, settings, serial="DEV-A1", code=code, firmware="2.1.0")
    row = shown()
    assert (row["state"], row["code"], row["firmware"]) == ("activated", None, "2.1.0")
    assert row["activated_at"] is not None
    assert lifecycle.revoke(conn, scope, device_id)
    row = shown()
    assert row["state"] == "revoked" and row["revoked_at"] is not None
    actions = [r["action"] for r in conn.execute(
        "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (f"device:{device_id}",))]
    assert actions == ["device.register", "device.activation_code", "device.activate",
                       "device.revoke"]


def test_a_company_admin_sees_only_own_devices(conn, two):
    lifecycle.register(conn, ROOT, site_id=two.site_a, serial="DEV-A2", model="meter")
    serials = {row["serial"] for row in admin.list_devices_for_admin(conn, _admin(two.a))}
    assert "DEV-A2" in serials and "DEV-B1" not in serials
    with pytest.raises(AccessDenied):
        admin.list_devices_for_admin(conn, _admin(two.a), two.b)
    with pytest.raises(AccessDenied):
        admin.device_to_change(conn, _admin(two.a), two.device_b)


def test_support_reads_every_company_devices_but_changes_none(conn, two):
    serials = {row["serial"] for row in admin.list_devices_for_admin(conn, SUPPORT)}
    assert {"DEV-B1"} <= serials
    assert [row["serial"] for row in admin.list_devices_for_admin(conn, SUPPORT, two.b)] == [
        "DEV-B1"]
    before = _device(conn, two.device_b)
    with pytest.raises(AccessDenied):
        lifecycle.register(conn, SUPPORT, site_id=two.site_b, serial="DEV-S1", model="HES-L")
    with pytest.raises(AccessDenied):
        lifecycle.issue_code(conn, SUPPORT, two.device_b)
    with pytest.raises(AccessDenied):
        lifecycle.revoke(conn, SUPPORT, two.device_b)
    with pytest.raises(AccessDenied):
        admin.device_to_change(conn, SUPPORT, two.device_b)
    assert _device(conn, two.device_b) == before


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_get_no_device_administration(conn, two, role):
    scope = AccessScope(role=role, company_id=two.a, site_ids=frozenset({two.site_a}))
    with pytest.raises(AccessDenied):
        admin.list_devices_for_admin(conn, scope)
    with pytest.raises(AccessDenied):
        admin.list_devices_for_admin(conn, scope, two.a)
    with pytest.raises(AccessDenied):
        lifecycle.register(conn, scope, site_id=two.site_a, serial="DEV-V1", model="HES-L")


def test_a_company_admin_cannot_register_recode_or_revoke_in_another_company(conn, two):
    before = _device(conn, two.device_b)
    scope = _admin(two.a)
    # A reserved or malformed serial is refused as a foreign site first: nothing is told.
    for serial in ("DEV-X1", "kilowatch-collector", "bad serial"):
        with pytest.raises(AccessDenied):
            lifecycle.register(conn, scope, site_id=two.site_b, serial=serial, model="HES-L")
    with pytest.raises(AccessDenied):
        lifecycle.issue_code(conn, scope, two.device_b)
    with pytest.raises(AccessDenied):
        lifecycle.revoke(conn, scope, two.device_b)
    assert _device(conn, two.device_b) == before
    assert conn.execute("SELECT count(*) AS n FROM devices WHERE serial = 'DEV-X1'"
                        ).fetchone()["n"] == 0


def test_a_serial_of_another_company_is_refused_without_saying_so(conn, two):
    with pytest.raises(fleet.FleetError) as refused:
        lifecycle.register(conn, _admin(two.a), site_id=two.site_a, serial="DEV-B1",
                           model="HES-L")
    assert str(refused.value) == fleet.DUPLICATE_SERIAL and refused.value.field == "serial"
    with pytest.raises(fleet.FleetError, match="'DEV-B1' is already registered"):
        lifecycle.register(conn, ROOT, site_id=two.site_a, serial="DEV-B1", model="HES-L")
    lifecycle.register(conn, _admin(two.a), site_id=two.site_a, serial="DEV-A3", model="HES-L")
    with pytest.raises(fleet.FleetError, match="'DEV-A3' is already registered"):
        lifecycle.register(conn, _admin(two.a), site_id=two.site_a, serial="DEV-A3",
                           model="HES-L")


@pytest.mark.parametrize(("values", "field"), [
    ({"serial": "has space"}, "serial"), ({"serial": "kilowatch-publisher"}, "serial"),
    ({"model": "HES-M"}, "model"), ({"rated_power_kw": -1.0}, "rated_power_kw"),
    ({"capacity_kwh": float("nan")}, "capacity_kwh")])
def test_bad_device_values_name_their_field(conn, two, values, field):
    arguments = {"site_id": two.site_a, "serial": "DEV-OK", "model": "HES-L", **values}
    with pytest.raises(fleet.FleetError) as refused:
        lifecycle.register(conn, _admin(two.a), **arguments)
    assert refused.value.field == field
    assert conn.execute("SELECT count(*) AS n FROM devices WHERE serial = %s",
                        (arguments["serial"],)).fetchone()["n"] == 0
