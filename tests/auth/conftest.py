"""Reuse the web-app fixtures of tests/dashboards (see its conftest for the list)."""

from tests.dashboards.conftest import app, browser, client, live_server, page, tenants

__all__ = ["app", "browser", "client", "live_server", "page", "tenants"]
