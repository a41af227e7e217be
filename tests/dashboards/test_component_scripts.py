"""A page rendered by one web worker loads its scripts from any other worker."""

from __future__ import annotations

import re

from dashboards.app import create_app
from tests.dashboards.conftest import login


def test_scripts_listed_by_one_worker_are_served_by_a_fresh_one(app, tenants, settings):
    first = app.server.test_client()
    login(first, tenants.a.admin.email, tenants.a.admin.password)
    page = first.get("/").get_data(as_text=True)
    sources = re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)
    assert sources, "the page lists no component scripts"

    fresh = create_app(settings).server.test_client()  # a worker that never rendered a page
    login(fresh, tenants.a.admin.email, tenants.a.admin.password)
    statuses = {src: fresh.get(src).status_code for src in sources}
    assert statuses and all(code == 200 for code in statuses.values()), statuses
