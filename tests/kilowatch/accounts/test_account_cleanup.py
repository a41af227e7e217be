"""The account-cleanup job forgets dead sessions and long-expired links, and nothing else."""

from __future__ import annotations

import pytest

from kilowatch.access import system_scope
from kilowatch.accounts import login_sessions, tokens, users
from kilowatch.jobs import accounts


def test_cleanup_deletes_only_dead_sessions_and_old_links(conn, settings):
    user_id = users.create_user(conn, system_scope("test"), email="tidy@example.com",
                                role="superadmin", company_id=None, password_hash="!")
    login_sessions.record(conn, user_id, "live-session", lifetime_s=3600)
    login_sessions.record(conn, user_id, "dead-session", lifetime_s=3600)
    conn.execute("UPDATE login_sessions SET expires_at = now() - interval '1 second' "
                 "WHERE id_hash = sha256('dead-session')")
    fresh, _ = tokens.issue(conn, user_id, "reset")
    recent, _ = tokens.issue(conn, user_id, "reset")
    old, _ = tokens.issue(conn, user_id, "reset")
    conn.execute("UPDATE account_tokens SET expires_at = now() - interval '1 day' "
                 "WHERE token_hash = %s", (tokens.digest(recent),))
    conn.execute("UPDATE account_tokens SET expires_at = now() - interval '31 days' "
                 "WHERE token_hash = %s", (tokens.digest(old),))

    assert accounts.run(conn, settings) == {"sessions_deleted": 1, "links_deleted": 1}
    assert login_sessions.is_live(conn, user_id, "live-session")
    assert tokens.check(conn, fresh).user_id == user_id
    for token, problem in ((recent, "expired"), (old, "unknown")):
        with pytest.raises(tokens.LinkError) as refused:
            tokens.check(conn, token)
        assert refused.value.problem == problem
