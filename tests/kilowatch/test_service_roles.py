"""The services' database roles (sql/016_service_roles.sql): rows yes, schema and secrets no."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess

import psycopg
import pytest
from psycopg import sql

from kilowatch import db
from kilowatch.telemetry import storage as telemetry
from tests.collector.helpers import Publisher, iso, register_fleet, running_collector
from tests.collector.helpers import telemetry as telemetry_payload
from tests.conftest import ADMIN_URL, drop_service_logins, service_logins, wait_for


@pytest.fixture(scope="module")
def logins(kw_env):
    token = secrets.token_hex(4)
    env = service_logins(kw_env["KILOWATCH_DATABASE_URL"], token)
    yield env
    db.close_pools()
    drop_service_logins(token)


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["ROLE-1"])


def as_service(logins, service: str) -> psycopg.Connection:
    return db.connect(logins[f"KILOWATCH_{service.upper()}_DATABASE_URL"], autocommit=True)


def refused(conn: psycopg.Connection, statement: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as error:
        conn.execute(statement)
    return str(error.value)


def kilowatch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kilowatch", *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300)


def test_collector_stores_telemetry_and_alarms_as_its_own_role(
        kw_env, logins, devices, conn, settings, tmp_path):
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)
    collector_login = logins["KILOWATCH_COLLECTOR_DATABASE_URL"].split("//")[1].split("@")[0]
    with running_collector({**kw_env, **logins}, log_path=tmp_path / "collector.log"):
        publisher = Publisher()
        try:
            topic = f"{settings.mqtt_prefix}/ROLE-1"
            for seq in (1, 2, 4):  # 3 is missing: a gap to record
                publisher.publish(f"{topic}/telemetry", telemetry_payload(
                    seq, start + dt.timedelta(seconds=seq), points=3))
            publisher.publish(f"{topic}/alarms", json.dumps(
                {"ts": iso(start), "code": "BMS_OVERTEMP", "severity": "critical",
                 "state": "raised", "message": "hot"}).encode())
            publisher.publish(f"{topic}/telemetry", b"not json")
            wait_for(lambda: conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = "
                                          "%s", (devices["ROLE-1"],)).fetchone()["n"] == 12,
                     what="telemetry stored by the collector role")
            wait_for(lambda: conn.execute("SELECT 1 FROM alarms WHERE device_id = %s",
                                          (devices["ROLE-1"],)).fetchone(), what="alarm raised")
            wait_for(lambda: conn.execute("SELECT 1 FROM dead_letters").fetchone(),
                     what="dead letter")
            sessions = conn.execute("SELECT DISTINCT usename FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND usename <> "
                                    "current_user").fetchall()
        finally:
            publisher.close()
    assert collector_login in {row["usename"] for row in sessions}
    assert conn.execute("SELECT count(*) AS n FROM seq_gaps").fetchone()["n"] == 1
    assert conn.execute("SELECT online FROM devices WHERE id = %s",
                        (devices["ROLE-1"],)).fetchone()["online"]


def test_collector_role_cannot_read_or_delete_accounts(logins):
    with as_service(logins, "collector") as collector:
        assert "users" in refused(collector, "DELETE FROM users")
        assert "users" in refused(collector, "SELECT password_hash FROM users")
        assert "login_sessions" in refused(collector, "SELECT * FROM login_sessions")
        assert "devices" in refused(collector, "SELECT activation_code_hash FROM devices")
        assert "devices" in refused(collector, "UPDATE devices SET site_id = site_id")
        refused(collector, "DROP TABLE telemetry")
        refused(collector, "SELECT kilowatch_drop_chunks('telemetry', interval '1 day')")


def test_web_role_cannot_change_the_schema_or_run_migrations(kw_env, logins):
    with as_service(logins, "web") as web:
        assert web.execute("SELECT count(*) AS n FROM users").fetchone()["n"] >= 0
        refused(web, "DROP TABLE users")
        refused(web, "ALTER TABLE users ADD COLUMN probe integer")
        refused(web, "TRUNCATE alarms")
        assert "telemetry" in refused(web, "DELETE FROM telemetry")
        assert "audit_log" in refused(web, "DELETE FROM audit_log")
        assert "schema_migrations" in refused(web, "DELETE FROM schema_migrations")
        refused(web, "CREATE TABLE probe (id integer)")
    result = kilowatch({**kw_env, "KILOWATCH_DATABASE_URL":
                        logins["KILOWATCH_WEB_DATABASE_URL"]}, "db", "upgrade")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "permission denied for schema public" in result.stderr


def test_operator_command_as_a_service_role_fails_in_one_line(kw_env, logins):
    result = kilowatch({**kw_env, "KILOWATCH_DATABASE_URL":
                        logins["KILOWATCH_COLLECTOR_DATABASE_URL"]}, "user", "list")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "refused this login: permission denied" in result.stderr
    assert "KILOWATCH_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr


def test_worker_role_runs_retention_through_the_owner_function(kw_env, logins, devices, conn):
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    old, recent = now - dt.timedelta(days=45), now - dt.timedelta(hours=2)
    device_id = devices["ROLE-1"]
    with conn.transaction():
        telemetry.copy_samples(conn, [(old, device_id, 1, 1.0), (recent, device_id, 1, 2.0)])
    # The worker's own login it is: the collector's may not drop chunks.
    wrong = kilowatch({**kw_env, "KILOWATCH_WORKER_DATABASE_URL":
                       logins["KILOWATCH_COLLECTOR_DATABASE_URL"]},
                      "worker", "--once", "--job", "retention")
    assert wrong.returncode != 0 and "kilowatch_drop_chunks" in wrong.stderr
    result = kilowatch({**kw_env, **logins}, "worker", "--once", "--job", "retention",
                       "--job", "rollups")
    assert result.returncode == 0, result.stderr
    assert "retention: ran" in result.stdout and "rollups: ran" in result.stdout
    kept = conn.execute("SELECT time FROM telemetry WHERE device_id = %s AND point_id = 1 "
                        "AND time < %s - interval '1 hour'", (device_id, now)).fetchall()
    assert [row["time"] for row in kept] == [recent]
    with as_service(logins, "worker") as worker:
        assert "owner" in refused(worker, "SELECT drop_chunks('telemetry', "
                                          "older_than => interval '1 day')")
        with pytest.raises(psycopg.errors.RaiseException, match="not a telemetry hypertable"):
            worker.execute("SELECT kilowatch_drop_chunks('telemetry_1h', interval '1 day')")
        refused(worker, "ALTER TABLE telemetry SET (timescaledb.compress)")
        # As the owner the function may alter the table: only the Apache build says no.
        try:
            compressed = worker.execute("SELECT kilowatch_compress_raw(interval '1 day') AS n"
                                        ).fetchone()["n"]
            assert compressed >= 0
        except psycopg.errors.FeatureNotSupported as error:
            assert '"apache" license' in str(error)


def test_worker_role_runs_every_job(kw_env, logins, devices):
    result = kilowatch({**kw_env, **logins}, "worker", "--once")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = [line.split()[0] for line in kilowatch(kw_env, "worker", "--list").stdout.splitlines()]
    ran = [line.split(":")[0] for line in result.stdout.splitlines() if ": ran " in line]
    assert ran == listed and len(listed) >= 10, result.stdout


def test_migrations_need_an_owner_not_a_superuser(kw_env):
    owner, name = f"kwtest_owner_{secrets.token_hex(4)}", f"kw_owner_{secrets.token_hex(4)}"
    url = kw_env["KILOWATCH_DATABASE_URL"].rsplit("/", 1)[0].replace(
        "//kilowatch@", f"//{owner}@") + f"/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                   sql.Identifier(owner)))
    try:
        # What docs/deployment.md has the administrator do: the extensions, as a superuser.
        with psycopg.connect(url.replace(f"//{owner}@", "//kilowatch@"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION timescaledb")
            conn.execute("CREATE EXTENSION btree_gist")
        result = kilowatch({**kw_env, "KILOWATCH_DATABASE_URL": url}, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert "applied 016_service_roles.sql" in result.stdout
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(owner)))
