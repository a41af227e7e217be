"""One deny-by-default guard in front of every request of the web app.

Public: the login page, the forgotten-password page and the pages of the
links sent by e-mail (invitation, reset), static assets (``/assets/``),
``/healthz`` and the device API (``/api/device/``). Everything else needs a
live login session: a page request (or a browser's form post) without one is
redirected to the login page, and a request to Dash's JSON endpoints
(``/_dash-update-component`` …) or any other POST gets 401. Requests count as
activity for the idle timeout, except Dash updates fired only by timers.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, redirect, request, session, url_for
from flask_login import current_user, logout_user

from auth import sessions
from kilowatch.accounts.tokens import LINK_PATHS

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/login", "/healthz", "/_favicon.ico", "/login/forgot",
                          "/account/new-password"})
PUBLIC_PREFIXES = ("/assets/", "/api/device/", *LINK_PATHS.values())
# Reachable while a one-time password must still be replaced.
PASSWORD_CHANGE_PATHS = frozenset({"/account/password", "/logout"})


def is_public(path: str) -> bool:
    """Say whether a path is served without a login."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _wants_json() -> bool:
    dash_json = request.path.startswith("/_dash-") and not request.path.startswith(
        "/_dash-component-suites/")
    # A form of our pages (sign out, change password) posted by a browser is a page
    # request: with an expired session it goes to the login page, not to a JSON error.
    form_post = request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data")
    return dash_json or (request.method not in ("GET", "HEAD") and not form_post)


def _refuse(status: int, message: str, *, expired: bool = False):
    if _wants_json():
        return jsonify(error=message), status
    args = {"expired": 1} if expired else {}
    if request.method == "GET" and request.path != "/":
        args["next"] = request.full_path.rstrip("?")
    return redirect(url_for("auth.login", **args))


def _interval_only() -> bool:
    """Say whether this is a Dash update fired only by timers (``dcc.Interval``), not a person.

    An open page that refreshes itself must not keep its session alive forever:
    such requests are checked as usual but do not count as activity.
    """
    if request.path != "/_dash-update-component" or request.method != "POST":
        return False
    body = request.get_json(silent=True)
    changed = body.get("changedPropIds") if isinstance(body, dict) else None
    return (isinstance(changed, list) and bool(changed)
            and all(isinstance(prop, str) and prop.endswith(".n_intervals") for prop in changed))


def guard():
    """Refuse every non-public request that lacks a live login session."""
    if is_public(request.path):
        return None
    if not current_user.is_authenticated:
        expired = "_user_id" in session
        session.clear()
        return _refuse(401, "login required", expired=expired)
    if not sessions.is_alive(current_user.id):
        log.info("session of user %s ended (timeout, sign-out, password change or "
                 "deactivation)", current_user.id)
        sessions.end()
        logout_user()
        session.clear()
        return _refuse(401, "session expired", expired=True)
    if current_user.must_change_password and request.path not in PASSWORD_CHANGE_PATHS:
        if _wants_json():
            return jsonify(error="password change required"), 403
        return redirect(url_for("auth.change_password"))
    if not _interval_only():
        sessions.touch()
    return None


def init_guard(server: Flask) -> None:
    """Install the guard so that it runs before every other before-request function."""
    server.before_request_funcs.setdefault(None, []).insert(0, guard)
