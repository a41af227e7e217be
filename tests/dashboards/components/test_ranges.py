"""The shared range picker: its controls and the parsing of the values the browser sends."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dashboards.components import ranges
from kilowatch.telemetry.history import HistoryError

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_controls_name_their_ids_after_the_page_and_hide_the_custom_days():
    buttons, custom = ranges.range_controls("page")
    assert buttons.children.id == "page-range" and buttons.children.value == "today"
    assert [o["value"] for o in buttons.children.options] == list(ranges.RANGE_LABELS)
    assert custom.id == "page-custom-col" and custom.style == {"display": "none"}
    assert custom.children.id == "page-custom"
    assert [(i.component_id, i.component_property) for i in ranges.range_inputs("page")] == [
        ("page-range", "value"), ("page-custom", "start_date"), ("page-custom", "end_date")]


def test_picked_days_read_the_day_of_an_iso_date_or_datetime():
    assert ranges.picked_days("2026-01-31", "2026-02-01T00:00:00") == (
        date(2026, 1, 31), date(2026, 2, 1))
    assert ranges.picked_days(None, "") == (None, None)


@pytest.mark.parametrize("forged", ["2026-13-45", "yesterday", "²", 5, -1, True, 1.5,
                                    ["2026-01-01"], {"a": 1}, {"2026-01-01": 1}])
def test_anything_but_an_iso_day_is_refused_with_a_message(forged):
    with pytest.raises(HistoryError, match="pick valid days"):
        ranges.picked_days(forged, "2026-01-01")
    with pytest.raises(HistoryError, match="pick valid days"):
        ranges.picked_days("2026-01-01", forged)


def test_picked_range_is_the_site_zone_range():
    assert ranges.picked_range("custom", "Europe/Paris", "2026-01-01", "2026-01-01", now=NOW) == (
        datetime(2025, 12, 31, 23, tzinfo=UTC), datetime(2026, 1, 1, 23, tzinfo=UTC))
    assert ranges.picked_range(None, "UTC", None, None, now=NOW) == (  # no choice yet: today
        datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))


@pytest.mark.parametrize(("key", "start", "end", "message"), [
    ("custom", "9999-12-31", "9999-12-31", "between 1970 and 2100"),
    ("custom", "0001-01-01", "0001-01-01", "between 1970 and 2100"),
    ("custom", None, "2026-01-01", "pick a first and a last day"),
    ("forever", None, None, "range must be one of"),
    (["7d"], None, None, "range must be one of"),
    ({"a": 1}, None, None, "range must be one of"),
])
def test_picked_range_refuses_nonsense_with_a_message(key, start, end, message):
    with pytest.raises(HistoryError, match=message):
        ranges.picked_range(key, "Europe/Paris", start, end, now=NOW)

