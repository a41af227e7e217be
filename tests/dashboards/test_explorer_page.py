"""Point explorer: admins and support only; every site or device id is checked against the scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.dashboards import forging, seed
from tests.dashboards.conftest import call_callback, dash_post, login


@pytest.fixture(scope="module")
def devices(tenants, settings):
    """A device with history on A's first site and one on B's."""
    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = seed.register(conn, tenants.a.sites[0], "EXPL-A1")
        b = seed.register(conn, tenants.b.sites[0], "EXPL-B1")
        seed.seed_history(conn, a, days=2)
        seed.seed_history(conn, b, days=2)
    return {"a": a, "b": b}


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _plot(client, app, device_id, points=("bms.soc",), range_key="7d", start=None, end=None):
    return call_callback(client, app, "explorer-graph.figure", {
        "explorer-device.value": device_id, "explorer-points.value": list(points),
        "explorer-range.value": range_key, "explorer-custom.start_date": start,
        "explorer-custom.end_date": end})


def test_admin_lists_devices_and_points_then_plots(app, tenants, devices):
    client = _as(app, tenants.a.admin)
    listing = call_callback(client, app, "explorer-device.options",
                            {"explorer-site.value": tenants.a.sites[0]})
    assert listing.status_code == 200
    assert "EXPL-A1" in listing.get_data(as_text=True)
    points = call_callback(client, app, "explorer-points.options",
                           {"explorer-device.value": devices["a"]})
    assert "bms.cell_v_max" in points.get_data(as_text=True)
    plot = _plot(client, app, devices["a"], ("bms.soc", "pcs.p"))
    payload = plot.get_json()["response"]
    assert [t["name"] for t in payload["explorer-graph"]["figure"]["data"]] == [
        "EXPL-A1 bms.soc", "EXPL-A1 pcs.p"]
    assert payload["explorer-resolution"]["children"].startswith("Resolution: 10 min")
    assert len(plot.get_data()) < 200_000


def test_support_reads_any_company(app, tenants, devices):
    assert _plot(_as(app, tenants.support), app, devices["b"]).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_are_refused(app, tenants, devices, role):
    client = _as(app, getattr(tenants.a, role))
    assert _plot(client, app, devices["a"]).status_code == 403
    listing = call_callback(client, app, "explorer-device.options",
                            {"explorer-site.value": tenants.a.sites[0]})
    assert listing.status_code == 403


def test_forged_ids_of_another_company_are_refused(app, tenants, devices):
    client = _as(app, tenants.a.admin)
    listing = call_callback(client, app, "explorer-device.options",
                            {"explorer-site.value": tenants.b.sites[0]})
    assert listing.status_code == 204
    points = call_callback(client, app, "explorer-points.options",
                           {"explorer-device.value": devices["b"]})
    assert points.status_code == 204
    plot = _plot(client, app, devices["b"])
    assert plot.status_code == 204
    assert b"EXPL-B1" not in listing.get_data() + points.get_data() + plot.get_data()


@pytest.mark.parametrize("forged", ["x", None, -1, True, 2**40, "²", "٣"])
def test_malformed_device_ids_give_no_update(app, tenants, devices, forged):
    response = _plot(_as(app, tenants.a.admin), app, forged)
    assert response.status_code in (204, 400)


def test_bad_point_names_draw_a_message(app, tenants, devices):
    response = _plot(_as(app, tenants.a.admin), app, devices["a"], ("no.such.point", 5))
    assert response.status_code == 200
    assert "No data" in response.get_data(as_text=True)


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-13-45", "yesterday", "pick valid days"),
    (5, 6, "pick valid days"),
    ("9999-12-31", "9999-12-31", "between 1970 and 2100"),
    ("0001-01-01", "0001-01-01", "between 1970 and 2100"),
])
def test_bad_custom_dates_draw_a_message(app, tenants, devices, start, end, message):
    response = _plot(_as(app, tenants.a.admin), app, devices["a"], range_key="custom",
                     start=start, end=end)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    figure = response.get_json()["response"]["explorer-graph"]["figure"]
    assert message in figure["layout"]["annotations"][0]["text"]


def test_the_shared_range_picker_shows_custom_days_only_for_custom(app, tenants):
    toggle = app.callback_map["explorer-custom-col.style"]
    assert toggle["inputs"] == [{"id": "explorer-range", "property": "value"}]
    assert toggle.get("callback") is None, "runs in the browser"


@pytest.mark.parametrize("search", ["?site=%C2%B2", "?site=99999999999", "?site=1&site=2",
                                    "?device=%C2%B2", "?device=-1", "?device=1&device=2",
                                    "?site=%7B%7D&device=%5B1%5D"])
def test_a_link_with_a_bad_site_or_device_still_shows_the_explorer(app, tenants, devices,
                                                                   search):
    response = call_callback(_as(app, tenants.a.admin), app, "_pages_content.children",
                             {"_pages_location.pathname": "/explorer",
                              "_pages_location.search": search})
    assert response.status_code == 200
    assert "explorer-graph" in response.get_data(as_text=True)


def _real_value(tenants, devices):
    today = datetime.now(UTC).date()
    values = {"explorer-site.value": tenants.a.sites[0], "explorer-device.value": devices["a"],
              "explorer-points.value": ["bms.soc", "pcs.p"], "explorer-range.value": "custom",
              "explorer-custom.start_date": (today - timedelta(days=1)).isoformat(),
              "explorer-custom.end_date": today.isoformat()}
    return lambda _key, d: values.get(f"{d['id']}.{d['property']}")


def test_every_callback_answers_real_values(app, tenants, devices):
    client, real = _as(app, tenants.a.admin), _real_value(tenants, devices)
    for key, entry in forging.server_callbacks(app, "explorer-"):
        response = dash_post(client, key, [{**d, "value": real(key, d)} for d in entry["inputs"]],
                             [{**d, "value": real(key, d)} for d in entry["state"]])
        assert response.status_code == 200, key


def test_every_callback_survives_one_forged_value_beside_real_ones(app, tenants, devices):
    failures = forging.forge_each_input(_as(app, tenants.a.admin), app, "explorer-",
                                        _real_value(tenants, devices))
    assert not failures, "\n".join(failures)


def test_every_callback_survives_forged_values_everywhere(app, tenants, devices):
    failures = forging.forge_all_inputs(_as(app, tenants.support), app, "explorer-")
    assert not failures, "\n".join(failures)
