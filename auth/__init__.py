"""Users, roles, password hashing, login wiring and the access policy for every request."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from kilowatch.settings import Settings


def configure_server(server: Flask, settings: Settings) -> None:
    """Set the session cookie, CSRF, login and password-reset throttles of the Flask server."""
    server.config.update(
        KILOWATCH_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="kilowatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_absolute_timeout),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
    )
    server.config.setdefault("KILOWATCH_LOGIN_LIMIT_ACCOUNT", "10 per 15 minutes")
    server.config.setdefault("KILOWATCH_LOGIN_LIMIT_IP", "100 per 15 minutes")
    server.config.setdefault("KILOWATCH_RESET_LIMIT_ADDRESS", "3 per hour")
    server.config.setdefault("KILOWATCH_RESET_LIMIT_IP", "20 per hour")


def init_app(server: Flask, settings: Settings) -> None:
    """Put login, throttling and the deny-by-default guard in front of the Flask server."""
    from auth.device_api import init_device_api
    from auth.guard import init_guard
    from auth.login import init_login

    configure_server(server, settings)
    init_login(server, settings)
    init_device_api(server)
    init_guard(server)
