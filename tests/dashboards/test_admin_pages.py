"""Administration pages driven through forged callback requests, as a browser would post them."""

from __future__ import annotations

import re

import pytest

from tests.dashboards.conftest import call_callback, login, unique_email


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _create_user(client, app, *, company_id, email, role="viewer"):
    return call_callback(client, app, "admin-users-message.children", {
        "admin-users-create.n_clicks": 1, "admin-users-company.value": str(company_id),
        "admin-users-email.value": email, "admin-users-new-role.value": role,
        "admin-users-changed.data": 0}, triggered="admin-users-create.n_clicks")


def _user_row(conn, email):
    return conn.execute("SELECT * FROM users WHERE email = %s", (email,)).fetchone()


def test_admin_lists_own_company_users(app, tenants):
    response = call_callback(_as(app, tenants.a.admin), app, "admin-users-table.children",
                             {"admin-users-company.value": str(tenants.a.id)})
    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert tenants.a.viewer.email in text
    assert tenants.b.viewer.email not in text


def test_admin_asking_for_another_company_users_gets_nothing_of_it(app, tenants):
    response = call_callback(_as(app, tenants.a.admin), app, "admin-users-table.children",
                             {"admin-users-company.value": str(tenants.b.id)})
    text = response.get_data(as_text=True)
    assert tenants.b.viewer.email not in text and tenants.b.admin.email not in text


@pytest.mark.parametrize("role", ["viewer", "operator", "support"])
def test_non_admins_are_refused_admin_callbacks(app, tenants, role):
    account = tenants.support if role == "support" else getattr(tenants.a, role)
    client = _as(app, account)
    listing = call_callback(client, app, "admin-users-table.children",
                            {"admin-users-company.value": str(tenants.a.id)})
    assert listing.status_code == 403
    email = unique_email("forged")
    assert _create_user(client, app, company_id=tenants.a.id, email=email).status_code == 403
    groups = call_callback(client, app, "admin-groups-table.children",
                           {"admin-groups-company.value": str(tenants.a.id)})
    assert groups.status_code == 403


def test_anonymous_admin_callback_gets_401(client, app):
    response = call_callback(client, app, "admin-users-table.children",
                             {"admin-users-company.value": "1"})
    assert response.status_code == 401


def test_viewer_opening_an_admin_page_sees_not_allowed(app, tenants):
    client = _as(app, tenants.a.viewer)
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": "/admin/users",
                              "_pages_location.search": ""})
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "kw-not-allowed" in text and "admin-users-create" not in text


def test_admin_creates_a_user_who_is_invited_by_e_mail(app, conn, tenants):
    email = unique_email("new")
    response = _create_user(_as(app, tenants.a.admin), app, company_id=tenants.a.id, email=email)
    assert response.status_code == 200
    assert "An invitation to choose a password is on its way" in response.get_data(as_text=True)
    row = _user_row(conn, email)
    assert row["company_id"] == tenants.a.id and row["role"] == "viewer"
    assert row["password_hash"] is None and not row["must_change_password"]
    queued = conn.execute("SELECT subject FROM email_outbox WHERE recipient = %s",
                          (email,)).fetchall()
    assert [mail["subject"] for mail in queued] == [
        "[Kilowatch] Your Kilowatch account: choose your password"]
    audit = conn.execute("SELECT actor, action, after FROM audit_log WHERE target = %s "
                         "ORDER BY id", (f"user:{row['id']}",)).fetchall()
    assert [entry["action"] for entry in audit] == ["user.create", "user.send_invitation"]
    assert audit[0]["actor"] == tenants.a.admin.email and audit[0]["after"]["email"] == email
    listing = call_callback(_as(app, tenants.a.admin), app, "admin-users-table.children",
                            {"admin-users-company.value": str(tenants.a.id)})
    assert re.search(re.escape(email) + r".{0,400}invited", listing.get_data(as_text=True))


def test_admin_cannot_create_a_user_in_another_company(app, conn, tenants):
    email = unique_email("intruder")
    response = _create_user(_as(app, tenants.a.admin), app, company_id=tenants.b.id, email=email)
    assert response.status_code == 204
    assert _user_row(conn, email) is None


