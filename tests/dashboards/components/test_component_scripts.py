"""A web worker is fully set up before its first request.

Dash sets itself up on a process's first request, and marks that done before it
has finished: under gunicorn's threads, the requests racing with the first one
(the page's ~20 script loads) saw no registered scripts (404) and an incomplete
callback map. ``create_app`` therefore finishes the setup at start-up.
"""

from __future__ import annotations

import re

from dashboards.app import create_app
from tests.dashboards.conftest import login


def test_a_fresh_worker_knows_every_script_and_callback_before_any_request(app, tenants,
                                                                          settings):
    first = app.server.test_client()
    login(first, tenants.a.admin.email, tenants.a.admin.password)
    page = first.get("/").get_data(as_text=True)
    sources = re.findall(r'src="/_dash-component-suites/([^/"]+)/([^"?]+)', page)
    assert sources, "the page lists no component scripts"

    fresh = create_app(settings)  # a worker that has served nothing yet
    registered = {(package, re.sub(r"\.v[\d_a-z]+m\d+\.", ".", path))
                  for package, paths in fresh.registered_paths.items() for path in paths}
    listed = {(package, re.sub(r"\.v[\d_a-z]+m\d+\.", ".", path)) for package, path in sources}
    assert listed <= registered, listed - registered
    assert set(fresh.callback_map) == set(app.callback_map)
