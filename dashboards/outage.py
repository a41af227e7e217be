"""Answer 503 with one clear sentence when the database or Redis does not answer in time.

Every request goes through the login guard, which reads Redis and PostgreSQL;
with either down or hung, their clients give up after a few seconds (see
``kilowatch.redis_client`` and ``kilowatch.db``) and the error lands here: a
short page for people, a JSON error for Dash and API calls, one log line, no
traceback.
"""

from __future__ import annotations

import html
import logging

import flask
import psycopg
import psycopg_pool
import redis

log = logging.getLogger(__name__)

# Errors of an unreachable, hung or overloaded backing service.
OUTAGE_ERRORS = (redis.RedisError, psycopg.OperationalError, psycopg.InterfaceError,
                 psycopg_pool.PoolTimeout)
MESSAGE = ("Kilowatch is temporarily unavailable: one of its services is not answering. "
           "Please try again in a minute.")
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Temporarily unavailable · Kilowatch</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem">
<h1 style="font-size: 1.25rem">Temporarily unavailable</h1>
<p id="outage-message">{message}</p></body></html>"""


def _service(error: Exception) -> str:
    return "Redis" if isinstance(error, redis.RedisError) else "PostgreSQL"


def answer_outage(error: Exception):
    """Log the outage in one line and answer 503 (page or JSON) with a retry hint."""
    log.warning("request %s %s failed: %s unavailable (%s: %s)",
                flask.request.method, flask.request.path, _service(error),
                type(error).__name__, str(error).strip()[:200])
    headers = {"Retry-After": "30", "Cache-Control": "no-store"}
    path = flask.request.path
    machine = path.startswith(("/_dash-", "/api/")) and not path.startswith("/_dash-component")
    if machine or flask.request.method not in ("GET", "HEAD") or path == "/healthz":
        return flask.jsonify(error=MESSAGE, status="unavailable"), 503, headers
    return _PAGE.format(message=html.escape(MESSAGE)), 503, {
        **headers, "Content-Type": "text/html; charset=utf-8"}


def init_outage(server: flask.Flask) -> None:
    """Answer every outage error of a request with 503."""
    for error in OUTAGE_ERRORS:
        server.register_error_handler(error, answer_outage)
