"""What the Energy tab and the fleet table show for counters that start mid-day or are reset.

A PV counter first reads 340,000 kWh at noon two days ago (local), is reset to
zero after its 08:00 reading yesterday, and runs at 2 kW throughout, read every
minute until now: the bars, the range's PV figure and the fleet table's "today"
show what the counter advanced, never its value.
"""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from kilowatch.redis_client import get_redis
from kilowatch.telemetry import live
from tests.dashboards import seed
from tests.dashboards.conftest import call_callback, login
from tests.kilowatch.telemetry.helpers import HOUR, MINUTE, counter, roll_up, store

PARIS = ZoneInfo("Europe/Paris")
KW = 2.0


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(UTC).astimezone(PARIS).date()
    return datetime.combine(today - timedelta(days=days_ago), time(), PARIS).astimezone(UTC)


@pytest.fixture(scope="module")
def meter(tenants, settings):
    """The PV counter of A's first site, rolled up and live (see the module)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first = _midnight(2) + 12 * HOUR
    reset = _midnight(1) + 8 * HOUR
    readings = (counter(lambda m: KW, first, reset + MINUTE, MINUTE, first=340_000.0)
                + counter(lambda m: KW, reset, now, MINUTE, offset=MINUTE))
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        device = seed.register(conn, tenants.a.sites[0], "ENERGY-1", model="meter")
        store(conn, device, {"meter.pv.e": readings})
        roll_up(conn, [device], first, now - HOUR)  # the last hour is not closed yet
    last_time, last_value = readings[-1]
    live.LiveWriter(get_redis()).write({device: (last_time, 1, {"meter.pv.e": last_value})},
                                       last_seen=now.timestamp(), committed_at=now.timestamp())
    return {"first": first, "last": last_time}


def _client(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _bars(figure) -> dict[str, np.ndarray]:
    return {t["name"]: np.frombuffer(base64.b64decode(t["y"]["bdata"]), dtype=t["y"]["dtype"])
            for t in figure["data"]}


def test_energy_tab_bars_and_figures_show_what_the_counter_advanced(app, tenants, meter):
    response = call_callback(_client(app, tenants.a.viewer), app, "site-energy-graph.figure", {
        "site-id.data": tenants.a.sites[0], "site-tabs.active_tab": "energy",
        "site-range.value": "7d"})
    assert response.status_code == 200
    body = response.get_json()["response"]
    pv = _bars(body["site-energy-graph"]["figure"])["PV production"]
    hours = [(_midnight(1) - meter["first"]) / HOUR, (_midnight(0) - _midnight(1)) / HOUR,
             (meter["last"] - _midnight(0)) / HOUR]
    assert list(pv[-3:]) == pytest.approx([KW * h for h in hours], abs=0.01)
    assert np.isnan(pv[:-3]).all()  # days before the counter's first reading: no bar
    assert max(pv[-3:]) < 100
    shown = str(body["site-energy-ratios"]["children"])
    # Shown rounded to the kWh: within half a kWh (81.5 may show as 81 or 82).
    totals = [float(v.replace(",", "")) for v in re.findall(r"(\d[\d,]*(?:\.\d+)?) kWh", shown)]
    assert any(abs(total - KW * sum(hours)) <= 0.51 for total in totals), shown
    assert "340" not in shown


def test_fleet_table_today_is_what_the_counter_advanced_since_midnight(app, tenants, meter):
    response = call_callback(_client(app, tenants.a.admin), app, "fleet-grid.getRowsResponse",
                             {"fleet-grid.getRowsRequest": {"startRow": 0, "endRow": 100},
                              "fleet-filter.value": "all"})
    assert response.status_code == 200
    grid = response.get_json()["response"]["fleet-grid"]["getRowsResponse"]
    row = next(r for r in grid["rowData"]
               if r["row_id"] == str(tenants.a.sites[0]))
    assert row["pv_kwh"] == pytest.approx(KW * (meter["last"] - _midnight(0)) / HOUR, abs=0.05)
