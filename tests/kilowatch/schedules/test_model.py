"""The schedule model and program: each validation rule, DST, mode_at, diff, device_part."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from kilowatch.schedules import model as schedules
from kilowatch.schedules.model import ScheduleInvalid, SiteLimits, validate
from kilowatch.schedules.program import Setpoint, day_program, device_part, mode_at

PARIS = "Europe/Paris"
LIMITS = SiteLimits(timezone=PARIS, rated_power_kw=100)
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
EXAMPLE = {  # the example of docs/schedules.md, without the exception's optional name
    "timezone": PARIS, "default_mode": "idle",
    "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00", "end": "21:00",
                 "mode": "discharge", "power_kw": 60, "soc_min": 20}],
    "exceptions": [{"date": "2026-12-25", "periods": []}],
}
SCHEMA = json.loads(
    (Path(schedules.__file__).parent.parent / "schemas" / "schedule.json").read_text())


def errors_of(body, limits=LIMITS, now=NOW) -> list[str]:
    with pytest.raises(ScheduleInvalid) as caught:
        validate(body, limits, now=now)
    return caught.value.errors


def with_periods(*periods, **top) -> dict:
    return {"timezone": PARIS, "default_mode": "idle", "periods": list(periods), **top}


def period(days=("mon",), start="08:00", end="10:00", mode="idle", **params) -> dict:
    return {"days": list(days), "start": start, "end": end, "mode": mode, **params}


def at(local: str, tz: str = PARIS) -> dt.datetime:
    return dt.datetime.fromisoformat(local).replace(tzinfo=schedules.zone(tz))


def test_design_example_is_valid_and_kept():
    assert validate(EXAMPLE, LIMITS, now=NOW) == EXAMPLE


def test_overlap_on_the_same_day_names_both_periods():
    body = with_periods(period(["mon", "tue"], "17:00", "21:00", "discharge", power_kw=50,
                               soc_min=20),
                        period(["mon"], "20:00", "22:00", "charge", power_kw=50, soc_max=90))
    assert errors_of(body) == ["Monday 17:00–21:00 overlaps Monday 20:00–22:00"]


def test_overlap_with_a_long_earlier_period_is_found_past_a_short_one():
    body = with_periods(period(start="10:00", end="20:00"), period(start="11:00", end="12:00"),
                        period(start="13:00", end="14:00"))
    assert errors_of(body) == ["Monday 10:00–20:00 overlaps Monday 11:00–12:00",
                               "Monday 10:00–20:00 overlaps Monday 13:00–14:00"]


def test_touching_periods_and_same_hours_on_other_days_are_fine():
    body = with_periods(period(["mon"], "08:00", "10:00"), period(["mon"], "10:00", "12:00"),
                        period(["tue"], "09:00", "11:00"))
    assert len(validate(body, LIMITS, now=NOW)["periods"]) == 3


def test_start_must_be_before_end():
    assert errors_of(with_periods(period(start="21:00", end="17:00"))) == [
        "period 1 (Monday 21:00–17:00): start must be before end (a period may end at 24:00; "
        "split a period that runs past midnight in two)"]
    assert "start must be before end" in errors_of(with_periods(period(start="09:00",
                                                                       end="09:00")))[0]


def test_a_period_may_end_at_midnight_but_not_start_there():
    assert validate(with_periods(period(start="22:00", end="24:00")), LIMITS, now=NOW)
    assert errors_of(with_periods(period(start="24:00", end="24:00"))) == [
        "period 1: start '24:00' is not a time HH:MM from 00:00 to 23:59"]


@pytest.mark.parametrize("value", ["7:00", "17:60", "17h00", "25:00", 1700, "24:01"])
def test_times_must_be_hh_mm(value):
    assert errors_of(with_periods(period(end=value))) == [
        f"period 1: end {value!r} is not a time HH:MM from 00:00 to 24:00"]


def test_power_within_the_sites_rated_storage_power():
    body = with_periods(period(mode="discharge", power_kw=120, soc_min=10))
    assert errors_of(body) == ["period 1 (Monday 08:00–10:00): power 120 kW is above the "
                               "site's rated storage power of 100 kW"]
    assert validate(body, SiteLimits(timezone=PARIS, rated_power_kw=125), now=NOW)
    assert "must be above 0" in errors_of(with_periods(period(mode="charge", power_kw=0,
                                                              soc_max=90)))[0]


@pytest.mark.parametrize(("mode", "params", "message"), [
    ("charge", {"power_kw": 10, "soc_max": 101}, "SoC max 101 % is outside 0–100 %"),
    ("discharge", {"power_kw": 10, "soc_min": -1}, "SoC min -1 % is outside 0–100 %"),
    ("self_consumption", {"soc_min": 80, "soc_max": 20}, "SoC min 80 % must be below SoC max 20 %"),
    ("self_consumption", {"soc_min": 50, "soc_max": 50}, "SoC min 50 % must be below SoC max 50 %"),
    ("peak_shaving", {"grid_limit_kw": -5, "soc_min": 10}, "grid limit -5 kW must not be negative"),
])
def test_soc_and_limits(mode, params, message):
    assert errors_of(with_periods(period(mode=mode, **params))) == [
        f"period 1 (Monday 08:00–10:00): {message}"]


@pytest.mark.parametrize(("params", "message"), [
    ({"power_kw": 10}, "discharge needs soc_min"),
    ({"power_kw": "10", "soc_min": 5}, "power_kw must be a number, not '10'"),
    ({"power_kw": True, "soc_min": 5}, "power_kw must be a number, not True"),
    ({"power_kw": 10, "soc_min": 5, "soc_max": 90},
     "soc_max does not apply to discharge (it takes power_kw, soc_min)"),
    ({"power_kw": 10, "soc_min": 5, "colour": "red"},
     "colour does not apply to discharge (it takes power_kw, soc_min)"),
])
def test_mode_parameters_present_typed_and_known(params, message):
    assert errors_of(with_periods(period(mode="discharge", **params))) == [
        f"period 1 (Monday 08:00–10:00): {message}"]


def test_unknown_mode_and_unknown_top_level_field():
    body = with_periods(period(mode="turbo"), colour="red")
    assert errors_of(body) == [
        "the schedule: unknown field 'colour' (allowed: default_mode, default_params, "
        "exceptions, periods, revision, timezone)",
        "period 1 (Monday 08:00–10:00): unknown mode 'turbo' (one of idle, charge, discharge, "
        "peak_shaving, self_consumption, optimized)"]


@pytest.mark.parametrize(("days", "message"), [
    (["monday"], "unknown day 'monday' (use mon, tue, wed, thu, fri, sat, sun)"),
    ([], "days must be a non-empty list such as [\"mon\", \"tue\"]"),
    (["mon", "mon"], "a day is listed twice"),
])
def test_day_names(days, message):
    assert errors_of(with_periods(period(days=days))) == [f"period 1: {message}"]


def test_timezone_must_be_the_sites():
    body = {**EXAMPLE, "timezone": "Europe/Berlin"}
    assert errors_of(body) == [
        "timezone 'Europe/Berlin' is not the site's time zone 'Europe/Paris'"]
    missing = {k: v for k, v in EXAMPLE.items() if k != "timezone"}
    assert errors_of(missing) == ["timezone is missing (this site runs on Europe/Paris)"]


def test_optimized_only_on_sites_with_the_optimiser():
    body = with_periods(period(mode="optimized"))
    assert "needs the dispatch optimiser" in errors_of(body)[0]
    assert validate(body, SiteLimits(timezone=PARIS, has_optimizer=True), now=NOW)


def test_default_mode_with_parameters_needs_default_params():
    body = {"timezone": PARIS, "default_mode": "self_consumption"}
    assert errors_of(body) == ["default mode (default_params): self_consumption needs soc_min",
                               "default mode (default_params): self_consumption needs soc_max"]
    body["default_params"] = {"soc_min": 10, "soc_max": 95}
    assert mode_at(validate(body, LIMITS, now=NOW), NOW) == ("self_consumption",
                                                           {"soc_min": 10, "soc_max": 95})


def test_exceptions_not_in_the_past_in_the_sites_time_zone():
    # 23:30 UTC on 24 December is already 25 December in Paris.
    now = dt.datetime(2026, 12, 24, 23, 30, tzinfo=dt.UTC)
    body = {**EXAMPLE, "exceptions": [{"date": "2026-12-24"}, {"date": "2026-12-25"}]}
    assert errors_of(body, now=now) == [
        "exception 2026-12-24 is in the past (today is 2026-12-25 in Europe/Paris)"]
    ny = SiteLimits(timezone="America/New_York", rated_power_kw=100)
    assert validate({**body, "timezone": "America/New_York"}, ny, now=now)["exceptions"][0][
        "date"] == "2026-12-24"


def test_exception_rules():
    body = {**EXAMPLE, "exceptions": [
        {"date": "2026-12-25", "name": "Christmas", "periods": [
            {"start": "10:00", "end": "12:00", "mode": "idle"},
            {"start": "11:00", "end": "13:00", "mode": "idle", "days": ["mon"]}]},
        {"date": "2026-12-25"}, {"date": "2026-02-30"}, {"date": "2026-12-26", "when": "x"}]}
    assert errors_of(body) == [
        "exception 2026-12-25, period 2 (11:00–13:00): days does not apply inside an exception "
        "(it covers its date)",
        "2026-12-25 10:00–12:00 overlaps 2026-12-25 11:00–13:00",
        "exception 2026-12-25 is listed twice",
        "exception 3: date '2026-02-30' is not a calendar date YYYY-MM-DD",
        "exception 4: unknown field 'when' (allowed: date, name, periods)"]


def test_revision_is_accepted_on_input_and_dropped():
    assert validate({**EXAMPLE, "revision": 7}, LIMITS, now=NOW) == EXAMPLE


def test_a_weekly_program_over_dst_weeks_validates_like_any_other():
    # Periods are wall-clock: 02:00-03:00 on the spring-forward Sunday simply does not occur.
    body = with_periods(period(["sun"], "02:00", "03:00", "charge", power_kw=10, soc_max=90),
                        exceptions=[{"date": "2026-03-29", "periods": [
                            {"start": "02:30", "end": "24:00", "mode": "idle"}]},
                            {"date": "2026-10-25", "periods": []}])
    assert validate(body, LIMITS, now=NOW)["exceptions"][0]["date"] == "2026-03-29"


# ---- mode_at ----------------------------------------------------------------------------

WEEKLY = validate(with_periods(
    period(["mon", "tue", "wed", "thu", "fri"], "17:00", "21:00", "discharge", power_kw=60,
           soc_min=20),
    period(["sun"], "01:00", "04:00", "charge", power_kw=30, soc_max=90),
    period(["sat"], "22:00", "24:00", "self_consumption", soc_min=10, soc_max=95),
    exceptions=[{"date": "2026-12-25", "name": "Christmas", "periods": [
        {"start": "08:00", "end": "09:00", "mode": "peak_shaving", "grid_limit_kw": 40,
         "soc_min": 15}]}, {"date": "2026-12-28"}]), LIMITS, now=NOW)


def test_mode_at_follows_the_weekly_program_in_the_sites_time_zone():
    monday = at("2026-06-01T17:00")
    assert mode_at(WEEKLY, monday) == ("discharge", {"power_kw": 60, "soc_min": 20})
    assert mode_at(WEEKLY, at("2026-06-01T16:59:59")) == ("idle", {})
    assert mode_at(WEEKLY, at("2026-06-01T21:00")) == ("idle", {})
    # The same instant given in UTC (15:00Z is 17:00 in Paris summer time).
    assert mode_at(WEEKLY, dt.datetime(2026, 6, 1, 15, 0, tzinfo=dt.UTC)).mode == "discharge"
    assert mode_at(WEEKLY, at("2026-06-01T11:00", "America/New_York")).mode == "discharge"


def test_mode_at_a_period_ending_at_midnight():
    assert mode_at(WEEKLY, at("2026-06-06T23:59:59.9")).mode == "self_consumption"
    assert mode_at(WEEKLY, at("2026-06-07T00:00")).mode == "idle"


def test_exceptions_replace_the_weekly_program_on_their_date():
    assert mode_at(WEEKLY, at("2026-12-25T18:00")).mode == "idle"  # a Friday
    assert mode_at(WEEKLY, at("2026-12-25T08:30")) == ("peak_shaving",
                                                       {"grid_limit_kw": 40, "soc_min": 15})
    assert mode_at(WEEKLY, at("2026-12-28T18:00")).mode == "idle"  # Monday, empty exception
    assert mode_at(WEEKLY, at("2026-12-29T18:00")).mode == "discharge"


def _charging_minutes(day: str) -> int:
    start = at(f"{day}T00:00").astimezone(dt.UTC)
    steps = (start + dt.timedelta(minutes=m) for m in range(26 * 60))
    return sum(1 for t in steps
               if t.astimezone(schedules.zone(PARIS)).date().isoformat() == day
               and mode_at(WEEKLY, t).mode == "charge")


def test_wall_clock_periods_across_dst_changes():
    # Sunday 01:00-04:00 lasts 2 real hours on spring-forward day, 4 on fall-back day.
    assert _charging_minutes("2026-03-22") == 180
    assert _charging_minutes("2026-03-29") == 120
    assert _charging_minutes("2026-10-25") == 240
    # 02:30 happens twice on 25 October; both are inside the period.
    first = dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC)
    assert first.astimezone(schedules.zone(PARIS)).hour == 2
    assert mode_at(WEEKLY, first).mode == mode_at(WEEKLY, first + dt.timedelta(hours=1)).mode \
        == "charge"


def test_mode_at_needs_an_aware_time():
    with pytest.raises(ValueError, match="time zone"):
        mode_at(WEEKLY, dt.datetime(2026, 6, 1, 17, 0))


# ---- diff, canonical, schema --------------------------------------------------------------

def test_diff_describes_changes_between_revisions():
    new = copy.deepcopy(WEEKLY)
    new["periods"][0]["power_kw"] = 50
    new["periods"].pop(1)
    new["periods"].append(period(["wed"], "06:00", "07:00"))
    new["exceptions"] = [{"date": "2026-12-31", "periods": [
        {"start": "00:00", "end": "06:00", "mode": "charge", "power_kw": 20, "soc_max": 80}]}]
    assert schedules.diff(WEEKLY, new) == [
        "changed Mon–Fri 17:00–21:00 discharge (power 60 kW, SoC min 20 %) → "
        "discharge (power 50 kW, SoC min 20 %)",
        "removed Sunday 01:00–04:00 charge (power 30 kW, SoC max 90 %)",
        "added Wednesday 06:00–07:00 idle",
        "removed exception 2026-12-25 (Christmas)",
        "removed exception 2026-12-28",
        "added exception 2026-12-31",
        "  2026-12-31 00:00–06:00 charge (power 20 kW, SoC max 80 %)",
    ]
    assert schedules.diff(WEEKLY, copy.deepcopy(WEEKLY)) == []


def test_canonical_orders_keys_for_reading():
    shuffled = json.loads(json.dumps(WEEKLY, sort_keys=True))
    assert list(schedules.canonical(shuffled)) == ["timezone", "default_mode", "periods",
                                                   "exceptions"]
    assert list(schedules.canonical(shuffled)["periods"][0]) == [
        "days", "start", "end", "mode", "power_kw", "soc_min"]
    assert schedules.canonical(shuffled) == WEEKLY


def test_json_schema_accepts_what_validation_accepts_and_rejects_bad_shapes():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    checker = jsonschema.Draft202012Validator(SCHEMA)
    for good in (EXAMPLE, WEEKLY, {**EXAMPLE, "revision": 3}):
        assert not list(checker.iter_errors(good))
    bad_shapes = [
        with_periods(period(mode="discharge", power_kw=10)),
        with_periods(period(end="25:00")),
        with_periods(period(days=["monday"])),
        with_periods(period(mode="charge", power_kw=10, soc_max=90, colour="red")),
        {**EXAMPLE, "colour": "red"},
    ]
    for bad in bad_shapes:
        assert list(checker.iter_errors(bad)), bad
        with pytest.raises(ScheduleInvalid):
            validate(bad, LIMITS, now=NOW)


def test_lists_are_bounded():
    many = [period(start=f"{h:02d}:00", end=f"{h:02d}:30") for h in range(24)] * 9
    assert errors_of(with_periods(*many)) == ["periods: at most 200, not 216"]
    assert errors_of({**EXAMPLE, "periods": "all day"}) == ["periods must be a list"]
    assert errors_of({**EXAMPLE, "exceptions": [{"date": "2026-12-25", "name": "x" * 101}]}) == [
        "exception 2026-12-25: name must be text of at most 100 characters"]


def test_day_program_covers_the_whole_day_with_the_default_in_gaps():
    idle = Setpoint("idle", {})
    assert day_program(WEEKLY, "mon") == [
        ("00:00", "17:00", idle),
        ("17:00", "21:00", ("discharge", {"power_kw": 60, "soc_min": 20})),
        ("21:00", "24:00", idle)]
    assert day_program(WEEKLY, "sat")[-1] == (
        "22:00", "24:00", ("self_consumption", {"soc_min": 10, "soc_max": 95}))
    assert day_program(WEEKLY, dt.date(2026, 12, 28)) == [("00:00", "24:00", idle)]
    assert day_program(WEEKLY, dt.date(2026, 12, 25))[1][2].mode == "peak_shaving"


SPLIT = {"timezone": "Europe/Paris", "default_mode": "peak_shaving",
         "default_params": {"grid_limit_kw": 70, "soc_min": 10},
         "periods": [{"days": ["mon"], "start": "08:00", "end": "12:00", "mode": "charge",
                      "power_kw": 150, "soc_max": 90},
                     {"days": ["mon"], "start": "17:00", "end": "24:00",
                      "mode": "self_consumption", "soc_min": 20, "soc_max": 80}],
         "exceptions": [{"date": "2030-12-25", "periods": [
             {"start": "10:00", "end": "11:00", "mode": "discharge", "power_kw": 175,
              "soc_min": 15}]}]}


def test_a_sites_power_and_grid_limit_are_split_between_its_devices_by_rating():
    small = device_part(SPLIT, 50, 175)
    large = device_part(SPLIT, 125, 175)
    assert small["periods"][0] == {**SPLIT["periods"][0], "power_kw": 42.86}
    assert large["periods"][0] == {**SPLIT["periods"][0], "power_kw": 107.14}
    assert small["default_params"] == {"grid_limit_kw": 20.0, "soc_min": 10}
    assert large["default_params"] == {"grid_limit_kw": 50.0, "soc_min": 10}
    # The whole site power: each device runs exactly its rating, never a rounding above.
    assert [device_part(SPLIT, kw, 175)["exceptions"][0]["periods"][0]["power_kw"]
            for kw in (50, 125)] == [50, 125]
    # SoC limits, modes, times and dates stay as the site's; the input is not changed.
    assert small["periods"][1] == SPLIT["periods"][1]
    assert small["exceptions"][0]["date"] == "2030-12-25"
    assert SPLIT["periods"][0]["power_kw"] == 150
    # Every device's part of a valid site schedule is valid for that device alone.
    for kw in (50, 125):
        part = device_part(SPLIT, kw, 175)
        assert validate(part, SiteLimits(timezone="Europe/Paris", rated_power_kw=kw),
                        now=dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == part


def test_a_sites_only_device_gets_the_schedule_unchanged_and_tiny_shares_stay_above_zero():
    assert device_part(SPLIT, 250, 250) is SPLIT
    assert device_part(SPLIT, 50, 0) is SPLIT  # no rating known for the site
    tiny = {**SPLIT, "periods": [{**SPLIT["periods"][0], "power_kw": 0.01}]}
    assert device_part(tiny, 1, 1000)["periods"][0]["power_kw"] == 0.01
    # A site power above the site's rating is not hidden by capping: the device refuses it.
    over = {**SPLIT, "periods": [{**SPLIT["periods"][0], "power_kw": 350}]}
    assert device_part(over, 50, 175)["periods"][0]["power_kw"] == 100.0
