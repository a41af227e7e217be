"""Users, groups and grants: scope rules, audit entries, the schema's guarantees and the CLI."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import AccessDenied, AccessScope, system_scope
from kilowatch.accounts import groups, passwords, users

ROOT = system_scope("test")
HASH = passwords.hash_password("a password long enough")


@pytest.fixture(scope="module")
def world(settings):
    """Two companies with two sites each, an admin and a viewer in each."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        data = {}
        for letter in ("a", "b"):
            company = fleet.create_company(conn, ROOT, f"Users {letter}")
            sites = [fleet.create_site(conn, ROOT, company_id=company, name=f"{letter}{n}",
                                       timezone="UTC") for n in (1, 2)]
            admin = users.create_user(conn, ROOT, email=f"admin@{letter}.test.com", role="admin",
                                      company_id=company, password_hash=HASH)
            viewer = users.create_user(conn, ROOT, email=f"viewer@{letter}.test.com",
                                       role="viewer", company_id=company, password_hash=HASH)
            data[letter] = {"company": company, "sites": sites, "admin": admin,
                            "viewer": viewer}
        return data


def _scope(conn, user_id) -> AccessScope:
    return users.build_scope(conn, ROOT, user_id)


def test_viewer_scope_is_the_sites_of_their_groups(conn, world):
    a = world["a"]
    viewer = _scope(conn, a["viewer"])
    assert viewer.role == "viewer" and viewer.site_ids == frozenset()
    group = groups.create_group(conn, ROOT, company_id=a["company"], name="scope test")
    groups.grant_site(conn, ROOT, group, a["sites"][1])
    groups.add_member(conn, ROOT, group, a["viewer"])
    viewer = _scope(conn, a["viewer"])
    assert viewer.site_ids == {a["sites"][1]}
    assert viewer.actor == "viewer@a.test.com"
    assert [s["id"] for s in fleet.list_sites(conn, viewer)] == [a["sites"][1]]
    groups.delete_group(conn, _scope(conn, a["admin"]), group)
    assert _scope(conn, a["viewer"]).site_ids == frozenset()


def test_admin_scope_covers_the_whole_company(conn, world):
    admin = _scope(conn, world["a"]["admin"])
    assert admin.site_ids is None and admin.company_id == world["a"]["company"]
    assert {s["id"] for s in fleet.list_sites(conn, admin)} == set(world["a"]["sites"])


def test_deactivated_user_has_no_scope(conn, world):
    user = users.create_user(conn, ROOT, email="gone@a.test.com", role="viewer",
                             company_id=world["a"]["company"], password_hash=HASH)
    users.set_active(conn, ROOT, user, False)
    assert _scope(conn, user) is None


def test_admin_creates_only_company_roles_in_own_company(conn, world):
    admin = _scope(conn, world["a"]["admin"])
    created = users.create_user(conn, admin, email="Op@A.test.com", role="operator",
                                company_id=world["a"]["company"], password_hash=HASH)
    assert users.get_user(conn, admin, created)["email"] == "op@a.test.com"
    with pytest.raises(AccessDenied):
        users.create_user(conn, admin, email="x@b.test.com", role="viewer",
                          company_id=world["b"]["company"], password_hash=HASH)
    with pytest.raises(users.AccountError, match="platform staff"):
        users.create_user(conn, admin, email="x@a.test.com", role="superadmin",
                          company_id=world["a"]["company"], password_hash=HASH)
    with pytest.raises(AccessDenied):
        users.create_user(conn, admin, email="x@a.test.com", role="support", company_id=None,
                          password_hash=HASH)


@pytest.mark.parametrize("role", ["viewer", "operator", "support"])
def test_only_admins_manage_users(conn, world, role):
    scope = AccessScope(role=role, company_id=None if role == "support" else world["a"]["company"],
                        site_ids=None if role == "support" else frozenset(), user_id=None)
    with pytest.raises(AccessDenied):
        users.create_user(conn, scope, email="x@a.test.com", role="viewer",
                          company_id=world["a"]["company"], password_hash=HASH)
    with pytest.raises(AccessDenied):
        users.set_active(conn, scope, world["a"]["viewer"], False)
    with pytest.raises(AccessDenied):
        groups.create_group(conn, scope, company_id=world["a"]["company"], name="nope")


