"""deploy/kilowatch-backup: a complete custom-format dump per run, the newest N kept."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.deploy.units import ROOT

PG_BIN = "/usr/lib/postgresql/15/bin"  # the stack's binaries (scripts/stack)


def backup(kw_env: dict, directory: Path, keep: int) -> subprocess.CompletedProcess:
    url = urlsplit(kw_env["KILOWATCH_DATABASE_URL"])
    env = {**os.environ, "PATH": f"{PG_BIN}:{os.environ['PATH']}", "PGHOST": url.hostname,
           "PGPORT": str(url.port), "PGUSER": url.username,
           "KILOWATCH_BACKUP_DIR": str(directory), "KILOWATCH_BACKUP_KEEP": str(keep)}
    return subprocess.run([str(ROOT / "deploy" / "kilowatch-backup"), url.path.lstrip("/")],
                          env=env, capture_output=True, text=True, timeout=300)


def test_backups_are_restorable_dumps_and_old_ones_are_removed(kw_env, tmp_path):
    for run in range(3):
        if run:
            time.sleep(1.1)  # dumps are named by the second
        result = backup(kw_env, tmp_path, keep=2)
        assert result.returncode == 0, result.stderr
        assert "kilowatch-backup: " in result.stdout
    dumps = sorted(tmp_path.glob("*.dump"))
    assert len(dumps) == 2 and not list(tmp_path.glob(".*"))
    listing = subprocess.run([f"{PG_BIN}/pg_restore", "-l", str(dumps[-1])],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA public schema_migrations" in listing


def test_a_failed_dump_leaves_no_backup_behind(kw_env, tmp_path):
    result = backup({"KILOWATCH_DATABASE_URL": kw_env["KILOWATCH_DATABASE_URL"] + "_missing"},
                    tmp_path, keep=2)
    assert result.returncode != 0 and "does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []
