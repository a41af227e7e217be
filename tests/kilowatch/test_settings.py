"""Settings come from KILOWATCH_* variables with working defaults."""

from __future__ import annotations

import os

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
                              "KILOWATCH_SECURE_COOKIES": "yes",
                              "KILOWATCH_DISPATCH_WEAR_COST": "0.015",
                              "KILOWATCH_FORECAST_RETENTION_DAYS": "30"})
    assert (settings.dispatch_wear_cost, settings.forecast_retention_days) == (0.015, 30)
    assert settings.offline_after == 60
    assert settings.mqtt_share_group == "kilowatch"
    assert settings.secure_cookies is True


def test_log_level_is_case_insensitive():
    assert load_settings({"KILOWATCH_LOG_LEVEL": " debug"}).log_level == "DEBUG"


@pytest.mark.parametrize(("name", "value"), [
    ("KILOWATCH_OFFLINE_AFTER", "soon"),
    ("KILOWATCH_RAW_RETENTION_DAYS", "-3"),
    ("KILOWATCH_FORECAST_RETENTION_DAYS", "0"),
    ("KILOWATCH_DISPATCH_WEAR_COST", "-0.01"),
    ("KILOWATCH_DISPATCH_WEAR_COST", "nan"),
    ("KILOWATCH_DISPATCH_WEAR_COST", "cheap"),
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


def test_public_development_secrets_are_refused_beyond_this_machine():
    from kilowatch.settings import public_secrets_in_use, refuse_public_secrets

    assert public_secrets_in_use(load_settings({})) == []  # the local stack: loopback only
    public = load_settings({"KILOWATCH_BASE_URL": "https://kilowatch.example.com"})
    assert public_secrets_in_use(public) == [
        "KILOWATCH_DEVICE_KEY", "KILOWATCH_MQTT_URL", "KILOWATCH_MQTT_PUBLISHER_URL",
        "KILOWATCH_MQTT_ADMIN_URL"]
    with pytest.raises(SettingsError, match="KILOWATCH_DEVICE_KEY, KILOWATCH_MQTT_URL"):
        refuse_public_secrets(public)
    real = load_settings({"KILOWATCH_BASE_URL": "https://kilowatch.example.com",
                          "KILOWATCH_DEVICE_KEY": "k" * 40,
                          "KILOWATCH_MQTT_URL": "mqtts://c:s3cret-1@mq.example.com:8883",
                          "KILOWATCH_MQTT_PUBLISHER_URL": "mqtts://p:s3cret-2@mq.example.com",
                          "KILOWATCH_MQTT_ADMIN_URL": "mqtts://a:s3cret-3@mq.example.com"})
    refuse_public_secrets(real)


def test_the_collector_refuses_public_secrets_with_one_line():
    import subprocess

    result = subprocess.run(["kilowatch", "collector"], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"],
                                 "KILOWATCH_BASE_URL": "https://kilowatch.example.com"},
                            timeout=60, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: KILOWATCH_DEVICE_KEY, KILOWATCH_MQTT_URL")