def test_admin_cannot_see_or_change_another_company(conn, world):
    admin = _scope(conn, world["a"]["admin"])
    with pytest.raises(AccessDenied):
        users.get_user(conn, admin, world["b"]["viewer"])
    with pytest.raises(AccessDenied):
        users.set_role(conn, admin, world["b"]["viewer"], "operator")
    with pytest.raises(AccessDenied):
        users.reset_password(conn, admin, world["b"]["viewer"], HASH)
    assert {u["company_id"] for u in users.list_users(conn, admin)} == {world["a"]["company"]}
    assert users.list_users(conn, admin, world["b"]["company"]) == []
    assert users.find_login(conn, admin, "viewer@b.test.com") is None


def test_admin_cannot_change_own_role_or_deactivate_self(conn, world):
    admin = _scope(conn, world["a"]["admin"])
    with pytest.raises(users.AccountError, match="own role"):
        users.set_role(conn, admin, world["a"]["admin"], "viewer")
    with pytest.raises(users.AccountError, match="your own account"):
        users.set_active(conn, admin, world["a"]["admin"], False)


def test_changes_are_audited_with_before_and_after(conn, world):
    admin = _scope(conn, world["a"]["admin"])
    user = users.create_user(conn, admin, email="audited@a.test.com", role="viewer",
                             company_id=world["a"]["company"], password_hash=HASH)
    users.set_role(conn, admin, user, "operator")
    users.reset_password(conn, admin, user, HASH)
    rows = conn.execute("SELECT * FROM audit_log WHERE target = %s ORDER BY id",
                        (f"user:{user}",)).fetchall()
    assert [r["action"] for r in rows] == ["user.create", "user.set_role",
                                           "user.reset_password"]
    assert all(r["actor"] == "admin@a.test.com" and r["company_id"] == world["a"]["company"]
               for r in rows)
    assert rows[1]["before"]["role"] == "viewer" and rows[1]["after"]["role"] == "operator"
    assert "password_hash" not in str(rows[2]["after"]) and rows[2]["after"]["password"] == "reset"


def test_group_cannot_hold_another_company_site_or_user(conn, world):
    a, b = world["a"], world["b"]
    group = groups.create_group(conn, ROOT, company_id=a["company"], name="mixed")
    with pytest.raises(users.AccountError, match="site does not belong"):
        groups.grant_site(conn, ROOT, group, b["sites"][0])
    with pytest.raises(users.AccountError, match="user does not belong"):
        groups.add_member(conn, ROOT, group, b["viewer"])
    # The schema refuses it too, whatever the code does.
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO group_sites (group_id, site_id, company_id) VALUES (%s, %s, %s)",
                      (group, b["sites"][0], a["company"]))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO group_sites (group_id, site_id, company_id) VALUES (%s, %s, %s)",
                      (group, b["sites"][0], b["company"]))


def test_schema_ties_roles_to_companies_and_emails_are_unique(conn, world):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO users (email, display_name, role) VALUES ('v@x.com', 'v', "
                     "'viewer')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO users (email, display_name, role, company_id) VALUES "
                     "('s@x.com', 's', 'support', %s)", (world["a"]["company"],))
    with pytest.raises(users.AccountError, match="already exists"):
        users.create_user(conn, ROOT, email="VIEWER@A.test.com", role="viewer",
                          company_id=world["a"]["company"], password_hash=HASH)


def test_support_neither_reads_nor_changes_user_directories(conn, world):
    support = AccessScope(role="support", actor="support@test")
    group = groups.create_group(conn, ROOT, company_id=world["a"]["company"], name="support test")
    for read in (lambda: users.list_users(conn, support),
                 lambda: groups.list_groups(conn, support),
                 lambda: groups.get_group(conn, support, group)):
        with pytest.raises(AccessDenied):
            read()
    with pytest.raises(AccessDenied):
        users.set_role(conn, support, world["a"]["viewer"], "admin")
    assert groups.get_group(conn, ROOT, group)["name"] == "support test"


def test_bad_email_and_role_are_clear_errors(conn, world):
    with pytest.raises(users.AccountError, match="not a valid e-mail"):
        users.create_user(conn, ROOT, email="not-an-email", role="viewer",
                          company_id=world["a"]["company"], password_hash=HASH)
    with pytest.raises(users.AccountError, match="unknown role 'boss'"):
        users.create_user(conn, ROOT, email="boss@a.test.com", role="boss",
                          company_id=world["a"]["company"], password_hash=HASH)


def test_password_hashing_uses_owasp_argon2id():
    stored = passwords.hash_password("twelve chars!")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(stored, "twelve chars!")
    assert not passwords.verify_password(stored, "twelve chars?")
    assert not passwords.verify_password(None, "anything at all")
    assert not passwords.verify_password("not a hash", "anything at all")
    with pytest.raises(passwords.PasswordPolicyError):
        passwords.hash_password("short")
    assert len(passwords.generate_password()) >= 16


