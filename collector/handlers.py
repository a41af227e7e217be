"""What the writer stores besides raw rows: device alarms, schedule and plan acks, device activity
(status messages included) and dead letters, all inside the writer's batch transaction.

Each function takes the batch, the devices it resolved and the refusals so far,
by index in the batch.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import psycopg

from collector.backlog import PAYLOAD_KEEP, Item
from kilowatch.alarms import events as alarms
from kilowatch.dispatch import delivery as plan_delivery
from kilowatch.schedules import store as schedule_store
from kilowatch.telemetry import ingest

log = logging.getLogger(__name__)

Refusals = dict[int, tuple[str, str]]  # index in the batch → (reason, detail)


def store_alarms_and_acks(conn: psycopg.Connection, batch: list[Item],
                          devices: dict[str, ingest.Device], refused: Refusals) -> Refusals:
    """Raise or clear device alarms and record schedule and plan acks; return the new refusals."""
    refusals: Refusals = {}
    for index, item in enumerate(batch):
        if item.kind not in ("alarms", "schedule/ack", "plan/ack") or index in refused:
            continue
        device = devices[item.serial]
        try:
            with conn.transaction():
                if item.kind == "alarms":
                    _device_alarm(conn, device.id, item.body)
                elif item.kind == "plan/ack":
                    _plan_ack(conn, device.id, item.body)
                else:
                    _schedule_ack(conn, device.id, item.body)
        except (psycopg.OperationalError, psycopg.InterfaceError,
                psycopg.errors.TransactionRollback):
            raise
        except Exception as error:
            unknown = (schedule_store.UnknownRevision, plan_delivery.UnknownPlan)
            reason = "unknown_revision" if isinstance(error, unknown) else "store_failed"
            if reason == "store_failed":
                log.exception("%s message from %s failed", item.kind, item.serial)
            refusals[index] = (reason, str(error).strip()[:300])
    return refusals


def activity(batch: list[Item], devices: dict[str, ingest.Device], *,
             offline_after_s: int) -> dict[int, list[ingest.Activity]]:
    """Return what each device's messages say about it being online, by device id."""
    found: dict[int, list[ingest.Activity]] = defaultdict(list)
    for item in batch:
        device = devices.get(item.serial) if item.serial else None
        if device is None:
            continue
        at = dt.datetime.fromtimestamp(item.received_at, dt.UTC)
        if item.kind == "status" and isinstance(item.body, dict) and not item.reason:
            state = item.body["state"]
            live = True
            if item.retained:
                # A retained status may be hours old (sent again on a new subscription):
                # it counts at its own time, and only while that is recent.
                at = min(at, item.body["at"])
                live = at >= dt.datetime.now(dt.UTC) - dt.timedelta(seconds=offline_after_s)
            found[device.id].append(ingest.Activity(
                at, state == "online", f"status {state}", item.body.get("firmware"),
                liveness=live))
        else:
            found[device.id].append(ingest.Activity(at, True, item.kind or "message"))
    return found


def store_dead_letters(conn: psycopg.Connection, batch: list[Item],
                       devices: dict[str, ingest.Device], refused: Refusals) -> int:
    """Keep every refused message in the dead-letter store; return how many."""
    letters = []
    for index, (reason, detail) in refused.items():
        item = batch[index]
        device = devices.get(item.serial) if item.serial else None
        letters.append(ingest.DeadLetter(
            topic=_text(item.topic), reason=reason, detail=_text(detail),
            payload=_text(item.payload[:PAYLOAD_KEEP].decode("utf-8", "replace")),
            serial=_text(item.serial[:128]) if item.serial else None,
            device_id=device.id if device else None,
            received_at=dt.datetime.fromtimestamp(item.received_at, dt.UTC)))
    ingest.add_dead_letters(conn, letters)
    return len(letters)


def _device_alarm(conn: psycopg.Connection, device_id: int, body: dict) -> None:
    if body["state"] == "raised":
        alarms.raise_alarm(conn, device_id=device_id, code=body["code"],
                           severity=body["severity"], source="device",
                           message=body.get("message", ""), at=body["at"])
    else:
        alarms.clear_alarm(conn, device_id=device_id, code=body["code"], at=body["at"])


def _schedule_ack(conn: psycopg.Connection, device_id: int, body: dict) -> None:
    schedule_store.record_ack(conn, device_id=device_id, revision=body["revision"],
                              status=body["status"], reason=body.get("reason"), at=body["at"])


def _plan_ack(conn: psycopg.Connection, device_id: int, body: dict) -> None:
    plan_delivery.record_ack(conn, device_id=device_id, revision=body["revision"],
                             status=body["status"], reason=body.get("reason"), at=body["at"])


def _text(value: str) -> str:
    """Make text storable in PostgreSQL (no NUL characters)."""
    return value.replace("\x00", "\ufffd")
