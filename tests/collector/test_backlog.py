"""The backlog between on_message and the writer: bounded, FIFO, blocking when full."""

from __future__ import annotations

import threading
import time

from collector.backlog import Backlog, Item


def item(n: int, points: int) -> Item:
    return Item(mid=n, qos=1, generation=1, topic="t", serial="s", kind="telemetry",
                received_at=time.time(), points=points)


def test_put_blocks_when_full_until_the_writer_is_done():
    backlog = Backlog(max_points=100)
    stop = threading.Event()
    assert backlog.put(item(1, 80), stop)
    finished = threading.Event()
    threading.Thread(target=lambda: (backlog.put(item(2, 50), stop), finished.set()),
                     daemon=True).start()
    assert not finished.wait(0.3)  # over the bound: on_message waits (backpressure)
    batch = backlog.take(max_points=1000, max_items=10, linger_s=0, timeout_s=1)
    assert [i.mid for i in batch] == [1]
    assert not finished.wait(0.3)  # still held by the writer's batch until done()
    backlog.done(batch)
    assert finished.wait(2)
    assert [i.mid for i in backlog.take(max_points=1000, max_items=10, linger_s=0,
                                        timeout_s=1)] == [2]


def test_stop_releases_a_blocked_put_and_oversized_items_pass_alone():
    backlog = Backlog(max_points=10)
    stop = threading.Event()
    assert backlog.put(item(1, 50), stop)  # bigger than the bound, but the backlog was empty
    stop.set()
    assert backlog.put(item(2, 5), stop) is False


def test_take_respects_batch_limits_and_order():
    backlog = Backlog(max_points=10_000)
    stop = threading.Event()
    for n in range(10):
        backlog.put(item(n, 10), stop)
    first = backlog.take(max_points=30, max_items=100, linger_s=0, timeout_s=1)
    second = backlog.take(max_points=1000, max_items=4, linger_s=0, timeout_s=1)
    assert [i.mid for i in first] == [0, 1, 2]
    assert [i.mid for i in second] == [3, 4, 5, 6]
    assert backlog.take(max_points=1, max_items=1, linger_s=0, timeout_s=0.01)[0].mid == 7
    assert backlog.sizes() == (2, 100)
