"""Refuse request bodies over ``KILOWATCH_MAX_CONTENT_LENGTH`` with 413 and one clear line.

Flask's ``MAX_CONTENT_LENGTH`` stops a body while it is read (a chunked one
too); the check here refuses a declared length before anything, the login
guard included, reads a byte of it.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

log = logging.getLogger(__name__)


def _message() -> str:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    size = (f"{limit / 1024 ** 2:.3g} MB" if limit >= 1024 ** 2 else f"{limit / 1024:.3g} KB")
    return f"The request is too large: at most {size} is accepted."


def refuse_large_bodies():
    """Answer 413 before reading a body whose declared length is over the limit."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    return None


def too_large(_error: RequestEntityTooLarge):
    """Say in one line that the body was too large (JSON for API and Dash requests)."""
    log.warning("%s %s refused: body of %s bytes", request.method, request.path,
                request.content_length)
    if request.path.startswith(("/_dash-", "/api/")) or request.is_json:
        return {"error": _message()}, 413
    return _message() + "\n", 413, {"Content-Type": "text/plain; charset=utf-8"}


def init_body_limit(server: Flask, max_bytes: int) -> None:
    """Set the body limit and check it before every other before-request function."""
    server.config["MAX_CONTENT_LENGTH"] = max_bytes
    server.before_request_funcs.setdefault(None, []).insert(0, refuse_large_bodies)
    server.register_error_handler(RequestEntityTooLarge, too_large)
