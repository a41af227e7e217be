"""CSV and XLSX exports: header with zone and units, rows equal to the database, scope checked."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import psycopg
import pytest

from dashboards import export
from dashboards.app import create_app
from kilowatch import db
from tests.dashboards import seed
from tests.dashboards.conftest import login


@pytest.fixture(scope="module")
def data(tenants, settings):
    """Raw samples every 10 s over the last two hours, and two days of rollups."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = seed.register(conn, tenants.a.sites[0], "EXP-A1")
        b = seed.register(conn, tenants.b.sites[0], "EXP-B1")
        seed.seed_history(conn, a, days=2)
        seed.seed_history(conn, b, days=2)
        ids = seed.point_ids(conn)
        now = datetime.now(UTC).replace(microsecond=0)
        conn.execute("INSERT INTO telemetry (time, device_id, point_id, value) "
                     "SELECT g, %s, %s, extract(epoch FROM g) / 1e6 FROM generate_series("
                     "%s::timestamptz, %s::timestamptz, '10 seconds') g",
                     (a, ids["pcs.p"], now - timedelta(hours=2), now))
        raw_rows = conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = %s",
                                (a,)).fetchone()["n"]
    return {"a": a, "b": b, "raw_rows": raw_rows}


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_raw_csv_rows_equal_the_stored_samples(app, tenants, data, conn):
    site = tenants.a.sites[0]
    response = _as(app, tenants.a.viewer).get(
        f"/export/site/{site}.csv?range=7d&points=pcs.p&resolution=raw")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = _csv(response)
    assert rows[0] == ["time (Europe/Paris)", "EXP-A1 pcs.p (kW)"]
    stored = conn.execute(
        "SELECT time, value FROM telemetry WHERE device_id = %s ORDER BY time",
        (data["a"],)).fetchall()
    tz = ZoneInfo("Europe/Paris")
    assert rows[1:] == [[r["time"].astimezone(tz).isoformat(), repr(r["value"])]
                        for r in stored]


def test_hourly_csv_has_local_times_with_offsets_and_one_column_per_point(app, tenants, data):
    response = _as(app, tenants.a.admin).get(
        f"/export/site/{tenants.a.sites[0]}.csv?range=yesterday"
        "&points=bms.soc,meter.pv.p,unknown.point&resolution=1h")
    rows = _csv(response)
    assert rows[0] == ["time (Europe/Paris)", "EXP-A1 bms.soc (%)", "EXP-A1 meter.pv.p (kW)"]
    assert len(rows) - 1 in (23, 24, 25)  # a local day (DST days are shorter or longer)
    first = datetime.fromisoformat(rows[1][0])
    assert first.utcoffset() is not None and (first.hour, first.minute) == (0, 0)


def test_xlsx_is_written_with_the_same_header(app, tenants, data):
    response = _as(app, tenants.a.viewer).get(
        f"/export/site/{tenants.a.sites[0]}.xlsx?range=30d&points=bms.soc&resolution=1h")
    assert response.status_code == 200
    book = openpyxl.load_workbook(io.BytesIO(response.get_data()), read_only=True)
    rows = list(book["data"].iter_rows(values_only=True))
    assert rows[0] == ("time (Europe/Paris)", "EXP-A1 bms.soc (%)")
    assert 45 <= len(rows) - 1 <= 49  # two days of hourly rows
    assert isinstance(rows[1][0], datetime) and isinstance(rows[1][1], float)
    about = dict(book["about"].iter_rows(values_only=True))
    assert about["time zone"] == "Europe/Paris" and about["resolution"] == "1 h"


@pytest.mark.parametrize("who", ["viewer", "operator", "admin"])
def test_another_company_site_is_not_found(app, tenants, data, who):
    client = _as(app, getattr(tenants.a, who))
    for extension in ("csv", "xlsx"):
        response = client.get(f"/export/site/{tenants.b.sites[0]}.{extension}"
                              "?range=7d&points=pcs.p&resolution=raw")
        assert response.status_code == 404
        assert b"EXP-B1" not in response.get_data()


def test_viewer_cannot_export_an_ungranted_site_of_their_company(app, tenants, data):
    response = _as(app, tenants.a.viewer).get(
        f"/export/site/{tenants.a.sites[1]}.csv?range=7d&points=pcs.p")
    assert response.status_code == 404


def test_anonymous_export_is_refused(client, tenants, data):
    response = client.get(f"/export/site/{tenants.a.sites[0]}.csv?range=7d&points=pcs.p")
    assert response.status_code in (302, 401)
    assert b"EXP-A1" not in response.get_data()


