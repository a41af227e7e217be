"""Raw telemetry writing: the binary COPY encoder and exactly-once storage."""

from __future__ import annotations

import datetime as dt

from kilowatch.telemetry import storage as telemetry

T = dt.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_encoder_round_trips_through_copy(conn):
    rows = [(T, 7, 3, -1.5e300), (dt.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
                                  2**31 - 1, 1, 0.1),
            (T.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))), 8, 2, 0.0)]
    with conn.transaction():
        assert telemetry.copy_samples(conn, rows) == 3
    stored = conn.execute("SELECT time, device_id, point_id, value FROM telemetry "
                          "WHERE device_id IN (7, 8, 2147483647) ORDER BY device_id").fetchall()
    assert [tuple(r.values()) for r in stored] == [rows[0], rows[2], rows[1]]


def test_store_samples_keeps_one_row_per_key_and_counts_duplicates(conn):
    first = telemetry.CopyEncoder()
    first.add(T, 42, {"a": 1.0, "b": 2.0}, {"a": 1, "b": 2})
    with conn.transaction():
        assert telemetry.store_samples(conn, first) == (2, False)
    again = telemetry.CopyEncoder()
    again.add(T, 42, {"a": 1.0, "b": 2.0}, {"a": 1, "b": 2})
    again.add(T + dt.timedelta(seconds=1), 42, {"a": 3.0}, {"a": 1})
    with conn.transaction():
        assert telemetry.store_samples(conn, again) == (1, True)
    count = conn.execute("SELECT count(*) AS n FROM telemetry WHERE device_id = 42").fetchone()
    assert count["n"] == 3
