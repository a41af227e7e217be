"""Figure and card builders of the savings pages (pure: data in, figure or component out)."""

from __future__ import annotations

import json
from datetime import date

from dashboards.components.billing import savings_cards as cards
from dashboards.components.billing import savings_charts as charts

ROWS = [
    {"period_start": date(2026, 8, 1), "currency": "EUR", "without_system": 500.0,
     "pv_only": 400.0, "actual": 350.0, "system_savings": 150.0, "storage_savings": 50.0,
     "complete": True},
    {"period_start": date(2026, 9, 1), "currency": "EUR", "without_system": 520.0,
     "pv_only": 410.0, "actual": 340.5, "system_savings": 179.5, "storage_savings": 69.5,
     "complete": False},
]


def _bill(energy, demand, fixed, credit, complete=True, peak=(60.0, "2026-09-02T06:00:00+00:00")):
    return {"energy": energy, "demand": demand, "fixed": fixed, "export_credit": credit,
            "total": round(energy + demand + fixed - credit, 2), "complete": complete,
            "details": {"demand": {"peak_kw": peak[0], "peak_at": peak[1]}},
            "quality": {"complete": complete, "expected_intervals": 2880,
                        "missing_intervals": 0 if complete else 24,
                        "estimated_intervals": 0 if complete else 4,
                        "missing": [] if complete else [["2026-09-11T00:00:00+00:00",
                                                         "2026-09-11T06:00:00+00:00"]],
                        "estimated": [] if complete else [["2026-09-11T06:00:00+00:00",
                                                           "2026-09-11T07:00:00+00:00"]]}}


SUMMARY = {
    "site": "Plant", "timezone": "Europe/Paris", "period": "2026-09", "currency": "EUR",
    "final": True,
    "bills": {"without_system": _bill(400.0, 100.0, 25.0, 0.0),
              "pv_only": _bill(300.0, 80.0, 25.0, 5.0, peak=(50.0, "2026-09-03T06:00:00+00:00")),
              "actual": _bill(250.0, 60.0, 25.0, 6.5, complete=False,
                              peak=(40.0, "2026-09-02T07:00:00+00:00"))},
    "savings": {"system": {"energy": 150.0, "demand": 40.0, "fixed": 0.0, "export_credit": 6.5,
                           "total": 196.5},
                "storage": {"energy": 50.0, "demand": 20.0, "fixed": 0.0, "export_credit": 1.5,
                            "total": 71.5}},
}


def _text(component) -> str:
    return json.dumps(component.to_plotly_json(), default=lambda o: o.to_plotly_json(),
                      ensure_ascii=False)


def test_monthly_bars_are_the_stored_totals_and_incomplete_months_are_marked():
    figure = charts.monthly_bills_figure(ROWS, "EUR")
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["Without system"].y) == [500.0, 520.0]
    assert list(traces["Actual"].y) == [350.0, 340.5]
    assert list(traces["Storage saves"].y) == [50.0, 69.5]
    assert list(traces["Incomplete data"].x) == ["2026-09"]
    assert list(figure.layout.xaxis.categoryarray) == [
        "2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09"]


def test_no_bills_draw_an_explanation():
    figure = charts.monthly_bills_figure([], "EUR")
    assert not figure.data
    assert "assign a tariff" in figure.layout.annotations[0].text


def test_axis_months_cross_the_new_year():
    assert charts.axis_months(["2026-02"], minimum=4) == ["2025-11", "2025-12", "2026-01",
                                                          "2026-02"]
    assert charts.axis_months([]) == []


def test_breakdown_stacks_parts_with_the_export_credit_below_zero():
    figure = charts.breakdown_figure(SUMMARY)
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["Energy"].y) == [400.0, 300.0, 250.0]
    assert list(traces["Export credit"].y) == [-0.0, -5.0, -6.5]
    assert list(traces["Total"].y) == [525.0, 400.0, 328.5]
    assert figure.layout.barmode == "relative"


