"""Settings come from KILOWATCH_* variables with working defaults."""

from __future__ import annotations

import pytest

from kilowatch.settings import SettingsError, load_settings, redact_url


def test_defaults_point_at_the_local_stack():
    settings = load_settings({})
    assert settings.database_url.endswith(":55432/kilowatch")
    assert settings.mqtt_url == "mqtt://kilowatch-collector:dev-only-mqtt-password@127.0.0.1:51883"
    assert settings.mqtt_device_url == "mqtts://127.0.0.1:58883"
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


def test_log_level_is_case_insensitive():
    assert load_settings({"KILOWATCH_LOG_LEVEL": " debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(("name", "value"), [
    ("KILOWATCH_OFFLINE_AFTER", "soon"),
    ("KILOWATCH_RAW_RETENTION_DAYS", "-3"),
    ("KILOWATCH_DATABASE_URL", "mysql://x/y"),
    ("KILOWATCH_MQTT_PREFIX", "ess/#"),
    ("KILOWATCH_SECURE_COOKIES", "maybe"),
    ("KILOWATCH_LOG_LEVEL", "bogus"),
    ("KILOWATCH_SECRET_KEY", ""),
    ("KILOWATCH_SECRET_KEY", "short"),
])
def test_bad_value_names_the_variable(name, value):
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value})


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtt://kw:s3cret@broker:1883", "mqtt://kw:***@broker:1883"),
    ("postgresql://kw:p%40ss:w@db.example.com:5432/kw", "postgresql://kw:***@db.example.com:5432/kw"),
    ("smtps://mailer:pa/ss@smtp.example.com", "smtps://mailer:***@smtp.example.com"),
    ("kw:s3cret@db", "kw:***@db"),
    ("mqtt://kw@broker:1883", "mqtt://kw@broker:1883"),
    ("redis://127.0.0.1:56379/0", "redis://127.0.0.1:56379/0"),
    ("soon", "soon"),
])
def test_redact_url_hides_only_the_password(url, shown):
    assert redact_url(url) == shown


def test_a_bad_url_setting_does_not_repeat_its_password():
    with pytest.raises(SettingsError, match="KILOWATCH_SMTP_URL") as raised:
        load_settings({"KILOWATCH_SMTP_URL": "ftp://mailer:s3cret@smtp.example.com"})
    assert "s3cret" not in str(raised.value)
    assert "mailer:***@smtp.example.com" in str(raised.value)
