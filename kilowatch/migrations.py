"""Apply the numbered, forward-only SQL migrations in ``sql/`` and report their state."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import psycopg

from kilowatch.errors import UserFacingError

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_120_001  # advisory lock: one migrator at a time

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(UserFacingError, RuntimeError):
    """The migrations cannot be applied as they are."""


@dataclasses.dataclass(frozen=True)
class Migration:
    """One migration file and its checksum."""

    name: str
    path: Path
    checksum: str


@dataclasses.dataclass(frozen=True)
class MigrationState:
    """A migration with whether (and when) it was applied."""

    name: str
    applied_at: object | None
    edited: bool


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """List the migration files in order, refusing misnamed or duplicate numbers."""
    found: list[Migration] = []
    numbers: set[str] = set()
    for path in sorted(sql_dir.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration names look like 001_name.sql")
        if match.group(1) in numbers:
            raise MigrationError(f"{path.name}: number {match.group(1)} is used twice")
        numbers.add(match.group(1))
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Migration(path.name, path, checksum))
    return found


def _applied(conn: psycopg.Connection) -> dict[str, dict]:
    conn.execute(_LEDGER)
    rows = conn.execute("SELECT name, checksum, applied_at FROM schema_migrations").fetchall()
    return {row["name"]: row for row in rows}


def _check_unedited(migrations: list[Migration], applied: dict[str, dict]) -> None:
    for migration in migrations:
        row = applied.get(migration.name)
        if row and row["checksum"] != migration.checksum:
            raise MigrationError(
                f"{migration.name} was edited after it was applied; "
                "add a new migration instead of changing an applied one"
            )


def up_to(migrations: list[Migration], target: str) -> list[Migration]:
    """Return the migrations up to and including ``target`` (its number, e.g. ``008``)."""
    numbers = [m.name[:3] for m in migrations]
    if target not in numbers:
        raise MigrationError(f"no migration numbered {target!r} (the last is "
                             f"{migrations[-1].name if migrations else 'none'})")
    return migrations[:numbers.index(target) + 1]


def upgrade(conn: psycopg.Connection, sql_dir: Path = SQL_DIR, *,
            target: str | None = None) -> list[str]:
    """Apply the missing migrations (up to ``target``'s number if given), each in its own
    transaction; return their names."""
    migrations = discover(sql_dir)
    if target is not None:
        migrations = up_to(migrations, target)
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        applied = _applied(conn)
        _check_unedited(migrations, applied)
        done = []
        for migration in migrations:
            if migration.name in applied:
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.path.read_text())
                    conn.execute(
                        "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                        (migration.name, migration.checksum),
                    )
            except psycopg.Error as error:
                message = str(error).strip().splitlines()[0]
                raise MigrationError(f"{migration.name} failed: {message}") from error
            done.append(migration.name)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def status(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[MigrationState]:
    """Describe every migration file: applied when, or pending, and whether edited."""
    applied = _applied(conn)
    return [
        MigrationState(
            m.name,
            applied[m.name]["applied_at"] if m.name in applied else None,
            bool(m.name in applied and applied[m.name]["checksum"] != m.checksum),
        )
        for m in discover(sql_dir)
    ]
