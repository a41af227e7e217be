"""Browser journey: a larger fleet loads by windows, searches, sorts and opens a site."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

from tests.dashboards import seed
from tests.dashboards.conftest import browser_login

pytestmark = pytest.mark.browser

SCREENSHOTS = Path("/tmp/kilowatch-screenshots")
EXTRA = 230  # beyond the grid's first window of 100 rows


@pytest.fixture(scope="module")
def fleet(tenants, settings):
    """Company A gets EXTRA more sites, one device each; every 10th is offline."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("INSERT INTO sites (company_id, name, timezone) SELECT %s, "
                     "'Plant ' || lpad(g::text, 3, '0'), 'Europe/Paris' "
                     "FROM generate_series(1, %s) g", (tenants.a.id, EXTRA))
        sites = conn.execute("SELECT id, name FROM sites WHERE name LIKE 'Plant %%' "
                             "ORDER BY name").fetchall()
        for n, site in enumerate(sites):
            device = seed.register(conn, site["id"], f"PLANT-{n}")
            conn.execute("UPDATE devices SET online = %s, last_seen = now() WHERE id = %s",
                         (n % 10 != 3, device))
            seed.publish_live(device, seed.live_values(), online=n % 10 != 3)
    return sites


_SHOWN = """() => [...document.querySelectorAll('#fleet-grid .ag-center-cols-container .ag-row')]
    .sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))
    .map(row => row.querySelector('.kw-cell-site')?.innerText || '')"""


def _wait_for_rows(page, names: list[str]) -> None:
    """Wait until the grid shows exactly ``names``, in this order."""
    page.wait_for_function(f"(names) => JSON.stringify(({_SHOWN})()) == JSON.stringify(names)",
                           arg=names)


def test_admin_scrolls_searches_sorts_and_opens_a_site(live_server, browser, tenants, fleet):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    browser_login(page, live_server, tenants.a.admin.email, tenants.a.admin.password)
    total = EXTRA + len(tenants.a.sites)
    page.locator("#fleet-kpi-sites").get_by_text(str(total)).wait_for()
    page.locator("#fleet-grid .kw-cell-offline").first.wait_for()  # problems first
    page.screenshot(path=str(SCREENSHOTS / "fleet-grid.png"), full_page=True)
    assert page.locator("#fleet-kpi-offline").inner_text() == str(EXTRA // 10)

    # The last row arrives with a later window, once the grid scrolls to it.
    assert page.get_by_text("Plant 230").count() == 0
    page.evaluate(f"dash_ag_grid.getApi('fleet-grid').ensureIndexVisible({total - 1})")
    page.get_by_text("Plant 230").wait_for()

    # The search runs on the server: only the matching sites remain.
    page.fill("#fleet-search", "Plant 12")
    plants = [f"Plant 12{d}" for d in range(10)]
    _wait_for_rows(page, ["Plant 124", *(p for p in plants if p != "Plant 124")])

    # A click on the Site header sorts by name on the server, then descending.
    page.locator("#fleet-grid .ag-header-cell-text", has_text="Site").click()
    _wait_for_rows(page, plants)
    page.locator("#fleet-grid .ag-header-cell-text", has_text="Site").click()
    _wait_for_rows(page, plants[::-1])

    # The offline view keeps the search: one offline plant among them.
    page.locator("label", has_text="Offline").click()
    _wait_for_rows(page, ["Plant 124"])
    page.screenshot(path=str(SCREENSHOTS / "fleet-grid-search.png"), full_page=True)

    page.get_by_text("Plant 124").click()
    page.wait_for_url(re.compile(r".*/site/\d+$"))
    context.close()
