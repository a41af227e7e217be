"""Keep the broker's accounts in line with the database: changed devices at once, all often."""

from __future__ import annotations

import logging

import psycopg

from kilowatch.broker import sync
from kilowatch.errors import UserFacingError
from kilowatch.jobs import Job
from kilowatch.settings import Settings

log = logging.getLogger(__name__)


def push_changed(conn: psycopg.Connection, settings: Settings) -> dict:
    """Push activations and revocations since the last turn (a revoked device is cut off)."""
    try:
        return {"changes": len(sync.apply_pending(conn, settings))}
    except UserFacingError as error:
        log.warning("broker sync: %s", error)
        return {"error": str(error)}


def reconcile(conn: psycopg.Connection, settings: Settings) -> dict:
    """Repair whatever differs on the broker: lost state, accounts changed behind our back."""
    try:
        return {"changes": len(sync.reconcile(settings, conn))}
    except UserFacingError as error:
        log.warning("broker reconcile: %s", error)
        return {"error": str(error)}


JOBS = [Job("broker-devices", 1, push_changed), Job("broker-reconcile", 30, reconcile)]
