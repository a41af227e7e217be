"""The app works in Chromium under its Content-Security-Policy: no page trips a violation.

Each page is opened in headless Chromium against ``kilowatch web``; a listener
installed before any script runs records every ``securitypolicyviolation``
event. Charts (Plotly), grids (AG Grid, with their JavaScript functions),
clientside callbacks and the forms must all render with none.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.dashboards import alarm_seed, seed
from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__csp.push(`${event.violatedDirective}: ${event.blockedURI} ${event.sample}`);
});
"""


@pytest.fixture(scope="module")
def seeded(tenants, settings):
    """Alarms on company A's sites and two days of history on its first site."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        alarms = alarm_seed.seed_alarms(conn, tenants, prefix="CSP")
        seed.seed_history(conn, alarms.device_a1, days=2)
    return alarms


def _open(page, url: str, selector: str) -> list[str]:
    page.goto(url)
    page.wait_for_selector(selector, state="attached")
    page.wait_for_load_state("networkidle")
    return page.evaluate("window.__csp")


def test_pages_render_without_a_policy_violation(page, live_server, tenants, seeded):
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto(f"{live_server}/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy and "'unsafe-inline'" not in \
        policy.split("script-src")[1].split(";")[0]
    assert page.evaluate("window.__csp") == []
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    site = tenants.a.sites[0]
    pages = {"/": ".ag-row", f"/site/{site}": ".main-svg", "/alarms": ".ag-row",
             f"/alarms/{seeded.critical_a1}": ".main-svg", "/alarm-history": ".ag-row",
             f"/site/{site}/schedule": "#schedule-errors", "/admin/users": ".ag-row,table",
             "/explorer": "#explorer-site"}
    for path, selector in pages.items():
        assert _open(page, live_server + path, selector) == [], path


def test_an_injected_inline_script_does_not_run(page, live_server, tenants, seeded):
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    page.goto(f"{live_server}/")
    page.wait_for_load_state("networkidle")
    ran = page.evaluate("""() => {
        window.__ran = false;
        const script = document.createElement("script");
        script.textContent = "window.__ran = true";
        document.body.appendChild(script);
        return window.__ran;
    }""")
    assert ran is False
