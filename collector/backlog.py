"""The bounded in-memory backlog between MQTT's ``on_message`` and the writer thread."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from typing import Any

PAYLOAD_KEEP = 4096  # bytes of a payload kept until stored, and in the dead-letter store


@dataclasses.dataclass(slots=True)
class Item:
    """One received message: validated content, or the reason it is refused."""

    mid: int
    qos: int
    generation: int
    topic: str
    serial: str | None
    kind: str | None
    received_at: float
    body: Any = None
    points: int = 0
    reason: str | None = None
    detail: str | None = None
    payload: bytes = b""  # the first PAYLOAD_KEEP bytes, for a dead letter
    retained: bool = False  # the broker's stored copy, sent on a new subscription


class Backlog:
    """A FIFO bounded by point values and messages; ``put`` blocks while full (backpressure).

    Items count until the writer calls :meth:`done` after storing them, so the bound
    covers what sits in the writer's current batch too.
    """

    def __init__(self, max_points: int, max_messages: int = 100_000) -> None:
        self.max_points = max_points
        self.max_messages = max_messages
        self._items: deque[Item] = deque()
        self._points = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def _full(self, item: Item) -> bool:
        return len(self._items) >= self.max_messages or (
            self._points > 0 and self._points + item.points > self.max_points)

    def put(self, item: Item, stop: threading.Event) -> bool:
        """Append an item, waiting while the backlog is full; False if stopped meanwhile."""
        with self._lock:
            while self._full(item):
                if stop.is_set():
                    return False
                self._not_full.wait(0.2)
            self._items.append(item)
            self._points += item.points
            if len(self._items) == 1:
                self._not_empty.notify()
        return True

    def take(self, *, max_points: int, max_items: int, linger_s: float,
             timeout_s: float) -> list[Item]:
        """Wait up to ``timeout_s`` for an item, then gather more for up to ``linger_s``."""
        batch: list[Item] = []
        points = 0
        with self._lock:
            if not self._items:
                self._not_empty.wait(timeout_s)
            if not self._items:
                return batch
            linger_end = time.monotonic() + linger_s
            while len(batch) < max_items and points < max_points:
                if self._items:
                    item = self._items.popleft()
                    batch.append(item)
                    points += item.points
                    continue
                remaining = linger_end - time.monotonic()
                if remaining <= 0:
                    break
                self._not_empty.wait(remaining)
        return batch

    def done(self, items: list[Item]) -> None:
        """Release the room held by stored (or abandoned) items."""
        with self._lock:
            self._points -= sum(i.points for i in items)
            self._not_full.notify_all()

    def sizes(self) -> tuple[int, int]:
        """Return (messages queued, point values held)."""
        with self._lock:
            return len(self._items), self._points