@pytest.mark.parametrize("role", ["support", "superadmin"])
def test_admin_cannot_create_platform_staff(app, conn, tenants, role):
    email = unique_email("staff")
    response = _create_user(_as(app, tenants.a.admin), app, company_id=tenants.a.id, email=email,
                            role=role)
    assert response.status_code == 200
    assert "platform staff" in response.get_data(as_text=True)
    assert _user_row(conn, email) is None


@pytest.mark.parametrize("owner", ["a", "b"])
def test_duplicate_email_gets_the_same_neutral_message_in_any_company(app, tenants, owner):
    taken = getattr(tenants, owner).viewer.email.upper()
    response = _create_user(_as(app, tenants.a.admin), app, company_id=tenants.a.id, email=taken)
    text = response.get_data(as_text=True)
    assert "This e-mail address cannot be used; contact support" in text
    assert "already exists" not in text


def test_superadmin_is_told_the_email_already_exists(app, tenants):
    response = _create_user(_as(app, tenants.superadmin), app, company_id=tenants.a.id,
                            email=tenants.b.viewer.email)
    assert "already exists" in response.get_data(as_text=True)


def test_superadmin_creates_a_user_in_any_company(app, conn, tenants):
    email = unique_email("by-root")
    response = _create_user(_as(app, tenants.superadmin), app, company_id=tenants.b.id,
                            email=email, role="admin")
    assert response.status_code == 200
    assert _user_row(conn, email)["company_id"] == tenants.b.id


def _change_user(client, app, button, user_id, role="viewer"):
    return call_callback(client, app, "admin-users-message.children", {
        f"{button}.n_clicks": 1, "admin-users-selected.value": str(user_id),
        "admin-users-role.value": role, "admin-users-changed.data": 3},
        triggered=f"{button}.n_clicks")


