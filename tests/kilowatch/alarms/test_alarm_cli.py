"""``kilowatch alarm list`` and ``kilowatch mail test|outbox`` as an operator runs them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess

import pytest

from kilowatch import db, fleet
from kilowatch.access import system_scope
from kilowatch.alarms import events as alarms
from tests.kilowatch.smtp_server import SmtpServer, free_port


def kilowatch(kw_env, *args, **env):
    return subprocess.run(["kilowatch", *args], env={**os.environ, **kw_env, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def alarm_ids(kw_env):
    scope = system_scope("test")
    with db.connect(autocommit=True) as conn:
        company = fleet.create_company(conn, scope, "Clico")
        site = fleet.create_site(conn, scope, company_id=company, name="Clico depot",
                                 timezone="UTC")
        device = fleet.register_device(conn, scope, site_id=site, serial="CLI-1", model="HES-L")
        now = dt.datetime.now(dt.UTC)
        cleared = alarms.raise_alarm(conn, device_id=device, code="PCS_FAN", severity="warning",
                                     source="device", message="fan", at=now - dt.timedelta(hours=2))
        alarms.clear_alarm(conn, device_id=device, code="PCS_FAN", at=now)
        active = alarms.raise_alarm(conn, device_id=device, code="BMS_OVERTEMP",
                                    severity="critical", source="device", message="61 °C", at=now)
    return {"active": active, "cleared": cleared}


def test_alarm_list_shows_active_then_all(kw_env, alarm_ids):
    result = kilowatch(kw_env, "alarm", "list", "--site", "Clico depot")
    assert result.returncode == 0, result.stderr
    assert "BMS_OVERTEMP" in result.stdout and "PCS_FAN" not in result.stdout
    rows = [json.loads(line) for line in kilowatch(
        kw_env, "alarm", "list", "--all", "--json").stdout.splitlines()]
    assert [r["id"] for r in rows] == [alarm_ids["active"], alarm_ids["cleared"]]


def test_alarm_list_unknown_site_is_one_line(kw_env, alarm_ids):
    result = kilowatch(kw_env, "alarm", "list", "--site", "Nowhere")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Nowhere" in result.stderr


def test_mail_test_sends_through_the_configured_server(kw_env):
    server = SmtpServer()
    server.start()
    try:
        result = kilowatch(kw_env, "mail", "test", "--to", "ops@example.com",
                           KILOWATCH_SMTP_URL=server.url)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert [m["To"] for m in server.messages] == ["ops@example.com"]
    assert server.messages[0]["Subject"] == "[Kilowatch] Test e-mail"


def test_mail_test_without_a_server_is_one_clear_line(kw_env):
    result = kilowatch(kw_env, "mail", "test", "--to", "ops@example.com",
                       KILOWATCH_SMTP_URL=f"smtp://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: no e-mail sent: cannot talk to 127.0.0.1")


def test_mail_outbox_lists_waiting_emails_with_their_error(kw_env, conn):
    conn.execute("INSERT INTO email_outbox (recipient, subject, text_body, html_body, attempts, "
                 "last_error) VALUES ('late@example.com', 'Waiting', 't', 'h', 3, "
                 "'Connection refused')")
    result = kilowatch(kw_env, "mail", "outbox")
    assert result.returncode == 0, result.stderr
    assert "late@example.com" in result.stdout and "(Connection refused)" in result.stdout
    assert "late@example.com" not in kilowatch(kw_env, "mail", "outbox", "--status",
                                               "failed").stdout
