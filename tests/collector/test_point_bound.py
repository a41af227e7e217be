"""The per-device bound on registered point names (KILOWATCH_MAX_POINTS_PER_DEVICE)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.collector.helpers import (
    Publisher,
    count_rows,
    register_fleet,
    running_collector,
    telemetry,
)
from tests.conftest import wait_for

BOUND = 8  # telemetry(points=n) sends n + 1 names (test.p000… and test.seq)


@pytest.fixture(scope="module")
def devices(kw_env):
    return register_fleet(kw_env["KILOWATCH_DATABASE_URL"], ["BND-1", "BND-2"])


@pytest.fixture(scope="module")
def collector(kw_env, devices, tmp_path_factory):
    env = {**kw_env, "KILOWATCH_MAX_POINTS_PER_DEVICE": str(BOUND)}
    log_path = tmp_path_factory.mktemp("collector") / "collector.log"
    with running_collector(env, log_path=log_path) as process:
        yield process


def test_names_beyond_the_bound_are_refused_and_neighbours_stored(
        conn, collector, devices, settings):
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    topic = f"{settings.mqtt_prefix}/BND-1/telemetry"
    publisher = Publisher()
    try:
        publisher.publish_many([
            (topic, telemetry(1, start, points=5)),                                 # 6 names
            (topic, telemetry(2, start + dt.timedelta(seconds=10), points=12)),     # 13 names
            (topic, telemetry(3, start + dt.timedelta(seconds=20), points=5)),      # known ones
            (f"{settings.mqtt_prefix}/BND-2/telemetry", telemetry(1, start, points=7)),  # 8
        ])
    finally:
        publisher.close()
    wait_for(lambda: count_rows(conn, [devices["BND-1"]]) == 2 * 6, what="neighbours stored")
    wait_for(lambda: count_rows(conn, [devices["BND-2"]]) == 8, what="other device stored")
    letter = wait_for(lambda: conn.execute(
        "SELECT reason, detail, payload FROM dead_letters WHERE serial = 'BND-1'").fetchone(),
        what="dead letter")
    assert letter["reason"] == "too_many_points"
    assert str(BOUND) in letter["detail"]
    assert '"seq": 2' in letter["payload"]
    assert collector.metric("kilowatch_collector_messages_rejected_total",
                            '{reason="too_many_points"}') == 1
    # The refused message's values were not stored, and no device holds more than the bound.
    seqs = conn.execute(
        "SELECT DISTINCT t.value FROM telemetry t JOIN points p ON p.id = t.point_id "
        "WHERE t.device_id = %s AND p.name = 'test.seq' ORDER BY 1",
        (devices["BND-1"],)).fetchall()
    assert [r["value"] for r in seqs] == [1, 3]
    per_device = conn.execute(
        "SELECT device_id, count(*) AS n FROM device_points GROUP BY device_id").fetchall()
    assert per_device and all(r["n"] <= BOUND for r in per_device)
