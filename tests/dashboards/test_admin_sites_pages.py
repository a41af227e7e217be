"""Administration → Sites and → Companies driven through callback requests, as a browser would."""

from __future__ import annotations

import json

import pytest

from tests.dashboards import forging
from tests.dashboards.conftest import call_callback
from tests.dashboards.schedule_helpers import signed_in

FIELDS = ("name", "address", "latitude", "longitude", "timezone", "contact-name",
          "contact-email", "contact-phone")
HARBOUR = {"name": "Harbour depot", "address": "1 Quay Street, Brest", "latitude": 48.38,
           "longitude": -4.49, "timezone": "Europe/Paris", "contact-name": "Ada Quay",
           "contact-email": "ada@quay.example.com", "contact-phone": "+33 2 98 00 00 00"}


def _site_action(client, app, button, *, company=None, site=None, **values):
    data = {f"{button}.n_clicks": 1, "admin-sites-changed.data": 0,
            "admin-sites-company.value": None if company is None else str(company),
            "admin-sites-site.value": None if site is None else str(site)}
    data.update({f"admin-sites-{name.replace('_', '-')}.value": value
                 for name, value in values.items()})
    return call_callback(client, app, "admin-sites-message.children", data,
                         triggered=f"{button}.n_clicks")


def _create(client, app, company, **values):
    return _site_action(client, app, "admin-sites-create", company=company, **values)


def _save(client, app, site, **values):
    return _site_action(client, app, "admin-sites-save", site=site, **values)


