"""Measure alert-rule evaluation and alarm e-mail throughput on the local stack.

Creates its own database (``scripts/stack up`` must run), a company with
``--devices`` storage devices (one per site) sending ``bms.t_max`` every 10 s,
and prints:

- one ``alert_rules`` run over ``--minutes`` of new samples of every device
  (samples per second, raises),
- one idle run (nothing new: the cost of the watermarks alone),
- the ``notifications`` job for a storm of ``--storm`` alarms seen by ten users
  (items, e-mails written — one summary per user),
- the ``outbox`` job sending ``--emails`` e-mails to an in-process aiosmtpd server.

    uv run python benchmarks/alarms.py [--devices 1000] [--minutes 5] [--storm 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import secrets
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kilowatch import db, migrations
from kilowatch.access import system_scope
from kilowatch.alarms import events as alarms
from kilowatch.alarms import notifications, outbox, rule_store
from kilowatch.alarms import rules as alert_rules
from kilowatch.settings import load_settings
from tests.kilowatch.smtp_server import SmtpServer

ADMIN_URL = "postgresql://kilowatch@127.0.0.1:55432/postgres"


def setup(conn, devices: int) -> tuple[int, list[int]]:
    """Create a company with one site and device per ``devices``; return its id and devices."""
    company = conn.execute("INSERT INTO companies (name) VALUES ('Bench') RETURNING id"
                           ).fetchone()["id"]
    conn.execute("INSERT INTO sites (company_id, name, timezone) SELECT %s, 'site ' || g, "
                 "'Europe/Paris' FROM generate_series(1, %s) g", (company, devices))
    conn.execute("INSERT INTO devices (site_id, serial, model) SELECT id, 'BENCH-' || id, "
                 "'HES-L' FROM sites WHERE company_id = %s", (company,))
    ids = [r["id"] for r in conn.execute("SELECT id FROM devices ORDER BY id")]
    conn.execute("INSERT INTO device_points (device_id, point_id) SELECT d, p.id FROM "
                 "unnest(%s::int[]) d, points p WHERE p.name = 'bms.t_max'", (ids,))
    for n in range(10):
        conn.execute("INSERT INTO users (email, display_name, company_id, role, password_hash) "
                     "VALUES (%s, %s, %s, 'admin', '!')", (f"a{n}@bench.example.com", f"A{n}",
                                                          company))
    return company, ids


def write_samples(conn, devices: list[int], start: datetime, minutes: int) -> int:
    """COPY a temperature every 10 s per device; every tenth device runs hot."""
    point = conn.execute("SELECT id FROM points WHERE name = 'bms.t_max'").fetchone()["id"]
    count = 0
    with conn.cursor().copy("COPY telemetry (time, device_id, point_id, value) FROM STDIN") as copy:
        for device in devices:
            hot = device % 10 == 0
            for step in range(minutes * 6):
                copy.write_row((start + timedelta(seconds=10 * step), device, point,
                                50.0 + step % 3 if hot else 30.0 + step % 5))
                count += 1
    return count


def timed(label: str, function, *args, **kwargs):
    """Run once, print the time, return the result."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    seconds = time.perf_counter() - started
    print(f"{label:<48} {seconds * 1000:9.1f} ms   {result}")
    return result, seconds


def bench(conn, args) -> None:
    """Run the measurements on a migrated database."""
    company, devices = setup(conn, args.devices)
    rule_store.create_rule(conn, system_scope("bench"), company, {
        "name": "Hot cells", "point": "bms.t_max", "comparison": ">", "threshold": 45,
        "clear_threshold": 40, "duration_s": 60, "severity": "critical"})
    now = datetime.now(UTC).replace(microsecond=0)
    timed("alert_rules: first run (sets watermarks)", alert_rules.evaluate_rules, conn, now=now)
    rows = write_samples(conn, devices, now + timedelta(seconds=1), args.minutes)
    later = now + timedelta(minutes=args.minutes + 1)
    _, seconds = timed(f"alert_rules: {rows:,} new samples", alert_rules.evaluate_rules,
                       conn, now=later)
    print(f"{'':<48} {rows / seconds:9,.0f} samples/s")
    timed("alert_rules: idle run (nothing new)", alert_rules.evaluate_rules, conn, now=later)

    smtp = SmtpServer()
    smtp.start()
    try:
        settings = dataclasses.replace(load_settings({"KILOWATCH_DATABASE_URL": args.url}),
                                       smtp_url=smtp.url, notify_max_per_hour=10)
        for user_id in [r["id"] for r in conn.execute("SELECT id FROM users")]:
            conn.execute("INSERT INTO notification_preferences (user_id, severities) VALUES "
                         "(%s, '{critical,major,minor,warning}')", (user_id,))
        conn.execute("TRUNCATE notification_inbox")
        for n in range(args.storm):
            alarms.raise_alarm(conn, device_id=devices[n % len(devices)], code=f"STORM_{n}",
                               severity="minor", source="device", message="storm", at=later)
        timed(f"notifications: storm of {args.storm} alarms, 10 users", notifications.run,
              conn, settings, now=later + timedelta(seconds=1))
        conn.execute("INSERT INTO email_outbox (recipient, subject, text_body, html_body) "
                     "SELECT 'u' || g || '@bench.example.com', 'bench', 'text', '<p>html</p>' "
                     "FROM generate_series(1, %s) g", (args.emails,))
        total = conn.execute("SELECT count(*) AS n FROM email_outbox WHERE status = 'pending'"
                             ).fetchone()["n"]
        sent = 0
        started = time.perf_counter()
        while sent < total:
            sent += outbox.send_due(conn, settings, now=later + timedelta(hours=1))["sent"]
        seconds = time.perf_counter() - started
        print(f"{'outbox: ' + str(total) + ' e-mails over SMTP':<48} {seconds * 1000:9.1f} ms"
              f"   {total / seconds:,.0f} e-mails/s ({len(smtp.messages)} received)")
    finally:
        smtp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--emails", type=int, default=500)
    args = parser.parse_args()
    name = f"kw_bench_alarms_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    args.url = f"postgresql://kilowatch@127.0.0.1:55432/{name}"
    try:
        with db.connect(args.url, autocommit=True) as conn:
            migrations.upgrade(conn)
            bench(conn, args)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


if __name__ == "__main__":
    main()
