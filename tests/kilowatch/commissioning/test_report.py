"""Commissioning reports on a real database: versions, content (pdftotext), rights, e-mail."""

from __future__ import annotations

import dataclasses
import subprocess

import psycopg
import pytest

from kilowatch.access import AccessDenied, AccessScope
from kilowatch.alarms import outbox
from kilowatch.commissioning import report
from tests.kilowatch.commissioning import helpers
from tests.kilowatch.commissioning.helpers import ROOT
from tests.kilowatch.smtp_server import SmtpServer

COMMENT = "Inverter cabinet checked; the customer keeps the spare fuses in room B."


def pdf_text(pdf: bytes) -> str:
    """Return the text of a PDF as poppler's pdftotext reads it."""
    done = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True,
                          check=True, timeout=30)
    return done.stdout.decode()


@pytest.fixture(scope="module")
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def site(conn, settings):
    """A company with an admin, a viewer and one activated device that sent data."""
    company, site_id = helpers.new_company(conn)
    admin = helpers.new_admin(conn, company)
    device, serial, code = helpers.register(conn, admin, site_id)
    helpers.activate(conn, settings, serial, code)
    helpers.send_telemetry(conn, device, ["bms.soc"])
    return {"company": company, "id": site_id, "admin": admin, "serial": serial}


def stored(conn, report_id: int) -> dict:
    return conn.execute("SELECT * FROM commissioning_reports WHERE id = %s",
                        (report_id,)).fetchone()


def test_issuing_numbers_versions_and_the_pdf_lists_what_was_done(conn, settings, site):
    first = report.issue(conn, site["admin"], settings, site["id"], comment=COMMENT)
    second = report.issue(conn, site["admin"], settings, site["id"], comment="Second visit.")
    assert (first["version"], second["version"]) == (1, 2)
    assert [r["version"] for r in report.list_reports(conn, ROOT, site["id"])] == [2, 1]

    text = pdf_text(bytes(stored(conn, first["id"])["pdf"]))
    assert "Commissioning report v1" in text
    assert site["serial"] in text and "HES-XL" in text and "2.4.1" in text
    assert site["admin"].actor in text  # the admin's e-mail, among the logins
    for action in ("site.create", "device.register", "device.activate"):
        assert action in text
    assert " ".join(COMMENT.split()[:4]) in " ".join(text.split())
    assert settings.support_email in text
    assert "argon2" not in text  # never a password hash
    second_text = pdf_text(bytes(stored(conn, second["id"])["pdf"]))
    assert "commissioning.issue" in second_text and "Second visit." in second_text
    assert site["serial"] in stored(conn, first["id"])["html"]


def test_an_issued_report_is_never_changed(conn, settings, site):
    issued = report.issue(conn, site["admin"], settings, site["id"], comment="v1")
    with pytest.raises(psycopg.errors.RaiseException, match="never changed"):
        conn.execute("UPDATE commissioning_reports SET comment = 'edited' WHERE id = %s",
                     (issued["id"],))
    with pytest.raises(psycopg.errors.RaiseException, match="never changed"):
        conn.execute("DELETE FROM commissioning_reports WHERE id = %s", (issued["id"],))
    assert stored(conn, issued["id"])["comment"] == "v1"


def test_only_the_companys_admins_and_superadmins_issue(conn, settings, site):
    other_company, _ = helpers.new_company(conn)
    refused = [helpers.new_admin(conn, other_company),
               AccessScope(role="support", actor="support@example.com"),
               AccessScope(role="viewer", company_id=site["company"],
                           site_ids=frozenset({site["id"]}), actor="viewer@example.com")]
    for scope in refused:
        with pytest.raises(AccessDenied):
            report.issue(conn, scope, settings, site["id"], comment="no")
    assert report.list_reports(conn, ROOT, site["id"]) == []
    assert report.issue(conn, ROOT, settings, site["id"])["version"] == 1


def test_another_company_cannot_read_a_report(conn, settings, site):
    issued = report.issue(conn, site["admin"], settings, site["id"])
    other_company, _ = helpers.new_company(conn)
    with pytest.raises(AccessDenied):
        report.get_report(conn, helpers.new_admin(conn, other_company), issued["id"])
    with pytest.raises(AccessDenied):
        report.list_reports(conn, helpers.new_admin(conn, other_company), site["id"])
    support = AccessScope(role="support", actor="support@example.com")
    assert report.get_report(conn, support, issued["id"])["version"] == 1


def test_a_bad_comment_is_refused_in_one_line(conn, settings, site):
    with pytest.raises(report.ReportError, match="at most 4000"):
        report.issue(conn, site["admin"], settings, site["id"], comment="x" * 4001)
    with pytest.raises(report.ReportError, match="control characters"):
        report.issue(conn, site["admin"], settings, site["id"], comment="a\x00b")
    assert report.list_reports(conn, ROOT, site["id"]) == []


def test_the_pdf_is_e_mailed_to_every_admin_as_an_attachment(conn, settings, site, smtp):
    second_admin = helpers.new_admin(conn, site["company"])
    issued = report.issue(conn, site["admin"], settings, site["id"], comment=COMMENT)
    assert issued["mailed"] == 2
    sent = outbox.send_due(conn, dataclasses.replace(settings, smtp_url=smtp.url))
    assert sent["sent"] >= 2
    pdf = bytes(stored(conn, issued["id"])["pdf"])
    for admin in (site["admin"], second_admin):
        [message] = [m for m in smtp.to(admin.actor) if "Commissioning report v1" in m["Subject"]]
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == "application/pdf"
        assert attachment.get_filename() == f"commissioning-site{site['id']}-v1.pdf"
        assert attachment.get_content() == pdf
        assert "attached" in message.get_body(preferencelist=("plain",)).get_content()


def test_unicode_comments_render(conn, settings, site):
    issued = report.issue(conn, site["admin"], settings, site["id"],
                          comment="Réglé à 45 °C <b>ok</b> & fin → 🙂")
    row = stored(conn, issued["id"])
    assert "Réglé à 45 °C &lt;b&gt;ok&lt;/b&gt; &amp; fin → 🙂" in row["html"]
    assert "Réglé à 45 °C <b>ok</b> & fin" in pdf_text(bytes(row["pdf"]))