def _answer(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response.get_json()["response"]


def _site(conn, site_id=None, name=None):
    if site_id is None:
        return conn.execute("SELECT * FROM sites WHERE name = %s", (name,)).fetchone()
    return conn.execute("SELECT * FROM sites WHERE id = %s", (site_id,)).fetchone()


def _fill(client, app, site_id):
    return call_callback(client, app, "admin-sites-name.value",
                         {"admin-sites-site.value": str(site_id)})


def _page(client, app, path):
    return call_callback(client, app, "_pages_content.children", {
        "_pages_location.pathname": path, "_pages_location.search": ""}).get_data(as_text=True)


# --- sites -------------------------------------------------------------------------------------


def test_admin_creates_a_site_with_its_contact_and_sees_it_listed(app, conn, tenants):
    client = signed_in(app, tenants.a.admin)
    answer = _answer(_create(client, app, tenants.a.id, **HARBOUR))
    assert "Site Harbour depot created." in json.dumps(answer["admin-sites-message"])
    row = _site(conn, name="Harbour depot")
    assert row["company_id"] == tenants.a.id
    assert (row["contact_name"], row["contact_email"], row["contact_phone"], row["latitude"]) == (
        "Ada Quay", "ada@quay.example.com", "+33 2 98 00 00 00", 48.38)
    listing = call_callback(client, app, "admin-sites-table.children",
                            {"admin-sites-company.value": str(tenants.a.id)})
    text = listing.get_data(as_text=True)
    assert "Harbour depot" in text and "ada@quay.example.com" in text
    assert "Company B site" not in text
    audit = conn.execute("SELECT * FROM audit_log WHERE action = 'site.create' AND target = %s",
                         (f"site:{row['id']}",)).fetchone()
    assert audit["actor"] == tenants.a.admin.email


def test_admin_edits_a_site_chosen_in_the_form(app, conn, tenants):
    client = signed_in(app, tenants.a.admin)
    site_id = _site(conn, name="Harbour depot")["id"]
    assert _answer(_fill(client, app, ""))["admin-sites-save"]["disabled"] is True
    shown = _answer(_fill(client, app, site_id))
    assert shown["admin-sites-save"]["disabled"] is False
    assert shown["admin-sites-contact-email"]["value"] == "ada@quay.example.com"
    assert shown["admin-sites-latitude"]["value"] == 48.38
    answer = _answer(_save(client, app, site_id, **{**HARBOUR, "contact-phone": "+33 6 11 22 33 44",
                                                    "latitude": 48.4}))
    assert "latitude, contact phone changed" in json.dumps(answer["admin-sites-message"])
    row = _site(conn, site_id)
    assert (row["contact_phone"], row["latitude"]) == ("+33 6 11 22 33 44", 48.4)
    audit = conn.execute("SELECT * FROM audit_log WHERE action = 'site.update' AND target = %s",
                         (f"site:{site_id}",)).fetchone()
    assert audit["before"]["contact_phone"] == "+33 2 98 00 00 00"
    assert audit["after"] == {"latitude": 48.4, "contact_phone": "+33 6 11 22 33 44"}


def test_admin_offers_a_site_the_optimizer_and_a_forged_flag_changes_nothing(app, conn,
                                                                           tenants):
    client = signed_in(app, tenants.a.admin)
    site_id = _site(conn, name="Harbour depot")["id"]
    assert _answer(_fill(client, app, site_id))["admin-sites-has-optimizer"]["value"] is False
    answer = _answer(_save(client, app, site_id, **HARBOUR, has_optimizer=True))
    assert "has optimizer changed" in json.dumps(answer["admin-sites-message"])
    assert _site(conn, site_id)["has_optimizer"] is True
    assert _answer(_fill(client, app, site_id))["admin-sites-has-optimizer"]["value"] is True
    # Anything but a ticked box counts as off; the rest of the site stays as it was.
    answer = _answer(_save(client, app, site_id, **HARBOUR, has_optimizer="true"))
    assert "has optimizer changed" in json.dumps(answer["admin-sites-message"])
    assert _site(conn, site_id)["has_optimizer"] is False
    assert _site(conn, site_id)["name"] == "Harbour depot"


def test_admin_cannot_see_create_or_edit_another_company_site(app, conn, tenants):
    client = signed_in(app, tenants.a.admin)
    before = _site(conn, tenants.b.sites[0])
    assert _fill(client, app, tenants.b.sites[0]).status_code == 204
    assert _save(client, app, tenants.b.sites[0], **{**HARBOUR, "name": "Taken"}
                 ).status_code == 204
    assert _save(client, app, tenants.b.sites[0], **{**HARBOUR, "latitude": "garbage"}
                 ).status_code == 204  # refused before any value is checked
    assert _create(client, app, tenants.b.id, **{**HARBOUR, "name": "Planted"}
                   ).status_code == 204
    assert _site(conn, tenants.b.sites[0]) == before
    assert _site(conn, name="Planted") is None
    listing = call_callback(client, app, "admin-sites-table.children",
                            {"admin-sites-company.value": str(tenants.b.id)})
    assert listing.status_code == 204


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "  ", "A site needs a name."),
    ("name", "Company A site 2", "The company already has a site named"),
    ("latitude", 95, "Latitude must be between -90 and 90."),
    ("longitude", "east", "Longitude must be a number."),
    ("timezone", "Europe/Atlantis", "Is not an IANA time zone"),
    ("contact-email", "ada at quay", "Is not an e-mail address"),
    ("contact-phone", "call reception", "A phone number has 6 to 20 digits"),
    ("address", "x" * 301, "Address is at most 300 characters"),
])
def test_bad_input_gets_a_message_next_to_its_field(app, conn, tenants, field, value,
                                                    message):
    client = signed_in(app, tenants.a.admin)
    site_id = tenants.a.sites[0]
    before = _site(conn, site_id)
    answer = _answer(_save(client, app, site_id, **{**HARBOUR, "name": before["name"],
                                                    field: value}))
    shown = answer[f"admin-sites-{field}-error"]["children"]
    assert message.lower() in shown.lower()
    assert all(answer[f"admin-sites-{other}-error"]["children"] is None
               for other in FIELDS if other != field)
    assert _site(conn, site_id) == before


def test_support_reads_sites_read_only(app, conn, tenants):
    client = signed_in(app, tenants.support)
    listing = call_callback(client, app, "admin-sites-table.children",
                            {"admin-sites-company.value": str(tenants.b.id)})
    assert listing.status_code == 200 and "Company B site 1" in listing.get_data(as_text=True)
    page = _page(client, app, "/admin/sites")
    assert "admin-sites-read-only" in page and "admin-sites-save" not in page
    before = _site(conn, tenants.b.sites[0])
    assert _save(client, app, tenants.b.sites[0], **HARBOUR).status_code == 403
    assert _create(client, app, tenants.b.id, **HARBOUR).status_code == 403
    assert _fill(client, app, tenants.b.sites[0]).status_code == 403
    assert _site(conn, tenants.b.sites[0]) == before


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_get_no_site_administration(app, tenants, role):
    client = signed_in(app, getattr(tenants.a, role))
    assert "kw-not-allowed" in _page(client, app, "/admin/sites")
    assert _create(client, app, tenants.a.id, **HARBOUR).status_code == 403
    assert call_callback(client, app, "admin-sites-table.children",
                         {"admin-sites-company.value": str(tenants.a.id)}).status_code == 403


