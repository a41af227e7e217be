"""Companies and sites for the administration pages: who may read and change them, and checks."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope

ROOT = system_scope("test")
SITE = {"name": "Harbour", "timezone": "Europe/Paris", "address": "1 Quay Street",
        "latitude": 48.85, "longitude": 2.35, "contact_name": "Ada Site",
        "contact_email": "ada@harbour.example.com", "contact_phone": "+33 (1) 23-45-67-89"}


@dataclasses.dataclass(frozen=True)
class Two:
    """Two companies with a site each, and scopes of every role that matters here."""

    a: int
    b: int
    site_a: int
    site_b: int

    def admin(self, company: int) -> AccessScope:
        """A company admin's scope."""
        return AccessScope(role="admin", company_id=company, user_id=None,
                           actor=f"admin@{company}")

    @property
    def support(self) -> AccessScope:
        """A support engineer's scope."""
        return AccessScope(role="support", actor="support@example.com")

    def operator(self, company: int, site: int) -> AccessScope:
        """An operator's scope with one granted site."""
        return AccessScope(role="operator", company_id=company, site_ids=frozenset({site}))


@pytest.fixture(scope="module")
def two(settings) -> Two:
    """Companies A and B with one site each."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = fleet.create_company(conn, ROOT, "Sites A")
        b = fleet.create_company(conn, ROOT, "Sites B")
        site_a = fleet.create_site(conn, ROOT, company_id=a, name="A depot", timezone="UTC")
        site_b = fleet.create_site(conn, ROOT, company_id=b, name="B depot", timezone="UTC")
    return Two(a=a, b=b, site_a=site_a, site_b=site_b)


def _site(conn, site_id):
    return conn.execute("SELECT * FROM sites WHERE id = %s", (site_id,)).fetchone()


def test_a_company_admin_creates_a_site_with_its_contact_and_it_is_audited(conn, two):
    site_id = fleet.create_site(conn, two.admin(two.a), company_id=two.a, **SITE)
    row = _site(conn, site_id)
    assert {key: row[key] for key in SITE} == SITE
    audit = conn.execute("SELECT * FROM audit_log WHERE target = %s", (f"site:{site_id}",)
                         ).fetchone()
    assert audit["action"] == "site.create" and audit["company_id"] == two.a
    assert audit["actor"] == f"admin@{two.a}" and audit["after"]["contact_email"] == SITE[
        "contact_email"]


def test_update_site_changes_only_what_changed_and_audits_before_and_after(conn, two):
    site_id = fleet.create_site(conn, ROOT, company_id=two.a, name="Mill", timezone="UTC")
    changed = fleet.update_site(conn, two.admin(two.a), site_id, name="Mill", timezone="UTC",
                                latitude=45.5, contact_phone="  +44  20 7946 0958 ")
    assert changed == {"latitude": 45.5, "contact_phone": "+44 20 7946 0958"}
    row = _site(conn, site_id)
    assert (row["latitude"], row["contact_phone"], row["name"]) == (45.5, "+44 20 7946 0958",
                                                                    "Mill")
    assert row["updated_at"] is not None
    audit = conn.execute("SELECT * FROM audit_log WHERE target = %s AND action = 'site.update'",
                         (f"site:{site_id}",)).fetchone()
    assert audit["before"] == {"latitude": None, "contact_phone": None}
    assert audit["after"] == changed
    assert fleet.update_site(conn, ROOT, site_id, name="Mill", timezone="UTC", latitude=45.5,
                             contact_phone="+44 20 7946 0958") == {}


def test_a_company_admin_cannot_create_or_edit_another_company_site(conn, two):
    before = _site(conn, two.site_b)
    with pytest.raises(AccessDenied):
        fleet.create_site(conn, two.admin(two.a), company_id=two.b, name="Intruder",
                          timezone="UTC")
    with pytest.raises(AccessDenied):
        fleet.update_site(conn, two.admin(two.a), two.site_b, name="Taken", timezone="UTC")
    # Refused before any check of the values, so bad input tells nothing either.
    with pytest.raises(AccessDenied):
        fleet.update_site(conn, two.admin(two.a), two.site_b, name="", timezone="Nowhere")
    assert _site(conn, two.site_b) == before
    assert conn.execute("SELECT count(*) AS n FROM sites WHERE name = 'Intruder'"
                        ).fetchone()["n"] == 0


@pytest.mark.parametrize("role", ["support", "operator"])
def test_support_and_operators_change_no_site(conn, two, role):
    scope = two.support if role == "support" else two.operator(two.a, two.site_a)
    with pytest.raises(AccessDenied):
        fleet.create_site(conn, scope, company_id=two.a, name="No", timezone="UTC")
    with pytest.raises(AccessDenied):
        fleet.update_site(conn, scope, two.site_a, name="No", timezone="UTC")
    with pytest.raises(AccessDenied):
        fleet.create_company(conn, scope, "No company")


def test_sites_for_admin_are_read_by_own_admins_and_platform_staff_only(conn, two):
    names = {row["name"] for row in fleet.list_sites_for_admin(conn, two.admin(two.a), two.a)}
    assert "A depot" in names and "B depot" not in names
    assert {row["name"] for row in fleet.list_sites_for_admin(conn, two.support, two.b)} == {
        "B depot"}
    with pytest.raises(AccessDenied):
        fleet.list_sites_for_admin(conn, two.admin(two.a), two.b)
    with pytest.raises(AccessDenied):
        fleet.list_sites_for_admin(conn, two.operator(two.a, two.site_a), two.a)
    with pytest.raises(AccessDenied):
        fleet.get_site_for_admin(conn, two.admin(two.a), two.site_b)
    assert fleet.get_site_for_admin(conn, two.support, two.site_b)["name"] == "B depot"


def test_reviewable_companies_depend_on_the_role(conn, two):
    assert [row["id"] for row in fleet.reviewable_companies(conn, two.admin(two.a))] == [two.a]
    every = {row["id"] for row in fleet.reviewable_companies(conn, two.support)}
    assert {two.a, two.b} <= every
    assert fleet.reviewable_companies(conn, two.operator(two.a, two.site_a)) == []
    row = next(r for r in fleet.reviewable_companies(conn, ROOT) if r["id"] == two.b)
    assert (row["site_count"], row["device_count"], row["user_count"]) == (1, 0, 0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "   ", "a site needs a name"),
    ("name", "x" * 121, "name is at most 120 characters"),
    ("timezone", "Mars/Olympus", "is not an IANA time zone"),
    ("timezone", "localtime", "is not an IANA time zone"),
    ("timezone", "../../etc/passwd", "is not an IANA time zone"),
    ("latitude", 90.5, "latitude must be between -90 and 90"),
    ("latitude", float("nan"), "latitude must be between -90 and 90"),
    ("latitude", True, "latitude must be between -90 and 90"),
    ("longitude", -180.01, "longitude must be between -180 and 180"),
    ("longitude", float("inf"), "longitude must be between -180 and 180"),
    ("address", "a" * 301, "address is at most 300 characters"),
    ("contact_name", "n" * 121, "contact name is at most 120 characters"),
    ("contact_email", "not-an-address", "is not an e-mail address"),
    ("contact_email", "a b@example.com", "is not an e-mail address"),
    ("contact_phone", "call me", "a phone number has 6 to 20 digits"),
    ("contact_phone", "+33 1", "a phone number has 6 to 20 digits"),
    ("contact_phone", "1" * 21, "a phone number has 6 to 20 digits"),
    ("contact_phone", "+1 555 0100; DROP", "a phone number has 6 to 20 digits"),
    ("has_optimizer", "yes", "has_optimizer must be on or off"),
    ("has_optimizer", 1, "has_optimizer must be on or off"),
])
def test_bad_site_values_are_refused_naming_the_field(conn, two, field, value, message):
    before = _site(conn, two.site_a)
    values = {**SITE, "name": "A depot", field: value}
    with pytest.raises(fleet.FleetError, match=message) as refused:
        fleet.update_site(conn, two.admin(two.a), two.site_a, **values)
    assert refused.value.field == field
    with pytest.raises(fleet.FleetError, match=message):
        fleet.create_site(conn, ROOT, company_id=two.a, **{**values, "name": values["name"]
                                                           if field == "name" else "Fresh"})
    assert _site(conn, two.site_a) == before


def test_a_duplicate_site_name_is_refused_on_the_name_field(conn, two):
    fleet.create_site(conn, ROOT, company_id=two.a, name="Twin", timezone="UTC")
    other = fleet.create_site(conn, ROOT, company_id=two.a, name="Other twin", timezone="UTC")
    with pytest.raises(fleet.FleetError, match="already has a site named 'Twin'") as refused:
        fleet.update_site(conn, two.admin(two.a), other, name="Twin", timezone="UTC")
    assert refused.value.field == "name"
    assert _site(conn, other)["name"] == "Other twin"


@pytest.mark.parametrize(("name", "message"), [("  ", "a company needs a name"),
                                               ("c" * 121, "name is at most 120 characters"),
                                               ("Sites A", "already exists")])
def test_company_names_are_checked(conn, two, name, message):
    with pytest.raises(fleet.FleetError, match=message) as refused:
        fleet.create_company(conn, ROOT, name)
    assert refused.value.field == "name"