@pytest.mark.parametrize(("query", "message"), [
    ("range=forever&points=pcs.p", "range must be one of"),
    ("range=custom&first=2026-02-30&last=2026-03-01&points=pcs.p", "first must be a date"),
    ("range=custom&first=9999-12-31&last=9999-12-31&points=pcs.p", "between 1970 and 2100"),
    ("range=custom&first=0001-01-01&last=0001-01-01&points=pcs.p", "between 1970 and 2100"),
    ("range=7d&points=", "choose at least one point"),
    ("range=7d&points=DROP TABLE", "point names"),
    ("range=7d&points=pcs.p&resolution=5s", "resolution must be one of"),
])
def test_bad_queries_get_a_clear_400(app, tenants, data, query, message):
    response = _as(app, tenants.a.viewer).get(f"/export/site/{tenants.a.sites[0]}.csv?{query}")
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize("site", ["²", "99999999999", "0", "-1", "1.5"])
def test_malformed_site_ids_are_not_found(app, tenants, data, site):
    response = _as(app, tenants.a.admin).get(f"/export/site/{site}.csv?range=7d&points=pcs.p")
    assert response.status_code == 404


CSV_QUERY = "range=7d&points=pcs.p&resolution=raw"


def test_a_third_export_at_once_is_refused_until_one_has_been_read(app, tenants, data):
    client = _as(app, tenants.a.admin)
    url = f"/export/site/{tenants.a.sites[0]}.csv?{CSV_QUERY}"
    running = [client.get(url, buffered=False) for _ in range(2)]
    assert [r.status_code for r in running] == [200, 200]
    third = client.get(url)
    assert third.status_code == 429
    assert third.get_data(as_text=True) == (
        "Cannot export: you already have 2 exports running; wait until one has finished "
        "downloading\n")
    other_user = _as(app, tenants.a.viewer).get(url)
    assert other_user.status_code == 200  # the limit is per user
    other_user.close()
    running[0].get_data()  # read to the end: its slot is free
    running.append(client.get(url, buffered=False))
    running[1].close()  # the client went away: its slot is free
    running.append(client.get(url, buffered=False))
    assert [r.status_code for r in running[2:]] == [200, 200]
    assert client.get(url).status_code == 429
    for response in running:
        response.close()
    assert client.get(url).get_data(as_text=True).startswith("time (Europe/Paris)")


def test_a_slow_reader_holds_no_pooled_connection(app, tenants, data, settings):
    client = _as(app, tenants.a.admin)
    response = client.get(f"/export/site/{tenants.a.sites[0]}.csv?{CSV_QUERY}", buffered=False)
    chunks = iter(response.response)
    first = b""
    while first.count(b"\n") < 2:  # the header and a row of data, and no more
        first += next(chunks)
    assert first.startswith(b"time (Europe/Paris)")
    stats = db.get_pool(settings).get_stats()
    assert stats["pool_size"] - stats["pool_available"] == 0  # every connection back
    rest = b"".join(chunks)
    response.close()
    assert len(_csv_lines(first + rest)) == 1 + data["raw_rows"]


def _csv_lines(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


def test_an_xlsx_over_the_row_limit_gets_a_clear_400(app, tenants, data, monkeypatch):
    monkeypatch.setattr(export, "XLSX_MAX_CELLS", 200)
    client = _as(app, tenants.a.admin)
    response = client.get(f"/export/site/{tenants.a.sites[0]}.xlsx?{CSV_QUERY}")
    assert response.status_code == 400
    assert response.get_data(as_text=True) == (
        "Cannot export: an XLSX export holds at most 100 rows with 1 point; choose a coarser "
        "resolution, a shorter range or fewer points, or export CSV\n")
    # The refusal gave its slot back.
    for _ in range(3):
        response = client.get(f"/export/site/{tenants.a.sites[0]}.csv?{CSV_QUERY}")
        assert response.status_code == 200
        response.close()


def test_an_export_past_its_time_gets_a_clear_503(settings, tenants, data):
    hurried = create_app(dataclasses.replace(settings, export_timeout=1))
    client = _as(hurried, tenants.a.admin)
    with psycopg.connect(settings.database_url) as blocker:
        blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
        response = client.get(f"/export/site/{tenants.a.sites[0]}.csv?{CSV_QUERY}")
        blocker.rollback()
    assert response.status_code == 503
    assert response.get_data(as_text=True) == (
        "Cannot export: it took longer than 1 s; choose a shorter range or a coarser "
        "resolution\n")
    assert client.get(f"/export/site/{tenants.a.sites[0]}.csv?{CSV_QUERY}").status_code == 200
