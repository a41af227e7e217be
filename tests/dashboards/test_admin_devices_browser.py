"""Browser journey: a superadmin adds a site, registers a device on it, reads its code once, the
device activates with it, and the superadmin revokes it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

SCREENSHOTS = "/tmp/kilowatch-screenshots"
SERIAL = "BROWSER-HES-1"
SITE = "Browser depot"


def _create_site(page, base_url: str) -> None:
    page.goto(f"{base_url}/admin/sites")
    page.select_option("#admin-sites-company", label="Company A")
    page.fill("#admin-sites-name", SITE)
    page.fill("#admin-sites-address", "2 Dock Road, Brest")
    page.fill("#admin-sites-latitude", "48.39")
    page.fill("#admin-sites-longitude", "-4.48")
    page.fill("#admin-sites-timezone", "Europe/Paris")
    page.fill("#admin-sites-contact-name", "Dock Office")
    page.fill("#admin-sites-contact-email", "dock office at example")
    page.click("#admin-sites-create")
    page.locator("#admin-sites-contact-email-error", has_text="is not an e-mail").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/admin-sites-field-error.png", full_page=True)
    page.fill("#admin-sites-contact-email", "dock@example.com")
    page.click("#admin-sites-create")
    page.get_by_text(f"Site {SITE} created.").wait_for()
    page.locator("#admin-sites-list").get_by_text("dock@example.com").wait_for()
    assert page.locator("#admin-sites-contact-email-error").inner_text() == ""


def _register(page, base_url: str) -> str:
    page.goto(f"{base_url}/admin/devices")
    page.select_option("#admin-devices-company", label="Company A")
    page.locator("#admin-devices-site-id option", has_text=SITE).wait_for(state="attached")
    page.select_option("#admin-devices-site-id", label=SITE)
    page.fill("#admin-devices-serial", SERIAL)
    page.select_option("#admin-devices-model", "HES-XL")
    page.fill("#admin-devices-rated-power-kw", "100")
    page.fill("#admin-devices-capacity-kwh", "215")
    page.click("#admin-devices-register")
    code = page.locator("#admin-devices-code")
    code.wait_for()
    return code.inner_text().strip()


def _activate(base_url: str, code: str) -> tuple[int, dict]:
    """Post the device's activation request as the equipment would; return (status, body)."""
    body = json.dumps({"serial": SERIAL, "activation_code": code, "firmware": "3.2.1"}).encode()
    request = urllib.request.Request(f"{base_url}/api/device/activate", data=body,  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def test_superadmin_onboards_a_device_and_revokes_it(live_server, page, conn, tenants):
    browser_login(page, live_server, tenants.superadmin.email, tenants.superadmin.password)
    page.set_viewport_size({"width": 1400, "height": 1000})
    _create_site(page, live_server)
    code = _register(page, live_server)
    row = page.locator(f"#admin-devices-row-{SERIAL}")
    row.get_by_text("registered").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/admin-devices-code.png", full_page=True)
    assert len(code.replace("-", "")) == 20
    device = conn.execute("SELECT d.*, s.name AS site_name, s.company_id FROM devices d "
                          "JOIN sites s ON s.id = d.site_id WHERE serial = %s",
                          (SERIAL,)).fetchone()
    assert (device["site_name"], device["company_id"]) == (SITE, tenants.a.id)
    assert device["activation_code_hash"]

    page.locator("#admin-devices-code-alert .btn-close").click()  # dismissed: gone for good
    page.locator("#admin-devices-code").wait_for(state="detached")

    # The code read off the screen activates the device on the same web server, once.
    assert _activate(live_server, code)[0] == 200
    assert _activate(live_server, code)[0] == 401
    page.reload()
    page.locator(f"#admin-devices-row-{SERIAL} .kw-device-state", has_text="activated"
                 ).wait_for()
    page.locator(f"#admin-devices-row-{SERIAL}").get_by_text("3.2.1").wait_for()
    assert code not in page.content()

    page.locator(f"#admin-devices-row-{SERIAL}").get_by_role("button", name="Revoke").click()
    dialog = page.locator("#admin-devices-confirm-modal")
    dialog.get_by_text(f"Revoke {SERIAL}?").wait_for()
    page.screenshot(path=f"{SCREENSHOTS}/admin-devices-confirm.png")
    assert conn.execute("SELECT revoked_at FROM devices WHERE serial = %s", (SERIAL,)
                        ).fetchone()["revoked_at"] is None  # nothing happens before confirming
    page.click("#admin-devices-confirm")
    page.get_by_text(f"{SERIAL} is revoked").wait_for()
    page.locator(f"#admin-devices-row-{SERIAL} .kw-device-state", has_text="revoked").wait_for()
    dialog.wait_for(state="hidden")
    page.screenshot(path=f"{SCREENSHOTS}/admin-devices-revoked.png", full_page=True)
    revoked = conn.execute("SELECT * FROM devices WHERE serial = %s", (SERIAL,)).fetchone()
    assert revoked["revoked_at"] is not None and revoked["credential_nonce"] is None
    actions = [r["action"] for r in conn.execute(
        "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (f"device:{device['id']}",))]
    assert actions == ["device.register", "device.activation_code", "device.activate",
                       "device.activation_refused", "device.revoke"]
