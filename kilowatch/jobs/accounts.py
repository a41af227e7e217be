"""Forget login sessions past their lifetime and account links long past theirs."""

from __future__ import annotations

import psycopg

from kilowatch.accounts import login_sessions, tokens
from kilowatch.jobs import Job
from kilowatch.settings import Settings


def run(conn: psycopg.Connection, settings: Settings) -> dict:
    """Delete expired sessions, and links expired for longer than tokens.KEEP_EXPIRED."""
    return {"sessions_deleted": login_sessions.purge_expired(conn),
            "links_deleted": tokens.purge_expired(conn)}


JOBS = [Job("account-cleanup", 3600, run)]
