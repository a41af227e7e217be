"""Device ratings are finite positive numbers, in ``fleet.register_device`` and in the database."""

from __future__ import annotations

import math

import psycopg
import pytest
from psycopg import sql

from kilowatch import fleet
from kilowatch.access import system_scope


@pytest.fixture(scope="module")
def site_id(settings) -> int:
    """A site of a company of this module's own database."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        company_id = fleet.create_company(conn, system_scope("test"), "Ratings")
        return fleet.create_site(conn, system_scope("test"), company_id=company_id,
                                 name="Yard", timezone="UTC")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 0, -5.0, True, "50"])
@pytest.mark.parametrize("field", ["rated_power_kw", "capacity_kwh"])
def test_register_device_refuses_ratings_that_are_not_finite_positive(conn, site_id, field,
                                                                      value):
    with pytest.raises(fleet.FleetError, match="positive finite number"):
        fleet.register_device(conn, system_scope("test"), site_id=site_id, serial="R-1",
                              model="HES-L", **{field: value})
    assert conn.execute("SELECT count(*) AS n FROM devices WHERE serial = 'R-1'"
                        ).fetchone()["n"] == 0


def test_register_device_keeps_a_finite_rating(conn, site_id):
    device_id = fleet.register_device(conn, system_scope("test"), site_id=site_id,
                                      serial="R-2", model="HES-L", rated_power_kw=50,
                                      capacity_kwh=100.5)
    row = conn.execute("SELECT rated_power_kw, capacity_kwh FROM devices WHERE id = %s",
                       (device_id,)).fetchone()
    assert (row["rated_power_kw"], row["capacity_kwh"]) == (50.0, 100.5)


@pytest.mark.parametrize("value", ["NaN", "Infinity"])
@pytest.mark.parametrize("column", ["rated_power_kw", "capacity_kwh"])
def test_the_database_refuses_ratings_that_are_not_finite(conn, site_id, column, value):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(sql.SQL("INSERT INTO devices (site_id, serial, model, {}) "
                             "VALUES (%s, 'R-3', 'HES-L', %s::float8)").format(
            sql.Identifier(column)), (site_id, value))