# --- CLI ---------------------------------------------------------------------------------------


def run(kw_env, *args, stdin=None):
    """Run the real ``kilowatch`` executable against this module's services."""
    return subprocess.run(["kilowatch", *args], env={**os.environ, **kw_env}, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_cli_user_create_prints_a_one_time_password_once(kw_env, conn, world):
    result = run(kw_env, "user", "create", "--email", "cli@a.test.com", "--role", "viewer",
                 "--company", "Users a")
    assert result.returncode == 0, result.stderr
    password = result.stdout.split("one-time password")[1].split(": ", 1)[1].strip()
    row = conn.execute("SELECT * FROM users WHERE email = 'cli@a.test.com'").fetchone()
    assert passwords.verify_password(row["password_hash"], password)
    assert row["must_change_password"] and row["company_id"] == world["a"]["company"]


def test_cli_user_create_reads_the_password_from_stdin(kw_env, conn):
    result = run(kw_env, "user", "create", "--email", "root2@platform.test.com", "--role",
                 "superadmin", "--password-stdin", stdin="my secret password\n")
    assert result.returncode == 0, result.stderr
    assert "password" not in result.stdout.replace("root2", "")
    row = conn.execute("SELECT * FROM users WHERE email = 'root2@platform.test.com'").fetchone()
    assert passwords.verify_password(row["password_hash"], "my secret password")
    assert row["company_id"] is None and not row["must_change_password"]


@pytest.mark.parametrize(("args", "message"), [
    (["--email", "x@a.test.com", "--role", "viewer", "--company", "Nowhere Ltd"],
     "no company matches 'Nowhere Ltd'"),
    (["--email", "viewer@a.test.com", "--role", "viewer", "--company", "Users a"],
     "already exists"),
    (["--email", "x@a.test.com", "--role", "king", "--company", "Users a"], "unknown role 'king'"),
    (["--email", "x@a.test.com", "--role", "viewer"], "belongs to a company"),
    (["--email", "x@a.test.com", "--role", "support", "--company", "Users a"], "platform staff"),
    (["--email", "nope", "--role", "viewer", "--company", "Users a"], "not a valid e-mail"),
])
def test_cli_user_create_errors_are_one_line(kw_env, world, args, message):
    result = run(kw_env, "user", "create", *args, "--password-stdin",
                 stdin="long enough password\n")
    assert result.returncode != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_short_password_from_stdin_is_refused(kw_env, world):
    result = run(kw_env, "user", "create", "--email", "short@a.test.com", "--role", "viewer",
                 "--company", "Users a", "--password-stdin", stdin="short\n")
    assert result.returncode != 0 and "at least 12 characters" in result.stderr


def test_cli_set_password_and_list(kw_env, conn, world):
    result = run(kw_env, "user", "set-password", "--user", "viewer@b.test.com",
                 "--password-stdin", stdin="a new long password\n")
    assert result.returncode == 0, result.stderr
    row = conn.execute("SELECT password_hash FROM users WHERE email = 'viewer@b.test.com'"
                       ).fetchone()
    assert passwords.verify_password(row["password_hash"], "a new long password")
    listing = run(kw_env, "user", "list", "--company", "Users b")
    assert "viewer@b.test.com" in listing.stdout and "viewer@a.test.com" not in listing.stdout
    assert "no user matches" in run(kw_env, "user", "set-password", "--user",
                                    "ghost@b.test.com").stderr


def test_cli_group_create_grant_and_add_member(kw_env, conn, world):
    b = world["b"]
    assert run(kw_env, "group", "create", "--company", "Users b", "--name", "Ops"
               ).returncode == 0
    granted = run(kw_env, "group", "grant", "--group", "Ops", "--site", str(b["sites"][1]))
    assert granted.returncode == 0, granted.stderr
    added = run(kw_env, "group", "add-member", "--group", "Ops", "--user", "viewer@b.test.com")
    assert added.returncode == 0, added.stderr
    assert _scope(conn, b["viewer"]).site_ids == {b["sites"][1]}
    foreign = run(kw_env, "group", "grant", "--group", "Ops", "--site", str(world["a"]["sites"][0]))
    assert foreign.returncode != 0 and "does not belong" in foreign.stderr
    duplicate = run(kw_env, "group", "create", "--company", "Users b", "--name", "Ops")
    assert "already has a group named 'Ops'" in duplicate.stderr
    assert "no company matches" in run(kw_env, "group", "create", "--company", "Nope",
                                       "--name", "X").stderr
    assert "(1 members, 1 sites)" in run(kw_env, "group", "list", "--company", "Users b").stdout
