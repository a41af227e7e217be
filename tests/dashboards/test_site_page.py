"""Site page: its layout and every callback, for the right user and for forged requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.dashboards import forging, seed
from tests.dashboards.conftest import call_callback, dash_post, login

RANGE = {"site-tabs.active_tab": "power", "site-range.value": "today",
         "site-custom.start_date": None, "site-custom.end_date": None}


@pytest.fixture(scope="module")
def devices(tenants, settings):
    """A device with history and live values on company A's first site and on B's."""
    import psycopg

    with psycopg.connect(settings.database_url, autocommit=True,
                         row_factory=psycopg.rows.dict_row) as conn:
        a = seed.register(conn, tenants.a.sites[0], "PAGE-A1")
        b = seed.register(conn, tenants.b.sites[0], "PAGE-B1")
        seed.seed_history(conn, a, days=2)
        seed.seed_history(conn, b, days=2, scale=3.0)
    seed.publish_live(a, seed.live_values())
    seed.publish_live(b, seed.live_values(scale=7.0))
    return {"a": a, "b": b}


def _as(app, account):
    client = app.server.test_client()
    assert login(client, account.email, account.password).status_code == 302
    return client


def _page(client, app, path: str) -> str:
    response = call_callback(client, app, "_pages_content.children",
                             {"_pages_location.pathname": path, "_pages_location.search": ""})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_viewer_opens_their_granted_site(app, tenants, devices):
    text = _page(_as(app, tenants.a.viewer), app, f"/site/{tenants.a.sites[0]}")
    assert "Company A site 1" in text and "PAGE-A1" in text
    assert "site-power-graph" in text and "kw-not-allowed" not in text


@pytest.mark.parametrize("path_site", ["b0", "a1"])
def test_viewer_gets_not_allowed_for_other_sites(app, tenants, devices, path_site):
    site = tenants.b.sites[0] if path_site == "b0" else tenants.a.sites[1]
    text = _page(_as(app, tenants.a.viewer), app, f"/site/{site}")
    assert "kw-not-allowed" in text and "PAGE-B1" not in text


@pytest.mark.parametrize("path", ["/site/abc", "/site/²", "/site/99999999999", "/site/0"])
def test_non_numeric_or_out_of_range_site_is_not_found(app, tenants, path):
    assert "kw-not-found" in _page(_as(app, tenants.a.admin), app, path)


def test_live_callback_sums_the_site_devices(app, tenants, devices):
    response = call_callback(_as(app, tenants.a.viewer), app, "site-flow.figure",
                             {"site-id.data": tenants.a.sites[0]})
    assert response.status_code == 200
    body = json.dumps(response.get_json())
    assert "20.0 kW" in body  # PV
    assert "Discharging" in body and "Importing" in body
    assert "PAGE-A1" in body


def _power(app, account, site_id, range_key):
    response = call_callback(_as(app, account), app, "site-power-graph.figure",
                             {"site-id.data": site_id, **RANGE, "site-range.value": range_key})
    assert response.status_code == 200
    assert len(response.get_data()) < 200_000
    return response.get_json()["response"]


def test_today_is_drawn_per_minute_and_seven_days_per_ten_minutes(app, tenants, devices):
    today = _power(app, tenants.a.viewer, tenants.a.sites[0], "today")
    assert today["site-resolution"]["children"] == "Resolution: 1 min"
    week = _power(app, tenants.a.viewer, tenants.a.sites[0], "7d")
    assert week["site-resolution"]["children"] == "Resolution: 10 min"
    figure = week["site-power-graph"]["figure"]
    assert [t["name"] for t in figure["data"]] == [
        "PV", "Consumption", "Grid (+ import)", "Battery (+ discharge)"]


@pytest.mark.parametrize("output", ["site-battery-graph.figure", "site-health-graph.figure",
                                    "site-energy-graph.figure",
                                    "site-energy-months-graph.figure"])
def test_each_tab_draws_its_chart(app, tenants, devices, output):
    tab = output.split("-")[1]
    response = call_callback(_as(app, tenants.a.viewer), app, output,
                             {"site-id.data": tenants.a.sites[0], **RANGE,
                              "site-tabs.active_tab": tab, "site-range.value": "30d"})
    assert response.status_code == 200
    assert len(response.get_data()) < 200_000
    figure = response.get_json()["response"][output.split(".")[0]]["figure"]
    assert figure["data"], f"{output} drew nothing"


CALLBACK_OUTPUTS = ["site-flow.figure", "site-power-graph.figure", "site-battery-graph.figure",
                    "site-health-graph.figure", "site-energy-graph.figure",
                    "site-energy-months-graph.figure"]


@pytest.mark.parametrize("output", CALLBACK_OUTPUTS)
def test_forged_site_id_of_another_company_is_refused(app, tenants, devices, output):
    tab = {"site-battery-graph.figure": "battery", "site-health-graph.figure": "health",
           "site-energy-graph.figure": "energy",
           "site-energy-months-graph.figure": "energy"}.get(output, "power")
    client = _as(app, tenants.a.viewer)
    for forged in (tenants.b.sites[0], tenants.a.sites[1], 999_999):
        response = call_callback(client, app, output, {
            "site-id.data": forged, **RANGE, "site-tabs.active_tab": tab})
        assert response.status_code == 204, (output, forged)
        assert b"PAGE-B1" not in response.get_data()


@pytest.mark.parametrize("forged", ["1; DROP TABLE sites", None, {"id": 1}, -5, "²", 2**40,
                                    True, 1.5])
def test_malformed_site_ids_give_no_update(app, tenants, devices, forged):
    response = call_callback(_as(app, tenants.a.admin), app, "site-flow.figure",
                             {"site-id.data": forged})
    assert response.status_code in (204, 400)


def _custom(app, account, site_id, start, end, output="site-power-graph.figure"):
    tab = output.split("-")[1] if output != "site-power-graph.figure" else "power"
    return call_callback(_as(app, account), app, output, {
        "site-id.data": site_id, **RANGE, "site-tabs.active_tab": tab,
        "site-range.value": "custom", "site-custom.start_date": start,
        "site-custom.end_date": end})


def _shown_message(response, graph: str) -> str:
    """The message drawn in place of the chart (it is also the resolution line)."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    payload = response.get_json()["response"]
    assert payload[graph]["figure"]["data"] == []
    return payload[graph]["figure"]["layout"]["annotations"][0]["text"]


