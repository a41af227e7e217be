"""The migration runner applies files in order, once, atomically, and refuses edits."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from kilowatch import db, migrations
from tests.conftest import create_database, drop_database


@pytest.fixture
def empty_db(stack):
    """A brand-new database with nothing applied."""
    with psycopg.connect("postgresql://kilowatch@127.0.0.1:55432/postgres",
                         autocommit=True) as admin:
        admin.execute("SELECT 1")
    url = create_database("template1")
    yield url
    drop_database(url)


def _write(folder, name, text):
    (folder / name).write_text(text)


def test_applies_in_order_and_second_run_does_nothing(empty_db, tmp_path):
    _write(tmp_path, "002_b.sql", "INSERT INTO t VALUES (2);")
    _write(tmp_path, "001_a.sql", "CREATE TABLE t (n int);")
    with db.connect(empty_db, autocommit=True) as conn:
        assert migrations.upgrade(conn, tmp_path) == ["001_a.sql", "002_b.sql"]
        assert migrations.upgrade(conn, tmp_path) == []
        assert [r["n"] for r in conn.execute("SELECT n FROM t")] == [2]
        states = migrations.status(conn, tmp_path)
    assert [s.name for s in states] == ["001_a.sql", "002_b.sql"]
    assert all(s.applied_at is not None and not s.edited for s in states)


def test_refuses_to_run_when_an_applied_file_was_edited(empty_db, tmp_path):
    _write(tmp_path, "001_a.sql", "CREATE TABLE t (n int);")
    with db.connect(empty_db, autocommit=True) as conn:
        migrations.upgrade(conn, tmp_path)
        _write(tmp_path, "001_a.sql", "CREATE TABLE t (n bigint);")
        _write(tmp_path, "002_b.sql", "CREATE TABLE u (n int);")
        with pytest.raises(migrations.MigrationError, match="001_a.sql was edited"):
            migrations.upgrade(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('u') AS u").fetchone()["u"] is None
        assert migrations.status(conn, tmp_path)[0].edited


def test_failing_migration_leaves_nothing_half_applied(empty_db, tmp_path):
    _write(tmp_path, "001_a.sql", "CREATE TABLE t (n int);")
    _write(tmp_path, "002_b.sql", "CREATE TABLE u (n int); SELECT * FROM missing_table;")
    with db.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(migrations.MigrationError, match="002_b.sql failed"):
            migrations.upgrade(conn, tmp_path)
        assert conn.execute("SELECT to_regclass('t') AS t").fetchone()["t"] == "t"
        assert conn.execute("SELECT to_regclass('u') AS u").fetchone()["u"] is None
        names = [r["name"] for r in conn.execute("SELECT name FROM schema_migrations")]
    assert names == ["001_a.sql"]


def test_misnamed_file_is_refused(tmp_path):
    _write(tmp_path, "1_bad.sql", "SELECT 1;")
    with pytest.raises(migrations.MigrationError, match="001_name.sql"):
        migrations.discover(tmp_path)


def test_upgrade_stops_at_the_target_and_goes_on_later(empty_db, tmp_path):
    for number in (1, 2, 3):
        _write(tmp_path, f"00{number}_n{number}.sql",
               "CREATE TABLE t (n int);" if number == 1 else f"INSERT INTO t VALUES ({number});")
    with db.connect(empty_db, autocommit=True) as conn:
        assert migrations.upgrade(conn, tmp_path, target="002") == ["001_n1.sql", "002_n2.sql"]
        assert [r["n"] for r in conn.execute("SELECT n FROM t")] == [2]
        assert migrations.upgrade(conn, tmp_path) == ["003_n3.sql"]
        assert migrations.upgrade(conn, tmp_path, target="001") == []


def test_an_unknown_target_is_one_clear_error(empty_db, tmp_path, kw_env):
    _write(tmp_path, "001_a.sql", "CREATE TABLE t (n int);")
    with db.connect(empty_db, autocommit=True) as conn, pytest.raises(
            migrations.MigrationError, match=r"no migration numbered '009' \(the last is 001_a"):
        migrations.upgrade(conn, tmp_path, target="009")
    result = subprocess.run([sys.executable, "-m", "kilowatch", "db", "upgrade", "--to", "999"],
                            env={**os.environ, **kw_env}, capture_output=True, text=True,
                            check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: no migration numbered '999' (the last is ")
