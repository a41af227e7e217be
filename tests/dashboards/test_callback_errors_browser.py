"""A page update the server could not answer shows one sentence, never a silent page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboards.outage import MESSAGE
from tests.dashboards.conftest import browser_login

SCREENSHOTS = Path("/tmp/kilowatch-screenshots")
BANNER = "#kw-callback-error"
UPDATES = "**/_dash-update-component*"  # Dash adds a query string


@pytest.mark.browser
def test_failed_updates_show_a_banner_that_names_an_outage(live_server, browser, tenants):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    page.locator("#fleet-kpi-sites").wait_for()
    assert page.locator(BANNER).count() == 0  # a page that works shows nothing

    # The server fails the next updates (as an unexpected exception would): 500, no details.
    page.route(UPDATES,
               lambda route: route.fulfill(status=500, body="<!doctype html><p>500</p>"))
    page.fill("#fleet-search", "anything")
    page.locator(BANNER).wait_for()
    assert "Something went wrong on the server" in page.inner_text(BANNER)
    assert "500" not in page.inner_text(BANNER) and "Traceback" not in page.content()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "callback-error.png"))
    page.locator(f"{BANNER} .btn-close").click()
    assert page.locator(BANNER).count() == 0

    # An outage answers 503 with its own sentence, which the banner shows.
    page.unroute(UPDATES)
    page.route(UPDATES, lambda route: route.fulfill(
        status=503, content_type="application/json",
        body=json.dumps({"error": MESSAGE, "status": "unavailable"})))
    page.reload()  # every update of the page's first load now meets the outage
    page.locator(BANNER).wait_for()
    assert page.inner_text(BANNER) == MESSAGE

    # Once the server answers again, the page works and no banner appears.
    page.unroute(UPDATES)
    page.reload()
    page.locator("#fleet-grid .kw-cell-site").first.wait_for()
    assert page.locator(BANNER).count() == 0
    context.close()
