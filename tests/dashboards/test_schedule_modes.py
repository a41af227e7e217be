"""One table of parameters per schedule mode: the validator, the battery model and the editor."""

from __future__ import annotations

import json
import sys

import dash
import pytest

from kilowatch.schedules import battery
from kilowatch.schedules import model as schedules

PARAMS = ("power_kw", "grid_limit_kw", "soc_min", "soc_max")


def _page_module():
    """The schedule page as the app loaded it (importing it again would register it twice)."""
    name = next(page["module"] for page in dash.page_registry.values()
                if page["module"].endswith(".schedule"))
    return sys.modules[name]


def test_the_battery_model_follows_the_schedule_table():
    assert battery.MODE_PARAMS is schedules.MODE_PARAMS
    assert battery.MODES == schedules.MODES


def test_the_editor_param_switch_is_built_from_the_table(app):
    schedule = _page_module()
    assert json.dumps(schedules.MODE_PARAMS) in schedule.PARAM_SWITCH_JS


@pytest.mark.browser
def test_the_param_switch_enables_exactly_the_modes_parameters(app, page):
    schedule = _page_module()
    for mode, wanted in [*schedules.MODE_PARAMS.items(), ("nonsense", ())]:
        disabled = page.evaluate(f"({schedule.PARAM_SWITCH_JS})({json.dumps(mode)}, true)")
        assert disabled == [key not in wanted for key in PARAMS], mode
        read_only = page.evaluate(f"({schedule.PARAM_SWITCH_JS})({json.dumps(mode)}, false)")
        assert read_only == [True] * len(PARAMS)
