"""Restore drill: a ``pg_dump -Fc`` of a populated database restores into a working one.

The procedure is docs/deployment.md's ("Restore a backup"): an empty database with
TimescaleDB in restore mode (``timescaledb_pre_restore()``), ``pg_restore`` of every
entry but the extension itself, then ``timescaledb_post_restore()``.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kilowatch import db
from kilowatch.alarms import events as alarms
from kilowatch.telemetry import storage as telemetry
from tests.collector.helpers import register_fleet
from tests.conftest import ADMIN_URL, drop_database

PG_BIN = Path("/usr/lib/postgresql/15/bin")  # the stack's binaries (scripts/stack)


def row_counts(url: str) -> dict[str, int]:
    """Count the rows of every table of the public schema (hypertables with their chunks)."""
    with db.connect(url, autocommit=True) as conn:
        tables = [row["tablename"] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return {table: conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(
            sql.Identifier(table))).fetchone()["n"] for table in tables}


def populate(url: str) -> None:
    """Give the database devices, three days of raw telemetry, rollups and an alarm."""
    devices = register_fleet(url, ["DRILL-1", "DRILL-2"])
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    rows = [(now - dt.timedelta(minutes=m), device_id, point, float(m + point))
            for device_id in devices.values() for m in range(0, 3 * 24 * 60, 5)
            for point in (1, 2)]
    with db.connect(url, autocommit=True) as conn:
        with conn.transaction():
            telemetry.copy_samples(conn, rows)
            for day in range(3):
                conn.execute("INSERT INTO telemetry_1h (bucket, device_id, point_id, avg, min, "
                             "max, last, count) VALUES (%s, %s, 1, 1, 1, 1, 1, 60)",
                             (now - dt.timedelta(days=day, hours=1), devices["DRILL-1"]))
        alarms.raise_alarm(conn, device_id=devices["DRILL-2"], code="BMS_OVERTEMP",
                           severity="critical", source="device", message="hot", at=now)


def run(*args: str) -> float:
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr}"
    return time.monotonic() - started


def test_dump_restores_into_a_current_database_with_every_row(kw_env, tmp_path,
                                                               record_property):
    source = kw_env["KILOWATCH_DATABASE_URL"]
    populate(source)
    dump = tmp_path / "kilowatch.dump"
    timings = {"dump_s": run(str(PG_BIN / "pg_dump"), "-Fc", "-d", source, "-f", str(dump))}
    name = f"kw_restore_{secrets.token_hex(6)}"
    target = source.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
            sql.Identifier(name)))
    try:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
        # Every entry but the extension, which the target already has.
        listing = subprocess.run([str(PG_BIN / "pg_restore"), "-l", str(dump)], check=True,
                                 capture_output=True, text=True).stdout
        entries = tmp_path / "entries.list"
        entries.write_text("".join(line + "\n" for line in listing.splitlines()
                                   if " EXTENSION - timescaledb " not in line))
        timings["restore_s"] = run(str(PG_BIN / "pg_restore"), "--exit-on-error",
                                   "-L", str(entries), "-d", target, str(dump))
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("SELECT timescaledb_post_restore()")
        status = subprocess.run(["kilowatch", "db", "status"], capture_output=True, text=True,
                                env={**os.environ, **kw_env, "KILOWATCH_DATABASE_URL": target},
                                timeout=60)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        assert lines and all(" applied " in line for line in lines), status.stdout
        restored, original = row_counts(target), row_counts(source)
    finally:
        drop_database(target)
    assert restored == original
    assert original["telemetry"] == 2 * 2 * 3 * 24 * 12 and original["alarms"] == 1
    timings["dump_mb"] = dump.stat().st_size / 1e6
    for key, value in timings.items():
        record_property(key, round(value, 3))
    print(f"restore drill: {original['telemetry']} raw rows, dump {timings['dump_mb']:.2f} MB "
          f"in {timings['dump_s']:.2f} s, restore in {timings['restore_s']:.2f} s")


@pytest.fixture(autouse=True)
def _binaries():
    for binary in ("pg_dump", "pg_restore"):
        assert (PG_BIN / binary).is_file(), f"{PG_BIN / binary} is missing (scripts/stack up)"
