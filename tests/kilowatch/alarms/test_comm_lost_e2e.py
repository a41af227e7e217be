"""End to end with real processes: a device goes silent, the company's admins get one e-mail
each; it talks again, they get the recovery — through MQTT, ``kilowatch collector``,
``kilowatch worker`` and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time

import pytest

from kilowatch import db, fleet
from kilowatch.access import system_scope
from kilowatch.accounts import users
from tests.collector.helpers import Publisher, running_collector, telemetry, wait_for
from tests.kilowatch.smtp_server import bodies


@pytest.fixture(scope="module")
def fleet_ids(kw_env):
    scope = system_scope("test")
    ids = {}
    with db.connect(autocommit=True) as conn:
        for name, admins in (("Acme", 2), ("Globex", 1)):
            company = fleet.create_company(conn, scope, name)
            site = fleet.create_site(conn, scope, company_id=company, name=f"{name} depot",
                                     timezone="Europe/Paris")
            device = fleet.register_device(conn, scope, site_id=site, serial=f"E2E-{name}",
                                           model="HES-L")
            emails = [f"admin{n}@{name.lower()}.example.com" for n in range(admins)]
            for email in emails:
                users.create_user(conn, scope, email=email, role="admin", company_id=company,
                                  password_hash="!", must_change_password=False)
            ids[name] = {"device": device, "serial": f"E2E-{name}", "admins": emails}
    return ids


def test_silent_device_and_its_return_through_the_real_services(kw_env, smtp, fleet_ids,
                                                                   conn):
    env = {**kw_env, "KILOWATCH_SMTP_URL": smtp.url, "KILOWATCH_OFFLINE_AFTER": "4",
           "KILOWATCH_COMM_LOST_RECHECK": "1", "KILOWATCH_LOG_LEVEL": "WARNING"}
    acme = fleet_ids["Acme"]
    topic = f"{kw_env['KILOWATCH_MQTT_PREFIX']}/{acme['serial']}/telemetry"
    publisher = Publisher()
    seq = 0

    def talk():
        nonlocal seq
        seq += 1
        publisher.publish(topic, telemetry(seq, dt.datetime.now(dt.UTC), points=2))

    worker = subprocess.Popen(
        ["kilowatch", "worker", "--job", "offline", "--job", "notifications", "--job", "outbox"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with running_collector(env):
            talk()
            wait_for(lambda: conn.execute("SELECT online FROM devices WHERE id = %s",
                                          (acme["device"],)).fetchone()["online"],
                     what="device online")
            # silence: offline after 4 s, e-mailed after the re-check
            wait_for(lambda: len(smtp.messages) >= 2, what="COMM_LOST e-mails", timeout_s=90)
            time.sleep(3)
            assert sorted(m["To"] for m in smtp.messages) == sorted(acme["admins"])
            assert all("offline" in m["Subject"] for m in smtp.messages)
            alarms = conn.execute("SELECT * FROM alarms WHERE device_id = %s AND "
                                  "code = 'COMM_LOST'", (acme["device"],)).fetchall()
            assert len(alarms) == 1 and alarms[0]["cleared_at"] is None
            assert f"/alarms/{alarms[0]['id']}" in bodies(smtp.messages[0])[0]

            def back():
                talk()
                return len(smtp.messages) >= 4
            wait_for(back, what="recovery e-mails", timeout_s=90, interval_s=1)
    finally:
        worker.terminate()
        worker.wait(30)
        publisher.close()
    recovered = [m for m in smtp.messages if "back online" in m["Subject"]]
    assert sorted(m["To"] for m in recovered) == sorted(acme["admins"])
    assert not [m for m in smtp.messages if m["To"] in fleet_ids["Globex"]["admins"]]
    alarm = conn.execute("SELECT * FROM alarms WHERE device_id = %s AND code = 'COMM_LOST'",
                         (acme["device"],)).fetchone()
    assert alarm["cleared_at"] is not None