# --- companies ---------------------------------------------------------------------------------


def _create_company(client, app, name):
    return call_callback(client, app, "admin-companies-message.children", {
        "admin-companies-create.n_clicks": 1, "admin-companies-name.value": name,
        "admin-companies-changed.data": 0}, triggered="admin-companies-create.n_clicks")


def test_superadmin_creates_a_company_and_bad_names_are_refused_beside_the_field(app, conn,
                                                                                tenants):
    client = signed_in(app, tenants.superadmin)
    answer = _answer(_create_company(client, app, "  Initech  "))
    assert "Company Initech created." in json.dumps(answer["admin-companies-message"])
    row = conn.execute("SELECT * FROM companies WHERE name = 'Initech'").fetchone()
    audit = conn.execute("SELECT * FROM audit_log WHERE action = 'company.create' AND "
                         "target = %s", (f"company:{row['id']}",)).fetchone()
    assert audit["actor"] == tenants.superadmin.email
    for name, message in (("Initech", "A company named 'Initech' already exists."),
                          ("", "A company needs a name.")):
        answer = _answer(_create_company(client, app, name))
        assert answer["admin-companies-name-error"]["children"] == message
    listing = call_callback(client, app, "admin-companies-table.children",
                            {"admin-companies-changed.data": 1}).get_data(as_text=True)
    assert "Initech" in listing and "Company B" in listing


def test_support_lists_companies_but_creates_none_and_admins_see_no_companies_page(app, conn,
                                                                                  tenants):
    support = signed_in(app, tenants.support)
    listing = call_callback(support, app, "admin-companies-table.children",
                            {"admin-companies-changed.data": 1})
    assert listing.status_code == 200 and "Company A" in listing.get_data(as_text=True)
    assert "admin-companies-read-only" in _page(support, app, "/admin/companies")
    assert _create_company(support, app, "Support Co").status_code == 403
    admin = signed_in(app, tenants.a.admin)
    assert "kw-not-allowed" in _page(admin, app, "/admin/companies")
    assert call_callback(admin, app, "admin-companies-table.children",
                         {"admin-companies-changed.data": 1}).status_code == 403
    assert _create_company(admin, app, "Admin Co").status_code == 403
    assert conn.execute("SELECT count(*) AS n FROM companies WHERE name LIKE '% Co'"
                        ).fetchone()["n"] == 0


def _find(tree, element_id):
    """Return the component with this id in a layout's JSON, or None."""
    if isinstance(tree, dict):
        if tree.get("props", {}).get("id") == element_id:
            return tree
        children = list(tree.values())
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    return next((found for child in children if (found := _find(child, element_id))), None)


def test_the_admin_menu_lists_the_new_pages_by_role(app, tenants):
    expected = {"superadmin": ["/admin/companies", "/admin/sites", "/admin/devices",
                               "/admin/users"],
                "support": ["/admin/companies", "/admin/sites", "/admin/devices"],
                "admin": ["/admin/sites", "/admin/devices", "/admin/users"]}
    for role, paths in expected.items():
        account = tenants.a.admin if role == "admin" else getattr(tenants, role)
        menu = _find(signed_in(app, account).get("/_dash-layout").get_json(), "nav-admin")
        hrefs = [item["props"]["href"] for item in menu["props"]["children"]]
        assert hrefs[:len(paths)] == paths, role
        assert "/admin/companies" not in hrefs[len(paths):], role
        if role == "support":
            assert hrefs == paths  # nothing they could change


def test_forged_values_never_crash_the_sites_and_companies_pages(app, tenants):
    values = {"admin-sites-company.value": str(tenants.a.id),
              "admin-sites-site.value": str(tenants.a.sites[1]),
              "admin-sites-name.value": "Company A site 2",
              "admin-sites-timezone.value": "Europe/Paris"}

    def real(_key, dependency):
        return values.get(f"{dependency['id']}.{dependency['property']}", 1)

    client = signed_in(app, tenants.superadmin)
    failures = []
    for prefix in ("admin-sites", "admin-companies"):
        failures += forging.forge_each_input(client, app, prefix, real)
        failures += forging.forge_all_inputs(client, app, prefix)
    assert not failures, "\n".join(failures)
