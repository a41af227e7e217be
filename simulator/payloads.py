"""The JSON payloads a simulated device sends, shaped as docs/protocol.md says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from simulator.alarms import AlarmEvent
from simulator.model import Sample

DECIMALS = 4
REASON_MAX = 500  # the ack schemas' limit


def format_ts(t: float) -> str:
    """Return epoch ``t`` as RFC 3339 UTC with milliseconds (``2026-11-22T10:00:00.000Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def telemetry(seq: int, samples: list[Sample]) -> dict[str, Any]:
    """Return a telemetry message: its sequence number and samples of every point."""
    return {"seq": seq, "samples": [
        {"ts": format_ts(s.t), "v": {name: round(value, DECIMALS)
                                     for name, value in s.values.items()}}
        for s in samples
    ]}


def alarm(event: AlarmEvent) -> dict[str, Any]:
    """Return an alarm message for a raise or a clear."""
    return {"ts": format_ts(event.t), "code": event.code, "severity": event.severity,
            "state": event.state, "message": event.message}


def status(t: float, state: str, firmware: str) -> dict[str, Any]:
    """Return a status message (``online`` or ``offline``)."""
    return {"ts": format_ts(t), "state": state, "firmware": firmware}


def ack(t: float, revision: int, status: str, reason: str | None = None) -> dict[str, Any]:
    """Return a schedule or plan ack (``applied`` or ``rejected``, a reason cut to 500)."""
    message: dict[str, Any] = {"revision": revision, "status": status}
    if reason:
        message["reason"] = (reason if len(reason) <= REASON_MAX
                             else reason[:REASON_MAX - 1] + "…")
    message["ts"] = format_ts(t)
    return message
