"""Cumulative energy counters: which points they are, and how far one advanced between readings.

A counter advances between two consecutive readings by their difference. A drop
of more than a tenth of the previous reading is a reset: the new value counted
from zero. A smaller drop (jitter, an older reading sent again with a new time)
counts nothing, so a counter's value never counts as energy. :func:`increase`
says it in SQL for the rollups and energy queries, :func:`advance` in Python.
"""

from __future__ import annotations

# quantity: (counter point, power point, sign of the power that counts)
QUANTITIES: dict[str, tuple[str, str, int]] = {
    "grid_import": ("meter.grid.e_import", "meter.grid.p", 1),
    "grid_export": ("meter.grid.e_export", "meter.grid.p", -1),
    "load": ("meter.load.e", "meter.load.p", 1),
    "pv": ("meter.pv.e", "meter.pv.p", 1),
    "battery_charge": ("pcs.e_charge", "pcs.p", -1),
    "battery_discharge": ("pcs.e_discharge", "pcs.p", 1),
}
COUNTER_POINTS = tuple(spec[0] for spec in QUANTITIES.values())
RESET_BELOW = 0.9  # a counter reading below this share of the one before is a reset


def increase(prev: str, value: str) -> str:
    """Return SQL for how far a counter advanced from reading ``prev`` to ``value``."""
    return (f"(CASE WHEN {value} >= {prev} THEN {value} - {prev} "
            f"WHEN {value} < {prev} * {RESET_BELOW} THEN greatest({value}, 0) ELSE 0 END)")


def advance(prev: float, value: float) -> float:
    """Return how far a counter advanced from ``prev`` to ``value`` (as :func:`increase`)."""
    if value >= prev:
        return value - prev
    return max(value, 0.0) if value < prev * RESET_BELOW else 0.0
