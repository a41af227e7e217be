"""``kilowatch.ids.parse_id``: the one parser of ids from the browser, URLs and the CLI."""

from __future__ import annotations

import pytest

from kilowatch.ids import MAX_ID, parse_id


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1), ("1", 1), ("42", 42), (MAX_ID, MAX_ID), (str(MAX_ID), MAX_ID), ("007", 7),
])
def test_whole_numbers_in_the_int_range_are_ids(value, expected):
    assert parse_id(value) == expected


@pytest.mark.parametrize("value", [
    None, True, False, 0, "0", -1, "-1", MAX_ID + 1, str(MAX_ID + 1), "99999999999",
    "9" * 5000, 1.0, 2.5, float("nan"), "1.0", "", " 1", "1 ", "+1", "²", "١٢", "１", "1e3",
    ["1"], [1], {"id": 1}, (1,), b"1",
])
def test_anything_else_is_not_an_id(value):
    assert parse_id(value) is None
