"""Schedule revisions and their delivery state in the real database."""

from __future__ import annotations

import datetime as dt

import pytest
from psycopg.types.json import Jsonb

from kilowatch import schedules
from kilowatch.schedule_store import UnknownRevision


@pytest.fixture
def site_with_device(conn):
    company = conn.execute("INSERT INTO companies (name) VALUES ('Ack Co') "
                           "ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name "
                           "RETURNING id").fetchone()["id"]
    site = conn.execute("INSERT INTO sites (company_id, name, timezone) VALUES (%s, %s, %s) "
                        "RETURNING id", (company, f"ack-{dt.datetime.now().timestamp()}",
                                         "Europe/Paris")).fetchone()["id"]
    device = conn.execute("INSERT INTO devices (site_id, serial, model, rated_power_kw) "
                          "VALUES (%s, %s, 'HES-L', 50) RETURNING id",
                          (site, f"ACK-{site}")).fetchone()["id"]
    revision = conn.execute("INSERT INTO schedule_revisions (site_id, revision, body, author) "
                            "VALUES (%s, 1, %s, 'test') RETURNING id",
                            (site, Jsonb({"default_mode": "idle"}))).fetchone()["id"]
    conn.execute("INSERT INTO schedule_deliveries (revision_id, device_id) VALUES (%s, %s)",
                 (revision, device))
    return device, revision


def _delivery(conn, revision_id, device_id):
    return conn.execute("SELECT * FROM schedule_deliveries WHERE revision_id = %s "
                        "AND device_id = %s", (revision_id, device_id)).fetchone()


def test_ack_marks_applied_then_rejected_with_reason(conn, site_with_device):
    device, revision_id = site_with_device
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert schedules.record_ack(conn, device_id=device, revision=1, status="applied",
                                reason=None, at=t0)
    assert _delivery(conn, revision_id, device)["status"] == "applied"
    assert schedules.record_ack(conn, device_id=device, revision=1, status="rejected",
                                reason="power above rating", at=t0 + dt.timedelta(seconds=5))
    row = _delivery(conn, revision_id, device)
    assert (row["status"], row["reason"]) == ("rejected", "power above rating")


def test_older_duplicate_ack_is_ignored(conn, site_with_device):
    device, revision_id = site_with_device
    t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    schedules.record_ack(conn, device_id=device, revision=1, status="rejected", reason="x",
                         at=t0)
    assert not schedules.record_ack(conn, device_id=device, revision=1, status="applied",
                                    reason=None, at=t0 - dt.timedelta(seconds=1))
    assert _delivery(conn, revision_id, device)["status"] == "rejected"


def test_ack_of_unknown_revision_or_bad_status_is_an_error(conn, site_with_device):
    device, _ = site_with_device
    with pytest.raises(UnknownRevision, match="no schedule revision 9"):
        schedules.record_ack(conn, device_id=device, revision=9, status="applied",
                             reason=None, at=None)
    with pytest.raises(ValueError, match="applied or rejected"):
        schedules.record_ack(conn, device_id=device, revision=1, status="done", reason=None,
                             at=None)