def test_peak_day_marks_the_peaks_of_that_day_only():
    day = {"timezone": "Europe/Paris", "day": "2026-09-02",
           "intervals": [{"start": "2026-09-02T06:00:00+00:00", "grid_import": 40.0,
                          "grid_export": 0.0, "load": 60.0, "pv": 20.0, "gap": False},
                         {"start": "2026-09-02T06:15:00+00:00", "grid_import": None,
                          "grid_export": None, "load": None, "pv": None, "gap": True}]}
    peaks = charts.peak_day_figure(day, {"without_system": (60.0, "2026-09-02T06:00:00+00:00"),
                                         "actual": (40.0, "2026-09-03T07:00:00+00:00")})
    traces = {trace.name: trace for trace in peaks.data}
    assert list(traces["Load (without system)"].x) == ["2026-09-02 08:00", "2026-09-02 08:15"]
    assert list(traces["Grid import (actual)"].y) == [40.0, None]
    assert list(traces["Peak, without system"].y) == [60.0]
    assert "Peak, actual" not in traces  # another day


def test_cumulative_savings_run_over_the_months():
    figure = charts.cumulative_figure(ROWS, "EUR")
    traces = {trace.name: trace for trace in figure.data}
    assert list(traces["System"].y) == [150.0, 329.5]
    assert list(traces["Storage alone"].y) == [50.0, 119.5]
    card = _text(cards.cumulative_card(ROWS, "EUR"))
    assert "329.50 EUR" in card and "from 2026-08 to 2026-09 (2 months)" in card
    assert "119.50 EUR" in card


def test_fleet_figure_and_table_show_sites_without_bills_as_such():
    rows = [{"site_id": 1, "site_name": "Depot", "company_name": "Acme", "tariff_id": 4,
             "tariff_name": "TOU", "currency": "EUR", "without_system": 500.0, "pv_only": 400.0,
             "actual": 350.0, "system_savings": 150.0, "storage_savings": 50.0,
             "complete": True, "final": True},
            {"site_id": 2, "site_name": "Shop", "company_name": "Acme", "tariff_id": None,
             "tariff_name": None, "currency": None, "without_system": None, "pv_only": None,
             "actual": None, "system_savings": None, "storage_savings": None,
             "complete": None, "final": None}]
    figure = charts.fleet_savings_figure(rows)
    assert list(figure.data[0].y) == ["Depot (EUR)"] and list(figure.data[0].x) == [150.0]
    table = _text(cards.fleet_table(rows, "2026-09"))
    assert "/site/1/savings?month=2026-09" in table and "no tariff" in table
    assert "150.00 EUR" in table
    assert "150.00 EUR saved (storage 50.00 EUR)" in _text(cards.fleet_totals(rows)[0])
    assert charts.fleet_savings_figure(rows[1:]).layout.annotations


def test_breakdown_table_lists_bills_and_savings():
    text = _text(cards.breakdown_table(SUMMARY))
    for value in ("400.00", "328.50", "196.50", "71.50", "incomplete data",
                  "System saves (1 − 3)", "Storage saves (2 − 3)"):
        assert value in text


def test_kpis_and_peak_table():
    kpis = _text(cards.month_kpis(SUMMARY))
    assert "328.50 EUR" in kpis and "196.50 EUR" in kpis and "2026-09, final" in kpis
    peak = _text(cards.peak_table(SUMMARY))
    assert "60.0 kW" in peak and "Wed 02 Sep 2026, 08:00" in peak
    assert "cut the peak by 20.0 kW (33%)" in peak


def test_quality_alert_only_for_incomplete_bills():
    alert = _text(cards.quality_alert(SUMMARY))
    assert "Actual: 24 of 2880 quarter-hours missing, 4 estimated" in alert
    assert "Fri 11 Sep 2026, 02:00 – Fri 11 Sep 2026, 08:00" in alert
    complete = {**SUMMARY, "bills": {s: _bill(1.0, 1.0, 1.0, 0.0) for s in SUMMARY["bills"]}}
    assert cards.quality_alert(complete) is None
