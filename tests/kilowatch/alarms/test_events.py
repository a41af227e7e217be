"""The alarm core: one active alarm per device and code, events for every change."""

from __future__ import annotations

import datetime as dt

import pytest

from kilowatch import fleet
from kilowatch.access import AccessScope, system_scope
from kilowatch.alarms import events as alarms

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def devices(kw_env):
    from kilowatch import db

    scope = system_scope()
    with db.connect(autocommit=True) as conn:
        ids = {}
        for company in ("Acme", "Globex"):
            company_id = fleet.create_company(conn, scope, company)
            site_id = fleet.create_site(conn, scope, company_id=company_id,
                                        name=f"{company} site", timezone="UTC")
            ids[company] = (company_id, site_id, fleet.register_device(
                conn, scope, site_id=site_id, serial=f"{company}-1", model="HES-L"))
    return ids


def test_raise_reraise_clear_keeps_one_active_alarm_with_events(conn, devices):
    _, _, device_id = devices["Acme"]
    first = alarms.raise_alarm(conn, device_id=device_id, code="BMS_OVERTEMP",
                               severity="critical", source="device", message="61 °C", at=T0)
    again = alarms.raise_alarm(conn, device_id=device_id, code="BMS_OVERTEMP",
                               severity="major", source="device", message="58 °C",
                               at=T0 + dt.timedelta(minutes=1))
    assert first == again
    row = conn.execute("SELECT * FROM alarms WHERE id = %s", (first,)).fetchone()
    assert row["raise_count"] == 2 and row["severity"] == "major"
    assert row["last_raised_at"] == T0 + dt.timedelta(minutes=1)
    cleared = alarms.clear_alarm(conn, device_id=device_id, code="BMS_OVERTEMP",
                                 at=T0 + dt.timedelta(minutes=5))
    assert cleared == first
    assert alarms.clear_alarm(conn, device_id=device_id, code="BMS_OVERTEMP", at=T0) is None
    kinds = [e["kind"] for e in alarms.alarm_events(conn, system_scope(), first)]
    assert kinds == ["raised", "re-raised", "cleared"]
    reopened = alarms.raise_alarm(conn, device_id=device_id, code="BMS_OVERTEMP",
                                  severity="minor", source="device", message="",
                                  at=T0 + dt.timedelta(hours=1))
    assert reopened != first


def test_unknown_device_and_bad_severity(conn, devices):
    assert alarms.raise_alarm(conn, device_id=999_999, code="X", severity="major",
                              source="platform", message="", at=T0) is None
    with pytest.raises(alarms.AlarmError):
        alarms.raise_alarm(conn, device_id=devices["Acme"][2], code="X", severity="fatal",
                           source="platform", message="", at=T0)


def test_list_alarms_is_limited_to_the_callers_company(conn, devices):
    for company in ("Acme", "Globex"):
        alarms.raise_alarm(conn, device_id=devices[company][2], code="COMM_LOST",
                           severity="major", source="platform", message="", at=T0)
    company_id, _, _ = devices["Globex"]
    admin = AccessScope(role="admin", company_id=company_id)
    seen = alarms.list_alarms(conn, admin)
    assert {a["serial"] for a in seen} == {"Globex-1"}
    assert {a["serial"] for a in alarms.list_alarms(conn, system_scope())} >= {"Acme-1",
                                                                             "Globex-1"}
