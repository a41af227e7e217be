"""Browser journey: an admin invites a viewer and grants one site; the viewer joins, sees only it.

The invitation goes through the outbox to a real SMTP server in the test; the
viewer opens the link from the received e-mail and chooses a password.
"""

from __future__ import annotations

import pytest

from tests.auth.mail import link_of, mails_to
from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

SCREENSHOTS = "/tmp/kilowatch-screenshots"


def _invite_viewer(page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/admin/users")
    page.fill("#admin-users-email", email)
    page.fill("#admin-users-name", "Browser Viewer")
    page.select_option("#admin-users-new-role", "viewer")
    page.click("#admin-users-create")
    page.get_by_text("An invitation to choose a password is on its way").wait_for()
    page.get_by_text(email).first.wait_for()  # the list refreshed


def _create_group(page, base_url: str, site_name: str, member_email: str) -> None:
    page.goto(f"{base_url}/admin/groups")
    page.fill("#admin-groups-name", "Browser group")
    page.click("#admin-groups-create")
    page.get_by_text("Group Browser group created.").wait_for()
    page.select_option("#admin-groups-selected", label="Browser group")
    page.get_by_label(site_name, exact=True).check()
    page.get_by_label(f"{member_email} (viewer)", exact=True).check()
    page.click("#admin-groups-save")
    page.get_by_text("Group saved.").wait_for()
    page.locator("#admin-groups-list").get_by_text("Browser group").wait_for()


def test_admin_invites_a_viewer_who_joins_and_sees_only_the_granted_site(
        live_server, browser, tenants, settings, smtp):
    admin_context = browser.new_context(viewport={"width": 1280, "height": 900})
    admin_page = admin_context.new_page()
    admin_page.set_default_timeout(20_000)
    browser_login(admin_page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    admin_page.locator("#fleet-grid .kw-cell-site").first.wait_for()
    email = "browser.viewer@a.example.com"
    _invite_viewer(admin_page, live_server, email)
    admin_page.screenshot(path=f"{SCREENSHOTS}/admin-users.png", full_page=True)
    _create_group(admin_page, live_server, "Company A site 2", email)
    admin_page.screenshot(path=f"{SCREENSHOTS}/admin-groups.png", full_page=True)
    admin_context.close()

    context = browser.new_context(viewport={"width": 390, "height": 800})  # a phone
    page = context.new_page()
    page.set_default_timeout(20_000)
    [invitation] = mails_to(settings, smtp, email)
    link = link_of(invitation)
    assert link.startswith(f"{live_server}/account/invitation/")
    page.goto(link)
    assert page.url == f"{live_server}/account/new-password"  # the token left the address bar
    assert page.locator("#link-email").inner_text() == email
    page.fill("#new", "viewer's own password")
    page.fill("#confirm", "viewer's own password")
    page.screenshot(path=f"{SCREENSHOTS}/invitation-choose-password.png")
    page.click("#new-password-submit")
    page.get_by_text("Your password is set. Sign in with it.").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/invitation-password-set.png")
    browser_login(page, live_server, email, "viewer's own password")
    page.goto(link)  # a second use of the link is refused
    page.locator("#link-problem").wait_for()
    assert "already been used" in page.locator("#link-problem").inner_text()
    page.goto(f"{live_server}/")
    sites = page.locator("#fleet-grid .kw-cell-site")
    sites.first.wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/viewer-home.png", full_page=True)
    assert sites.all_inner_texts() == ["Company A site 2"]
    assert page.locator("#nav-admin").count() == 0
    page.goto(f"{live_server}/admin/users")
    page.locator("#kw-not-allowed").wait_for()
    page.click("#nav-user")
    page.locator("#nav-logout").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/user-menu.png")
    page.click("#nav-logout")  # posts the sign-out form with its CSRF token
    page.locator("#login-submit").wait_for()
    page.goto(f"{live_server}/")
    assert "/login" in page.url
    context.close()
