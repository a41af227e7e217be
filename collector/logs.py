"""Rate-limited logging: one line per key per interval, with a count of the ones skipped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable


class RateLimitedLog:
    """Log a warning at most once per ``interval_s`` for each key."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = 60.0,
                 max_keys: int = 10_000) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warning(self, key: Hashable, message: str, *args: object) -> None:
        """Log ``message % args`` unless this key was logged within the interval."""
        now = time.monotonic()
        with self._lock:
            last, skipped = self._last.get(key, (-self.interval_s, 0))
            if now - last < self.interval_s:
                self._last[key] = (last, skipped + 1)
                return
            if len(self._last) >= self.max_keys:
                self._last.clear()
            self._last[key] = (now, 0)
        suffix = f" ({skipped} similar suppressed)" if skipped else ""
        self.logger.warning(message + suffix, *args)
