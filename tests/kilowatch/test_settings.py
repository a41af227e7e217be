"""Settings come from KILOWATCH_* variables with working defaults."""

from __future__ import annotations

import pytest

from kilowatch.settings import SettingsError, load_settings


def test_defaults_point_at_the_local_stack():
    settings = load_settings({})
    assert settings.database_url.endswith(":55432/kilowatch")
    assert settings.mqtt_url == "mqtt://127.0.0.1:51883"
    assert settings.redis_url.startswith("redis://127.0.0.1:56379")
    assert settings.raw_retention_days == 31
    assert settings.offline_after == 300


def test_values_are_parsed():
    settings = load_settings({"KILOWATCH_OFFLINE_AFTER": "60",
                              "KILOWATCH_MQTT_SHARE_GROUP": "kilowatch",
                              "KILOWATCH_SECURE_COOKIES": "yes"})
    assert settings.offline_after == 60
    assert settings.mqtt_share_group == "kilowatch"
    assert settings.secure_cookies is True


@pytest.mark.parametrize(("name", "value"), [
    ("KILOWATCH_OFFLINE_AFTER", "soon"),
    ("KILOWATCH_RAW_RETENTION_DAYS", "-3"),
    ("KILOWATCH_DATABASE_URL", "mysql://x/y"),
    ("KILOWATCH_MQTT_PREFIX", "ess/#"),
    ("KILOWATCH_SECURE_COOKIES", "maybe"),
])
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})
