"""Alarm e-mails through a real SMTP server: COMM_LOST, recovery, outage, storm, preferences."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest

from kilowatch import db, fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.accounts import groups, users
from kilowatch.alarms import events as alarms
from kilowatch.alarms import notifications, outbox
from kilowatch.jobs import offline
from kilowatch.mailer import parse_smtp_url
from kilowatch.telemetry import ingest
from tests.collector.helpers import heartbeat
from tests.kilowatch.smtp_server import bodies

BASE_URL = "https://kilowatch.example.com"


@dataclasses.dataclass
class Company:
    id: int
    sites: list[int]
    devices: list[int]
    admins: list[dict]
    viewer: dict


def make_user(conn, email, role, company_id=None, language="en", site_ids=()):
    scope = system_scope("test")
    user_id = users.create_user(conn, scope, email=email, role=role, company_id=company_id,
                                password_hash="!", language=language,
                                must_change_password=False)
    if site_ids:
        group = groups.create_group(conn, scope, company_id=company_id, name=f"g-{user_id}")
        for site_id in site_ids:
            groups.grant_site(conn, scope, group, site_id)
        groups.add_member(conn, scope, group, user_id)
    return {"id": user_id, "email": email}


def make_company(conn, name, admins):
    scope = system_scope("test")
    company = fleet.create_company(conn, scope, name)
    sites = [fleet.create_site(conn, scope, company_id=company, name=f"{name} {n}",
                               timezone="Europe/Paris") for n in (1, 2)]
    devices = [fleet.register_device(conn, scope, site_id=site, serial=f"{name}-{n}",
                                     model="HES-L") for n, site in enumerate(sites)]
    slug = name.lower()
    return Company(company, sites, devices,
                   [make_user(conn, f"admin{n}@{slug}.example.com", "admin", company)
                    for n in range(admins)],
                   make_user(conn, f"viewer@{slug}.example.com", "viewer", company,
                             site_ids=[sites[0]]))


@pytest.fixture(scope="module")
def world(kw_env):
    with db.connect(autocommit=True) as conn:
        return {"acme": make_company(conn, "Acme", admins=2),
                "globex": make_company(conn, "Globex", admins=1)}


@pytest.fixture
def mail_settings(settings, smtp):
    smtp.clear()
    return dataclasses.replace(settings, smtp_url=smtp.url, base_url=BASE_URL,
                               comm_lost_recheck=60, notify_max_per_hour=5)


def deliver(conn, settings, now):
    """Run the notifications job then the outbox sender at ``now``."""
    notifications.run(conn, settings, now=now)
    return outbox.send_due(conn, settings, now=now)


def go_silent(conn, settings, device_id, now):
    conn.execute("UPDATE devices SET online = true, last_seen = %s WHERE id = %s",
                 (now - dt.timedelta(minutes=10), device_id))
    ingest.mark_silent_devices_offline(conn, silent_s=settings.offline_after, now=now)


def come_back(conn, device_id, at):
    with conn.transaction():
        ingest.apply_activity(conn, {device_id: [ingest.Activity(at, True, "message")]})


def comm_lost(conn, device_id):
    return conn.execute("SELECT * FROM alarms WHERE device_id = %s AND code = 'COMM_LOST' "
                        "ORDER BY id", (device_id,)).fetchall()


def test_silent_device_mails_each_admin_once_then_the_recovery(conn, world, smtp, mail_settings):
    acme, globex = world["acme"], world["globex"]
    device = acme.devices[0]
    conn.execute("UPDATE devices SET online = true, last_seen = now() - interval '10 minutes' "
                 "WHERE id = %s", (device,))
    heartbeat(conn)  # the platform ingests: the silence is the device's
    offline.run(conn, mail_settings)  # the worker's own offline job
    offline.run(conn, mail_settings)
    [alarm] = comm_lost(conn, device)
    assert alarm["cleared_at"] is None and alarm["severity"] == "major"
    raised = alarm["raised_at"]

    assert deliver(conn, mail_settings, raised + dt.timedelta(seconds=30))["sent"] == 0
    assert deliver(conn, mail_settings, raised + dt.timedelta(seconds=61))["sent"] == 2
    assert sorted(m["To"] for m in smtp.messages) == sorted(a["email"] for a in acme.admins)
    assert not smtp.to(globex.admins[0]["email"]) and not smtp.to(acme.viewer["email"])
    message = smtp.to(acme.admins[0]["email"])[0]
    text, html = bodies(message)
    assert "Acme-0" in message["Subject"] and "offline" in message["Subject"]
    assert f"{BASE_URL}/alarms/{alarm['id']}" in text and f"/alarms/{alarm['id']}" in html
    assert "Globex" not in text + html

    assert deliver(conn, mail_settings, raised + dt.timedelta(minutes=5))["sent"] == 0  # once
    come_back(conn, device, raised + dt.timedelta(minutes=6))
    assert comm_lost(conn, device)[0]["cleared_at"] is not None
    assert deliver(conn, mail_settings, raised + dt.timedelta(minutes=6, seconds=5))["sent"] == 2
    recoveries = [m for m in smtp.messages if "back online" in m["Subject"]]
    assert sorted(m["To"] for m in recoveries) == sorted(a["email"] for a in acme.admins)
    kinds = [e["kind"] for e in alarms.alarm_events(conn, system_scope(), alarm["id"])]
    assert kinds == ["raised", "notified", "notified", "cleared", "notified", "notified"]


def test_a_blip_shorter_than_the_recheck_sends_nothing(conn, world, smtp, mail_settings):
    device = world["acme"].devices[1]
    watcher = make_user(conn, "watcher@acme.example.com", "operator", world["acme"].id,
                        site_ids=world["acme"].sites)
    set_prefs(conn, watcher, severities=["major"])  # COMM_LOST waits for the re-check too
    now = dt.datetime.now(dt.UTC)
    go_silent(conn, mail_settings, device, now)
    assert deliver(conn, mail_settings, now + dt.timedelta(seconds=10))["sent"] == 0
    come_back(conn, device, now + dt.timedelta(seconds=20))
    assert deliver(conn, mail_settings, now + dt.timedelta(minutes=5))["sent"] == 0
    assert smtp.messages == []
    items = conn.execute("SELECT status, reason FROM notification_items i JOIN alarms a "
                         "ON a.id = i.alarm_id WHERE a.device_id = %s", (device,)).fetchall()
    assert items and all(i["status"] == "dropped" for i in items)


def test_smtp_outage_delays_but_loses_nothing(conn, world, smtp, mail_settings):
    globex = world["globex"]
    device = globex.devices[0]
    now = dt.datetime.now(dt.UTC)
    smtp.stop()
    try:
        go_silent(conn, mail_settings, device, now)
        later = now + dt.timedelta(seconds=61)
        result = deliver(conn, mail_settings, later)
        assert result == {"sent": 0, "refused": 0, "waiting": 1}
        row = conn.execute("SELECT * FROM email_outbox WHERE recipient = %s",
                           (globex.admins[0]["email"],)).fetchone()
        assert row["status"] == "pending" and row["attempts"] == 1 and row["last_error"]
        assert row["next_attempt_at"] == later + outbox.retry_delay(1)
        assert deliver(conn, mail_settings, later + dt.timedelta(seconds=5))["waiting"] == 0
        for attempt in range(2, 5):  # still down: waits grow
            due = conn.execute("SELECT next_attempt_at FROM email_outbox WHERE id = %s",
                               (row["id"],)).fetchone()["next_attempt_at"]
            outbox.send_due(conn, mail_settings, now=due)
            after = conn.execute("SELECT * FROM email_outbox WHERE id = %s",
                                 (row["id"],)).fetchone()
            assert after["attempts"] == attempt
            assert after["next_attempt_at"] - due == outbox.retry_delay(attempt)
    finally:
        smtp.start()
    due = conn.execute("SELECT next_attempt_at FROM email_outbox WHERE id = %s",
                       (row["id"],)).fetchone()["next_attempt_at"]
    assert outbox.send_due(conn, mail_settings, now=due)["sent"] == 1
    assert [m["To"] for m in smtp.messages] == [globex.admins[0]["email"]]
    assert outbox.send_due(conn, mail_settings, now=due + dt.timedelta(hours=2))["sent"] == 0
    assert len(smtp.messages) == 1
    come_back(conn, device, due)


def set_prefs(conn, user, **fields):
    scope = users.build_scope(conn, system_scope("test"), user["id"])
    return notifications.save_preferences(conn, scope, {"enabled": True, **fields})


def alarm_links(messages):
    found = set()
    for message in messages:
        text, _ = bodies(message)
        found.update(int(n) for n in re.findall(r"/alarms/(\d+)", text))
    return found


def test_a_storm_of_200_alarms_respects_each_users_rate_limit(conn, world, smtp, mail_settings):
    globex = world["globex"]
    people = [make_user(conn, "storm-admin@globex.example.com", "admin", globex.id),
              make_user(conn, "operator@globex.example.com", "operator", globex.id,
                        site_ids=globex.sites)]
    for person in people:
        set_prefs(conn, person, severities=["critical", "major", "minor", "warning"])
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    ids = set()
    for burst in range(8):  # 8 bursts of 25 alarms, the job running between them
        at = now + dt.timedelta(seconds=20 * burst)
        for n in range(25):
            ids.add(alarms.raise_alarm(conn, device_id=globex.devices[n % 2],
                                       code=f"STORM_{burst}_{n}", severity="minor",
                                       source="device", message=f"storm {n}", at=at))
        deliver(conn, mail_settings, at + dt.timedelta(seconds=1))
    deliver(conn, mail_settings, now + dt.timedelta(minutes=30))
    for person in people:
        # budgets 5, 4, 3, 2, 1: five summaries of 25; the last 75 wait for the next hour
        received = smtp.to(person["email"])
        assert [m["Subject"] for m in received] == ["[Kilowatch] 25 alarm notifications"] * 5
    deliver(conn, mail_settings, now + dt.timedelta(minutes=62))
    for person in people:
        received = smtp.to(person["email"])
        assert len(received) == 6
        assert received[-1]["Subject"] == "[Kilowatch] 75 alarm notifications"
        assert "… and 25 more." in bodies(received[-1])[0]
        links = alarm_links(received)
        assert links <= ids and len(links) == 200 - 25
    assert not smtp.to(world["acme"].admins[0]["email"])


def test_account_e_mails_do_not_use_up_the_alarm_limit(conn, world, smtp, mail_settings):
    globex = world["globex"]
    person = make_user(conn, "busy-admin@globex.example.com", "admin", globex.id)
    set_prefs(conn, person, severities=["critical", "major", "minor", "warning"])
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)
    for n in range(mail_settings.notify_max_per_hour):  # a full hour's worth of other mail
        outbox.enqueue(conn, user_id=person["id"], recipient=person["email"],
                       subject=f"Reset link {n}", text="link", html="<p>link</p>", now=now)
    alarms.raise_alarm(conn, device_id=globex.devices[0], code="AFTER_ACCOUNT_MAIL",
                       severity="major", source="device", message="after the links", at=now)
    deliver(conn, mail_settings, now + dt.timedelta(minutes=5))
    subjects = [m["Subject"] for m in smtp.to(person["email"])]
    assert len(subjects) == mail_settings.notify_max_per_hour + 1
    assert any("AFTER_ACCOUNT_MAIL" in s or "after the links" in s for s in subjects), subjects


def test_preferences_sites_severity_delay_and_scope(conn, world, smtp, mail_settings):
    acme = world["acme"]
    viewer = acme.viewer
    set_prefs(conn, viewer, severities=["critical"], on_clear=True, delay_s=300)
    support = make_user(conn, "support@kilowatch.example.com", "support")
    set_prefs(conn, support, severities=["critical"], all_sites=False,
              site_ids=[acme.sites[1]])
    now = dt.datetime.now(dt.UTC)
    seen = alarms.raise_alarm(conn, device_id=acme.devices[0], code="BMS_OVERTEMP",
                              severity="critical", source="device", message="61 °C", at=now)
    hidden = alarms.raise_alarm(conn, device_id=acme.devices[1], code="BMS_OVERTEMP",
                                severity="critical", source="device", message="62 °C", at=now)
    alarms.raise_alarm(conn, device_id=acme.devices[0], code="FAN", severity="warning",
                       source="device", message="fan", at=now)
    blip = alarms.raise_alarm(conn, device_id=acme.devices[0], code="BLIP",
                              severity="critical", source="device", message="", at=now)
    alarms.clear_alarm(conn, device_id=acme.devices[0], code="BLIP",
                       at=now + dt.timedelta(seconds=100))
    assert deliver(conn, mail_settings, now + dt.timedelta(seconds=200))["sent"] == 1  # support
    assert alarm_links(smtp.to(support["email"])) == {hidden}
    deliver(conn, mail_settings, now + dt.timedelta(seconds=301))
    assert alarm_links(smtp.to(viewer["email"])) == {seen}  # not site 2, not the blip
    assert blip not in alarm_links(smtp.messages)
    alarms.clear_alarm(conn, device_id=acme.devices[0], code="BMS_OVERTEMP",
                       at=now + dt.timedelta(seconds=400))
    deliver(conn, mail_settings, now + dt.timedelta(seconds=401))
    cleared = [m for m in smtp.to(viewer["email"]) if m["Subject"].startswith("[Kilowatch] Cl")]
    assert len(cleared) == 1 and alarm_links(cleared) == {seen}
    scope = users.build_scope(conn, system_scope("test"), viewer["id"])
    with pytest.raises(AccessDenied):  # a site outside the viewer's grants
        notifications.save_preferences(conn, scope, {"severities": ["major"],
                                                     "all_sites": False,
                                                     "site_ids": [acme.sites[1]]})
    with pytest.raises(notifications.PreferenceError):
        notifications.save_preferences(conn, scope, {"severities": ["fatal"]})


def test_reminders_for_unacknowledged_critical_alarms_in_french(conn, world, smtp,
                                                                 mail_settings):
    acme = world["acme"]
    admin = make_user(conn, "chef@acme.example.com", "admin", acme.id, language="fr")
    set_prefs(conn, admin, severities=["critical"], reminder_hours=2)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    alarm_id = alarms.raise_alarm(conn, device_id=acme.devices[1], code="BMS_FIRE",
                                  severity="critical", source="device", message="smoke", at=now)
    deliver(conn, mail_settings, now + dt.timedelta(seconds=1))
    deliver(conn, mail_settings, now + dt.timedelta(hours=1))
    deliver(conn, mail_settings, now + dt.timedelta(hours=2, seconds=2))
    deliver(conn, mail_settings, now + dt.timedelta(hours=2, seconds=30))
    received = smtp.to(admin["email"])
    assert [m["Subject"].split(":")[0] for m in received] == [
        "[Kilowatch] CRITIQUE BMS_FIRE sur Acme 2", "[Kilowatch] Rappel "]
    assert "personne ne l'a acquittée" in bodies(received[1])[0]
    operator = AccessScope(role="operator", company_id=acme.id, user_id=None,
                           site_ids=frozenset(acme.sites), actor="op@acme")
    alarms.acknowledge(conn, operator, alarm_id, comment="on my way")
    deliver(conn, mail_settings, now + dt.timedelta(hours=5))
    assert len(smtp.to(admin["email"])) == 2


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, False, "auto", None)),
    ("smtps://u%40x:p%3Ass@mail.example.com", ("mail.example.com", 465, True, "off", "u@x")),
    ("smtp://mail.example.com?starttls=required", ("mail.example.com", 25, False, "required",
                                                   None)),
])
def test_smtp_urls(url, expected):
    config = parse_smtp_url(url)
    assert (config.host, config.port, config.implicit_tls, config.starttls,
            config.username) == expected


def test_bad_smtp_url_is_refused():
    with pytest.raises(ValueError, match="starttls"):
        parse_smtp_url("smtp://host?starttls=maybe")


def test_a_message_that_cannot_be_built_fails_alone(conn, smtp, mail_settings):
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    rows = [("ok@example.com", "Fine"), ("evil@example.com", "Hi\r\nBcc: all@example.com")]
    ids = [conn.execute("INSERT INTO email_outbox (recipient, subject, text_body, html_body, "
                        "created_at, next_attempt_at) VALUES (%s, %s, 't', '<p>h</p>', %s, %s) "
                        "RETURNING id", (to, subject, now, now)).fetchone()["id"]
           for to, subject in reversed(rows)]  # the bad one first
    result = outbox.send_due(conn, mail_settings, now=now)
    assert result["refused"] == 1 and result["sent"] >= 1
    status = {r["recipient"]: r["status"] for r in conn.execute(
        "SELECT recipient, status FROM email_outbox WHERE id = ANY(%s)", (ids,))}
    assert status == {"ok@example.com": "sent", "evil@example.com": "failed"}
    assert [m["To"] for m in smtp.messages] == ["ok@example.com"]
