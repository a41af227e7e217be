"""Users, roles, password hashing, login wiring and the access policy for every request."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from kilowatch.settings import Settings, uses_https


def configure_server(server: Flask, settings: Settings) -> None:
    """Set the session cookie, CSRF, login and password-reset throttles of the Flask server."""
    secure = uses_https(settings)
    server.config.update(
        KILOWATCH_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="kilowatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_absolute_timeout),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        WTF_CSRF_SSL_STRICT=secure,
    )
    server.config.setdefault("KILOWATCH_LOGIN_LIMIT_ACCOUNT", "10 per 15 minutes")
    server.config.setdefault("KILOWATCH_LOGIN_LIMIT_IP", "100 per 15 minutes")
    server.config.setdefault("KILOWATCH_RESET_LIMIT_ADDRESS", "3 per hour")
    server.config.setdefault("KILOWATCH_RESET_LIMIT_IP", "20 per hour")
    server.config.setdefault("KILOWATCH_PASSWORD_CHECK_LIMIT", "10 per 15 minutes")


def trust_proxies(server: Flask, hops: int) -> None:
    """Take the client's address and scheme from the last ``hops`` proxies' X-Forwarded-* headers.

    With 0 (the default) the headers are ignored: anyone could write them, and a
    forged address would dodge the per-address login throttle.
    """
    if hops > 0:
        server.wsgi_app = ProxyFix(server.wsgi_app, x_for=hops, x_proto=hops)


def init_app(server: Flask, settings: Settings) -> None:
    """Put the body limit, origin check, login, throttles and the guard in front of the server."""
    from auth.body_limit import init_body_limit
    from auth.device_api import init_device_api
    from auth.guard import init_guard
    from auth.login import init_login
    from auth.origin import init_origin_check

    configure_server(server, settings)
    trust_proxies(server, settings.proxy_hops)
    init_login(server, settings)
    init_device_api(server)
    # Each goes first: the body limit, then the origin check, then the login guard.
    init_guard(server)
    init_origin_check(server)
    init_body_limit(server, settings.max_content_length)
