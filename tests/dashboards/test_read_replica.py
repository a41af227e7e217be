"""KILOWATCH_DATABASE_READ_URL: the web app's read-only savings views read from the replica."""

from __future__ import annotations

import dataclasses
import json

import psycopg
import pytest

from kilowatch import fleet
from kilowatch.access import system_scope
from tests.conftest import create_database, drop_database
from tests.dashboards.conftest import call_callback, finish_setup, login


@pytest.fixture(scope="module")
def replica_url(template_db):
    """A second database standing in for a replica: it holds only a site of its own."""
    url = create_database(template_db)
    with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        company = fleet.create_company(conn, system_scope("test"), "Replica Co")
        fleet.create_site(conn, system_scope("test"), company_id=company,
                          name="Only on the replica", timezone="UTC")
    yield url
    drop_database(url)


def _fleet_month(app, account) -> str:
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    response = call_callback(client, app, "fleet-savings-table-slot.children",
                             {"fleet-savings-month.value": "2026-09"})
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return json.dumps(response.get_json())


def test_the_fleet_savings_view_reads_the_replica_when_there_is_one(settings, tenants,
                                                                   replica_url):
    from dashboards.app import create_app

    primary = create_app(settings)
    finish_setup(primary)
    assert "Company A site 1" in _fleet_month(primary, tenants.superadmin)
    replicated = create_app(dataclasses.replace(settings, database_read_url=replica_url))
    finish_setup(replicated)
    text = _fleet_month(replicated, tenants.superadmin)
    assert "Only on the replica" in text and "Company A site 1" not in text
