"""Write who changed what, and when, to the audit log."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kilowatch.access import AccessScope


def record(
    conn: psycopg.Connection,
    scope: AccessScope,
    action: str,
    *,
    target: str | None = None,
    company_id: int | None = None,
    before: Any = None,
    after: Any = None,
) -> None:
    """Append one entry to the audit log inside the caller's transaction."""
    conn.execute(
        """INSERT INTO audit_log (actor, actor_user_id, company_id, action, target, before, after)
           VALUES (%s, %s, %s, %s, %s, %s, %s)""",
        (
            scope.actor,
            scope.user_id,
            company_id,
            action,
            target,
            None if before is None else Jsonb(before),
            None if after is None else Jsonb(after),
        ),
    )