def test_admin_changes_role_deactivates_and_resets(app, conn, tenants):
    client = _as(app, tenants.a.admin)
    email = unique_email("target")
    _create_user(client, app, company_id=tenants.a.id, email=email)
    user_id = _user_row(conn, email)["id"]
    assert _change_user(client, app, "admin-users-save-role", user_id, "operator"
                        ).status_code == 200
    assert _user_row(conn, email)["role"] == "operator"
    assert _change_user(client, app, "admin-users-deactivate", user_id).status_code == 200
    assert not _user_row(conn, email)["active"]
    refused = _change_user(client, app, "admin-users-reset", user_id)
    assert "is deactivated; activate them first" in refused.get_data(as_text=True)
    assert _change_user(client, app, "admin-users-activate", user_id).status_code == 200
    response = _change_user(client, app, "admin-users-reset", user_id)
    assert "will receive a new invitation" in response.get_data(as_text=True)
    conn.execute("UPDATE users SET password_hash = '!' WHERE id = %s", (user_id,))
    response = _change_user(client, app, "admin-users-reset", user_id)
    assert "will receive a link to reset their password" in response.get_data(as_text=True)
    assert _user_row(conn, email)["password_hash"] == "!"  # unchanged until the link is used
    subjects = [row["subject"] for row in conn.execute(
        "SELECT subject FROM email_outbox WHERE recipient = %s ORDER BY id", (email,))]
    assert subjects == ["[Kilowatch] Your Kilowatch account: choose your password"] * 2 + [
        "[Kilowatch] Reset your Kilowatch password"]
    actions = [row["action"] for row in conn.execute(
        "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (f"user:{user_id}",))]
    assert actions == ["user.create", "user.send_invitation", "user.set_role", "user.deactivate",
                       "user.activate", "user.send_invitation", "user.send_reset"]
    role_change = conn.execute("SELECT before, after FROM audit_log WHERE target = %s AND "
                               "action = 'user.set_role'", (f"user:{user_id}",)).fetchone()
    assert (role_change["before"]["role"], role_change["after"]["role"]) == ("viewer", "operator")


@pytest.mark.parametrize("button", ["admin-users-save-role", "admin-users-deactivate",
                                    "admin-users-reset"])
def test_admin_cannot_touch_another_company_user(app, conn, tenants, button):
    before = _user_row(conn, tenants.b.viewer.email)
    response = _change_user(_as(app, tenants.a.admin), app, button, tenants.b.viewer.id,
                            "admin")
    assert response.status_code == 204
    assert _user_row(conn, tenants.b.viewer.email) == before


def test_admin_cannot_promote_to_superadmin(app, conn, tenants):
    response = _change_user(_as(app, tenants.a.admin), app, "admin-users-save-role",
                            tenants.a.operator.id, "superadmin")
    assert "platform staff" in response.get_data(as_text=True)
    assert _user_row(conn, tenants.a.operator.email)["role"] == "operator"


def test_garbage_ids_get_a_message_not_a_crash(app, tenants):
    response = _change_user(_as(app, tenants.a.admin), app, "admin-users-deactivate",
                            "1; DROP TABLE users")
    assert response.status_code == 200
    assert "not a valid user" in response.get_data(as_text=True)


# --- groups ------------------------------------------------------------------------------------


def _group_action(client, app, button, **values):
    data = {f"{button}.n_clicks": 1, "admin-groups-changed.data": 0}
    data.update({f"admin-groups-{name}.value": value for name, value in values.items()})
    return call_callback(client, app, "admin-groups-message.children", data,
                         triggered=f"{button}.n_clicks")


def test_admin_creates_a_group_grants_a_site_and_adds_a_member(app, conn, tenants):
    client = _as(app, tenants.a.admin)
    response = _group_action(client, app, "admin-groups-create", company=str(tenants.a.id),
                             name="Night shift")
    assert "Group Night shift created." in response.get_data(as_text=True)
    group_id = conn.execute("SELECT id FROM groups WHERE name = 'Night shift'").fetchone()["id"]
    response = _group_action(client, app, "admin-groups-save", selected=str(group_id),
                             sites=[tenants.a.sites[1]], members=[tenants.a.viewer.id])
    assert "Group saved." in response.get_data(as_text=True)
    shown = call_callback(client, app, "admin-groups-sites.value",
                          {"admin-groups-selected.value": str(group_id)}).get_json()["response"]
    assert shown["admin-groups-sites"]["value"] == [tenants.a.sites[1]]
    assert shown["admin-groups-members"]["value"] == [tenants.a.viewer.id]
    assert {o["value"] for o in shown["admin-groups-sites"]["options"]} == set(tenants.a.sites)
    _group_action(client, app, "admin-groups-save", selected=str(group_id), sites=[], members=[])
    assert conn.execute("SELECT count(*) AS n FROM group_sites WHERE group_id = %s",
                        (group_id,)).fetchone()["n"] == 0


def test_admin_cannot_see_or_change_another_company_group(app, conn, tenants):
    client = _as(app, tenants.a.admin)
    shown = call_callback(client, app, "admin-groups-sites.value",
                          {"admin-groups-selected.value": str(tenants.b.group_id)})
    assert shown.status_code == 204
    response = _group_action(client, app, "admin-groups-save", selected=str(tenants.b.group_id),
                             sites=[tenants.b.sites[1]], members=[])
    assert response.status_code == 204
    assert conn.execute("SELECT count(*) AS n FROM group_sites WHERE group_id = %s",
                        (tenants.b.group_id,)).fetchone()["n"] == 1


def test_admin_cannot_grant_another_company_site_to_own_group(app, conn, tenants):
    client = _as(app, tenants.a.admin)
    response = _group_action(client, app, "admin-groups-save", selected=str(tenants.a.group_id),
                             sites=[tenants.a.sites[0], tenants.b.sites[0]],
                             members=[tenants.a.viewer.id, tenants.a.operator.id])
    assert "does not belong to the group's company" in response.get_data(as_text=True)
    granted = [row["site_id"] for row in conn.execute(
        "SELECT site_id FROM group_sites WHERE group_id = %s", (tenants.a.group_id,))]
    assert granted == [tenants.a.sites[0]]