@pytest.mark.parametrize(("start", "end", "message"), [
    ("2026-13-45", "yesterday", "pick valid days"),
    (5, 6, "pick valid days"),  # a forged number where the picker sends a string
    (["2026-01-01"], {"a": 1}, "pick valid days"),
    ("9999-12-31", "9999-12-31", "between 1970 and 2100"),
    ("0001-01-01", "0001-01-01", "between 1970 and 2100"),
    ("2026-02-01", "2026-01-01", "the last not before the first"),
])
def test_bad_custom_dates_give_a_message_not_a_traceback(app, tenants, devices, start, end,
                                                         message):
    response = _custom(app, tenants.a.viewer, tenants.a.sites[0], start, end)
    assert message in _shown_message(response, "site-power-graph")
    assert message in response.get_json()["response"]["site-resolution"]["children"]


@pytest.mark.parametrize("start", forging.EXTREME_DATES)
def test_extreme_first_days_give_a_message(app, tenants, devices, start):
    response = _custom(app, tenants.a.viewer, tenants.a.sites[0], start, "2026-01-01")
    assert any(message in _shown_message(response, "site-power-graph") for message in (
        "between 1970 and 2100", "pick valid days", "the last not before the first"))


@pytest.mark.parametrize("output", ["site-battery-graph.figure", "site-health-graph.figure",
                                    "site-energy-graph.figure"])
def test_extreme_custom_dates_give_a_message_on_every_tab(app, tenants, devices, output):
    response = _custom(app, tenants.a.viewer, tenants.a.sites[0], "9999-12-31", "9999-12-31",
                       output)
    assert "between 1970 and 2100" in _shown_message(response, output.split(".")[0])


def test_support_reads_every_company_site(app, tenants, devices):
    response = call_callback(_as(app, tenants.support), app, "site-flow.figure",
                             {"site-id.data": tenants.b.sites[0]})
    assert response.status_code == 200
    assert "140.0 kW" in json.dumps(response.get_json())  # B's PV at scale 7


def test_the_shared_range_picker_shows_custom_days_only_for_custom(app, tenants):
    text = _page(_as(app, tenants.a.viewer), app, f"/site/{tenants.a.sites[0]}")
    assert '"id":"site-range"' in text and '"id":"site-custom"' in text
    assert '"id":"site-custom-col","style":{"display":"none"}' in text
    toggle = app.callback_map["site-custom-col.style"]
    assert toggle["inputs"] == [{"id": "site-range", "property": "value"}]
    assert toggle.get("callback") is None, "runs in the browser"


def _real_value(site_id):
    today = datetime.now(UTC).date()
    values = {"site-id.data": site_id, "site-range.value": "custom",
              "site-custom.start_date": (today - timedelta(days=1)).isoformat(),
              "site-custom.end_date": today.isoformat(), "site-live-interval.n_intervals": 1}

    def real(key: str, dependency: dict):
        if dependency["property"] == "active_tab":  # the tab whose chart the callback draws
            charts = {"battery": "battery", "health": "health", "energy": "energy",
                      "plan": "plan", "accuracy": "plan"}
            return next((tab for chart, tab in charts.items() if f"site-{chart}-" in key),
                        "power")
        return values.get(f"{dependency['id']}.{dependency['property']}")
    return real


def test_every_callback_answers_real_values(app, tenants, devices):
    client, real = _as(app, tenants.a.viewer), _real_value(tenants.a.sites[0])
    for key, entry in forging.server_callbacks(app, "site-"):
        inputs = [{**d, "value": real(key, d)} for d in entry["inputs"]]
        response = dash_post(client, key, inputs, [{**d, "value": real(key, d)}
                                                   for d in entry["state"]])
        assert response.status_code == 200, key


def test_every_callback_survives_one_forged_value_beside_real_ones(app, tenants, devices):
    failures = forging.forge_each_input(_as(app, tenants.a.viewer), app, "site-",
                                        _real_value(tenants.a.sites[0]))
    assert not failures, "\n".join(failures)


def test_every_callback_survives_forged_values_everywhere(app, tenants, devices):
    failures = forging.forge_all_inputs(_as(app, tenants.a.admin), app, "site-")
    assert not failures, "\n".join(failures)
