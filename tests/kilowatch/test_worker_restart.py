"""``kilowatch worker`` keeps running its jobs across a database restart."""

from __future__ import annotations

import os
import subprocess

import pytest

from kilowatch import db
from tests.collector.helpers import heartbeat, register_fleet, wait_for
from tests.collector.servers import Postgres


@pytest.fixture
def own_database():
    server = Postgres().create()
    yield server
    server.remove()


def test_worker_survives_a_database_restart(kw_env, own_database, tmp_path):
    devices = register_fleet(own_database.url, ["W-1"], "Workerco")
    env = {**os.environ, **kw_env, "KILOWATCH_DATABASE_URL": own_database.url}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["kilowatch", "worker", "--job", "rollups", "--job",
                                    "offline"], env=env, stdout=log, stderr=log)
    try:
        with db.connect(own_database.url, autocommit=True) as conn:
            wait_for(lambda: conn.execute("SELECT watermark FROM rollup_state "
                                          "WHERE rollup = '1m'").fetchone()["watermark"],
                     what="first rollup run", timeout_s=60)
        own_database.stop()
        wait_for(lambda: "database unavailable" in log_path.read_text(),
                 what="a job meeting the stopped database", timeout_s=60)
        own_database.start()
        with db.connect(own_database.url, autocommit=True) as conn:
            heartbeat(conn)  # the platform ingests: the silence is the device's
            conn.execute("UPDATE devices SET online = true, "
                         "last_seen = now() - interval '1 hour' WHERE id = %s",
                         (devices["W-1"],))
            wait_for(lambda: conn.execute("SELECT online FROM devices WHERE id = %s",
                                          (devices["W-1"],)).fetchone()["online"] is False,
                     what="offline job after the restart", timeout_s=90)
        assert process.poll() is None
    finally:
        process.terminate()
        assert process.wait(30) == 0
