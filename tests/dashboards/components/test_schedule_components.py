"""Pure builders of the schedule page: editor rows, errors by row, timeline, history, preview."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict

import plotly.utils
import pytest

from dashboards.components.schedules import editor, preview_chart, timeline
from dashboards.components.schedules import history as history_view
from kilowatch.schedules import battery
from kilowatch.schedules import model as schedules
from kilowatch.schedules import preview as schedule_preview

PARIS = "Europe/Paris"
LIMITS = schedules.SiteLimits(timezone=PARIS, rated_power_kw=50)
NOW = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)
BODY = {"timezone": PARIS, "default_mode": "idle",
        "periods": [{"days": ["mon", "tue", "wed"], "start": "17:00", "end": "21:00",
                     "mode": "discharge", "power_kw": 40, "soc_min": 20},
                    {"days": ["mon"], "start": "08:00", "end": "10:00", "mode": "charge",
                     "power_kw": 10, "soc_max": 90}],
        "exceptions": [{"date": "2026-12-25", "name": "Christmas", "periods": []},
                       {"date": "2026-12-31", "periods": [
                           {"start": "10:00", "end": "12:00", "mode": "peak_shaving",
                            "grid_limit_kw": 30, "soc_min": 10}]}]}


def _text(component) -> str:
    return json.dumps(component, cls=plotly.utils.PlotlyJSONEncoder, ensure_ascii=False)


def _draft(periods, exceptions=(), mode="idle", params=None):
    return editor.draft(PARIS, mode, params or {}, list(periods), list(exceptions))


# ---- rows --------------------------------------------------------------------------------

def test_each_period_becomes_one_row_per_day_in_week_order():
    rows = editor.period_rows(BODY)
    assert [(r["day"], r["start"]) for r in rows] == [
        ("mon", "08:00"), ("mon", "17:00"), ("tue", "17:00"), ("wed", "17:00")]
    assert rows[1]["power_kw"] == 40 and rows[1]["soc_min"] == 20


def test_rows_join_back_into_the_same_schedule():
    draft = _draft(editor.period_rows(BODY), editor.exception_rows(BODY))
    merged = schedules.validate(draft.merged, LIMITS, now=NOW)
    original = schedules.validate(BODY, LIMITS, now=NOW)
    assert merged["periods"] == sorted(original["periods"], key=lambda p: p["start"])
    assert {**merged, "periods": None} == {**original, "periods": None}


def test_changing_mondays_row_splits_monday_from_the_other_days():
    rows = editor.period_rows(BODY)
    rows[1] = {**rows[1], "start": "18:00", "end": "22:00"}
    periods = _draft(rows).merged["periods"]
    assert [(p["days"], p["start"]) for p in periods] == [
        (["mon"], "08:00"), (["mon"], "18:00"), (["tue", "wed"], "17:00")]


def test_parameters_of_other_modes_and_empty_inputs_are_left_out():
    row = {"day": "fri", "start": " 09:00 ", "end": "10:00", "mode": "charge", "power_kw": 5,
           "soc_max": None, "soc_min": 30, "grid_limit_kw": ""}
    assert _draft([row]).per_row["periods"] == [
        {"days": ["fri"], "start": "09:00", "end": "10:00", "mode": "charge", "power_kw": 5}]


def test_exception_rows_group_by_date_and_all_day_rows_have_no_period():
    rows = editor.exception_rows(BODY)
    assert rows[0] == {"date": "2026-12-25", "name": "Christmas", "start": "", "end": "",
                       "mode": editor.ALL_DAY}
    extra = {"date": "2026-12-31", "name": "", "start": "13:00", "end": "14:00", "mode": "idle"}
    draft = _draft([], [*rows, extra])
    assert [e["date"] for e in draft.per_row["exceptions"]] == ["2026-12-25", "2026-12-31"]
    assert draft.per_row["exceptions"][0]["periods"] == []
    assert len(draft.per_row["exceptions"][1]["periods"]) == 2
    assert draft.exception_groups == [[0], [1, 2]]


def test_copy_a_day_replaces_the_target_days():
    rows = editor.copy_day(editor.period_rows(BODY), "mon", ["tue", "sun", "mon", "xyz"])
    assert [(r["day"], r["start"]) for r in rows] == [
        ("mon", "08:00"), ("mon", "17:00"), ("tue", "08:00"), ("tue", "17:00"),
        ("wed", "17:00"), ("sun", "08:00"), ("sun", "17:00")]


def test_rows_from_posted_values_tolerate_uneven_or_bad_lists():
    rows = editor.rows_from_values({"day": ["mon", "tue"], "start": ["08:00"]}, ("day", "start"))
    assert rows == [{"day": "mon", "start": "08:00"}, {"day": "tue", "start": None}]
    assert editor.rows_from_values({"day": "mon"}, ("day",)) == []
    many = editor.rows_from_values({"day": ["mon"] * 5000}, ("day",))
    assert len(many) == editor.MAX_ROWS + 1


# ---- errors next to rows ------------------------------------------------------------------------

def _errors(periods, exceptions=(), mode="idle", params=None):
    draft = _draft(periods, exceptions, mode, params)
    try:
        schedules.validate(draft.per_row, LIMITS, now=NOW)
    except schedules.ScheduleInvalid as invalid:
        return editor.row_errors(invalid.errors, list(periods), list(exceptions),
                                 draft.exception_groups)
    return editor.row_errors([], list(periods), list(exceptions), draft.exception_groups)


def test_each_problem_is_put_on_its_row_in_plain_words():
    periods = [{"day": "mon", "start": "17:00", "end": "21:00", "mode": "discharge",
                "power_kw": 60, "soc_min": 20},
               {"day": "tue", "start": "9:00", "end": "10:00", "mode": "peak_shaving",
                "soc_min": 20},
               {"day": "wed", "start": "10:00", "end": "09:00", "mode": "idle"}]
    found = _errors(periods)
    assert found.periods[0] == [
        "Power 60 kW is above the site's rated storage power of 50 kW"]
    assert "Start '9:00' is not a time HH:MM from 00:00 to 23:59" in found.periods[1]
    assert "Peak shaving needs grid limit" in found.periods[1]
    assert found.periods[2][0].startswith("Start must be before end")
    assert found.general == [] and found.count == 4


def test_overlaps_are_shown_on_both_rows():
    periods = [{"day": "mon", "start": "17:00", "end": "21:00", "mode": "idle"},
               {"day": "tue", "start": "17:00", "end": "21:00", "mode": "idle"},
               {"day": "mon", "start": "20:00", "end": "22:00", "mode": "idle"}]
    found = _errors(periods)
    assert found.periods == [["Overlaps Monday 20:00–22:00"], [],
                             ["Overlaps Monday 17:00–21:00"]]


def test_exception_problems_go_to_the_rows_of_their_date():
    exceptions = [{"date": "2026-01-01", "name": "", "start": "", "end": "", "mode": ""},
                  {"date": "2026-12-31", "name": "x", "start": "10:00", "end": "12:00",
                   "mode": "charge", "power_kw": 10},
                  {"date": "2026-12-31", "name": "", "start": "11:00", "end": "13:00",
                   "mode": "idle"},
                  {"date": "", "name": "", "start": "", "end": "", "mode": ""}]
    found = _errors([], exceptions)
    assert found.exceptions[0][0].startswith("This date is in the past (today is 2026-11-20")
    assert "Charge needs SoC max" in found.exceptions[1]
    assert "Overlaps 2026-12-31 11:00–13:00" in found.exceptions[1]
    assert found.exceptions[2] == ["Overlaps 2026-12-31 10:00–12:00"]
    assert found.exceptions[3] == ["Date is missing (YYYY-MM-DD)"]


def test_default_mode_problems_are_general():
    found = _errors([], mode="self_consumption", params={"soc_min": 50, "soc_max": 40})
    assert found.general == ["Default mode (default_params): SoC min 50 % must be below "
                             "SoC max 40 %"]


# ---- week timeline ------------------------------------------------------------------------

def _hours_by_row(figure) -> dict[str, float]:
    covered: dict[str, float] = defaultdict(float)
    for trace in figure.data:
        for label, width in zip(trace.y, trace.x, strict=True):
            covered[label] += width
    return covered


def test_timeline_covers_every_day_with_modes_and_a_legend():
    figure = timeline.week_figure(BODY, today=dt.date(2026, 11, 20))
    assert {t.name for t in figure.data} == {"Idle", "Charge", "Discharge", "Peak shaving"}
    covered = _hours_by_row(figure)
    assert list(covered)[:7] == [schedules.DAY_NAMES[d] for d in schedules.DAYS]
    assert all(hours == pytest.approx(24) for hours in covered.values())
    assert "Fri 25 Dec · Christmas" in covered and "Thu 31 Dec" in covered
    discharge = next(t for t in figure.data if t.name == "Discharge")
    assert list(discharge.base) == [17, 17, 17] and list(discharge.x) == [4, 4, 4]
    assert discharge.text[0] == "Discharge 40 kW"
    assert discharge.marker.color == timeline.MODE_COLORS["discharge"]


def test_timeline_leaves_out_past_exceptions_and_unreadable_periods():
    draft = {**BODY, "periods": [{"days": ["mon"], "start": "25:00", "end": "10:00",
                                  "mode": "charge"}]}
    figure = timeline.week_figure(draft, today=dt.date(2026, 12, 28))
    covered = _hours_by_row(figure)
    assert "Fri 25 Dec · Christmas" not in covered and "Thu 31 Dec" in covered
    assert {t.name for t in figure.data} == {"Idle", "Peak shaving"}


def test_timeline_marks_now_on_todays_row():
    figure = timeline.week_figure(BODY, now_local=dt.datetime(2026, 11, 18, 15, 30))
    line = figure.layout.shapes[-1]
    assert line.x0 == 15.5 and line.y0 == pytest.approx(2 - 0.45)  # Wednesday's row


def test_day_slices_fill_gaps_with_the_default_mode():
    slices = timeline.day_slices([{"start": "08:00", "end": "09:30", "mode": "charge",
                                   "power_kw": 3}], "idle", {})
    assert slices == [(0, 8, "idle", {}), (8, 9.5, "charge", {"power_kw": 3}),
                      (9.5, 24, "idle", {})]


# ---- history and delivery ------------------------------------------------------------------------

def _delivery(status, **extra):
    row = {"revision": 4, "serial": "HES-1", "status": status, "reason": None,
           "published_at": NOW, "pending_since": NOW, "acked_at": NOW, "publish_error": None,
           "applied_revision": 3}
    return {**row, **extra}


def test_delivery_summary_in_words():
    assert history_view.delivery_summary([_delivery("applied")], PARIS) == (
        "Applied revision 4", "success")
    assert history_view.delivery_summary([_delivery("pending")], PARIS) == (
        "Revision 4 pending since 2026-11-20 13:00 CET", "warning")
    text, color = history_view.delivery_summary(
        [_delivery("pending", published_at=None)], PARIS)
    assert "not yet published" in text and color == "warning"
    assert history_view.delivery_summary(
        [_delivery("applied"), _delivery("rejected", reason="SoC min below BMS floor")],
        PARIS) == ("Revision 4 rejected: SoC min below BMS floor", "danger")
    assert history_view.delivery_summary([], PARIS)[0] == "No storage device on this site"
    assert history_view.delivery_summary([_delivery(None, revision=None)], PARIS)[0] == (
        "No schedule yet")


def test_history_lists_author_time_and_comment():
    rows = [{"revision": 2, "comment": "", "author": "op@example.com", "restored_from": 1,
             "created_at": NOW, "applied": 1, "pending": 0, "rejected": 0},
            {"revision": 1, "comment": "first", "author": "cli", "restored_from": None,
             "created_at": NOW, "applied": 0, "pending": 0, "rejected": 1}]
    text = _text(history_view.history_table(rows, PARIS))
    for expected in ("Revision 2", "restores 1", "no comment", "op@example.com",
                     "2026-11-20 13:00 CET", "first", "rejected 1", "applied 1"):
        assert expected in text
    options = history_view.revision_options(rows, PARIS)
    assert options[1] == {"label": "1 · 2026-11-20 13:00 CET · first", "value": 1}


def test_diff_view_colours_added_and_removed_lines():
    view = _text(history_view.diff_view(
        ["removed Monday 17:00–21:00 idle", "added Monday 18:00–22:00 idle"], 1, 2))
    assert "#b91c1c" in view and "#15803d" in view and "From revision 1 to 2" in view
    same = _text(history_view.diff_view([], 1, 2))
    assert "are the same schedule" in same


# ---- preview chart -------------------------------------------------------------------------

def test_preview_chart_draws_soc_over_mode_bands_and_the_powers():
    storage = battery.Battery(rated_power_kw=50, capacity_kwh=100)
    start = dt.datetime(2026, 11, 16, tzinfo=schedules.zone(PARIS))
    schedule = schedules.validate({**BODY, "exceptions": []}, LIMITS, now=NOW)
    steps = schedule_preview.simulate(schedule, storage, start=start, soc=55,
                                      site_power=lambda _t: (30.0, 0.0))
    preview = schedule_preview.Preview(PARIS, storage, 55, steps, ("a note",))
    figure = preview_chart.preview_figure(preview)
    soc = next(t for t in figure.data if t.name == "State of charge")
    assert soc.y[0] == 55 and len(soc.y) == len(steps) + 1
    assert soc.x[0] == dt.datetime(2026, 11, 16, 0, 0)  # local time of the site
    assert {t.name for t in figure.data} >= {"Grid", "Load", "PV", "Battery", "Idle", "Charge",
                                             "Discharge"}
    # Monday charge, Monday/Tuesday/Wednesday discharge, idle around them: 9 bands.
    assert len(figure.layout.shapes) == 9
    assert figure.layout.xaxis.type == "date"
    summary = _text(preview_chart.preview_summary(preview))
    assert "a note" in summary and "50 kW / 100 kWh" in summary
    assert '"40 kW"' in summary  # the peak: 30 kW of load while charging at 10 kW


def test_optimized_is_offered_only_on_sites_with_the_optimiser():
    assert "optimized" not in [o["value"] for o in editor.mode_options(False)]
    assert "optimized" in [o["value"] for o in editor.mode_options(True)]
    assert editor.mode_options(False, all_day=True)[0] == {"label": "Default mode all day",
                                                           "value": editor.ALL_DAY}
