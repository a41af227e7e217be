"""The commissioning page and the report download: who sees, who issues, who may download."""

from __future__ import annotations

import json
import subprocess

import pytest

from kilowatch import db
from kilowatch.access import system_scope
from kilowatch.commissioning import report
from tests.dashboards.conftest import call_callback, login

COMMENT = "Handed over to the site manager; spare fuses in room B."


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _page(client, app, path: str) -> str:
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": ""})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _issue(client, app, site_id, comment=COMMENT):
    return call_callback(client, app, "commissioning-message.children",
                         {"commissioning-issue.n_clicks": 1,
                          "commissioning-comment.value": comment,
                          "commissioning-site-id.data": site_id, "commissioning-issued.data": 0},
                         triggered="commissioning-issue.n_clicks")


@pytest.fixture(scope="module")
def issued(app, tenants, settings):
    """Report v1 of company A's first site, issued through the page by A's admin."""
    response = _issue(_as(app, tenants.a.admin), app, tenants.a.sites[0])
    assert response.status_code == 200
    assert "Report v1 issued and queued to 1 admin(s)." in json.dumps(response.get_json())
    with db.connect(settings.database_url, autocommit=True) as conn:
        return report.list_reports(conn, system_scope("test"), tenants.a.sites[0])[0]


def test_a_viewer_of_the_site_sees_the_checklist_but_no_form(app, tenants):
    text = _page(_as(app, tenants.a.viewer), app, f"/site/{tenants.a.sites[0]}/commissioning")
    assert "commissioning-refresh" in text and "commissioning-checklist" in text
    assert "\"commissioning-issue\"" not in text
    path = f"/site/{tenants.a.sites[0]}/commissioning"
    admin_text = _page(_as(app, tenants.a.admin), app, path)
    assert "\"commissioning-issue\"" in admin_text


def test_other_sites_are_not_allowed(app, tenants):
    for site in (tenants.b.sites[0], tenants.a.sites[1]):
        text = _page(_as(app, tenants.a.viewer), app, f"/site/{site}/commissioning")
        assert "kw-not-allowed" in text


def test_the_live_checklist_lists_items_with_their_fixes_and_the_reports(app, tenants, issued):
    response = call_callback(_as(app, tenants.a.viewer), app, "commissioning-checklist.children",
                             {"commissioning-site-id.data": tenants.a.sites[0]})
    body = json.dumps(response.get_json())
    assert "Devices registered" in body and "Fix: Devices" in body
    assert f"/site/{tenants.a.sites[0]}/schedule" in body
    assert "Checklist: 0 of 8 done" in body
    assert f"/reports/commissioning/{issued['id']}.pdf" in body and "Handed over" in body


def test_forged_requests_for_another_company_get_nothing(app, tenants, issued):
    response = call_callback(_as(app, tenants.b.admin), app, "commissioning-checklist.children",
                             {"commissioning-site-id.data": tenants.a.sites[0]})
    assert response.status_code == 204
    assert _issue(_as(app, tenants.b.admin), app, tenants.a.sites[0]).status_code == 204
    for account in (tenants.a.viewer, tenants.a.operator, tenants.support):
        assert _issue(_as(app, account), app, tenants.a.sites[0]).status_code == 403


def test_a_too_long_comment_is_refused_next_to_the_form(app, tenants, issued):
    response = _issue(_as(app, tenants.a.admin), app, tenants.a.sites[0], comment="x" * 4001)
    assert "at most 4000" in json.dumps(response.get_json())


def test_the_company_and_platform_staff_download_the_pdf(app, tenants, issued):
    for account in (tenants.a.admin, tenants.a.viewer, tenants.support, tenants.superadmin):
        response = _as(app, account).get(f"/reports/commissioning/{issued['id']}.pdf")
        assert response.status_code == 200, account.email
        assert response.mimetype == "application/pdf"
        assert "attachment" in response.headers["Content-Disposition"]
    text = subprocess.run(["pdftotext", "-", "-"], input=response.data, capture_output=True,
                          check=True).stdout.decode()
    assert tenants.a.admin.email in text and "Handed over to the site manager" in text
    page = _as(app, tenants.a.admin).get(f"/reports/commissioning/{issued['id']}.html")
    assert page.status_code == 200 and "Commissioning report v1" in page.get_data(as_text=True)
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize("path", ["{id}.pdf", "{id}.html", "99999999.pdf", "abc.pdf"])
def test_another_companys_admin_gets_not_allowed(app, tenants, issued, path):
    response = _as(app, tenants.b.admin).get("/reports/commissioning/"
                                             + path.format(id=issued["id"]))
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "Not allowed" in text and "%PDF" not in text and "Handed over" not in text


def test_without_a_login_the_download_goes_to_the_login_page(app, issued):
    response = app.server.test_client().get(f"/reports/commissioning/{issued['id']}.pdf")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
