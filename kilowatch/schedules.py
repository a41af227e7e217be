"""Operating schedules: the model, its validation and which mode applies when."""

from __future__ import annotations


def record_ack(conn, **ack) -> bool:
    """Record a device's schedule ack (see :func:`kilowatch.schedule_store.record_ack`)."""
    from kilowatch import schedule_store

    return schedule_store.record_ack(conn, **ack)
