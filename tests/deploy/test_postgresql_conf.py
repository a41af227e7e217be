"""PostgreSQL reads deploy/postgresql/kilowatch.conf: every name and value is one it knows."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.servers import PG_BIN, Postgres
from tests.deploy.units import ROOT

PRODUCTION = ROOT / "deploy" / "postgresql" / "kilowatch.conf"


@pytest.fixture(scope="module")
def own_database() -> Iterator[Postgres]:
    """A fresh cluster (never started) whose postgresql.conf includes a copy of the file."""
    cluster = Postgres()
    cluster._pg(str(PG_BIN / "initdb"), "-D", str(cluster.data), "-U", "kilowatch",
                "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
    yield cluster
    cluster.remove()


def show(cluster: Postgres, conf: Path, setting: str) -> subprocess.CompletedProcess:
    """Load the configuration with ``conf`` included and print one setting (postgres -C)."""
    main = cluster.data / "postgresql.conf"
    base = main.read_text().split("# kilowatch\n")[0]
    shutil.copy(conf, cluster.dir / "kilowatch.conf")
    shutil.chown(cluster.dir / "kilowatch.conf", "postgres", "postgres")
    main.write_text(f"{base}# kilowatch\ninclude '{cluster.dir}/kilowatch.conf'\n")
    return subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"),
                           "-D", str(cluster.data), "-C", setting],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("setting", "value"), [
    ("shared_buffers", "524288"),  # 4GB in 8 kB pages
    ("archive_mode", "on"), ("wal_level", "replica"),
    ("shared_preload_libraries", "timescaledb"), ("listen_addresses", "localhost"),
])
def test_postgres_accepts_the_production_settings(own_database, setting, value):
    result = show(own_database, PRODUCTION, setting)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == value


def test_a_misspelt_setting_would_be_caught(own_database, tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text(PRODUCTION.read_text() + "chekpoint_timeout = 5min\n")
    result = show(own_database, broken, "shared_buffers")
    assert result.returncode != 0 and "chekpoint_timeout" in result.stderr
