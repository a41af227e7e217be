"""Build the Kilowatch web app: a Flask server with login and guard, and Dash Pages on it."""

from __future__ import annotations

import logging
from pathlib import Path

import dash
import flask

import auth
from dashboards import export, headers, outage, reports
from dashboards.components import shell
from kilowatch import db
from kilowatch.redis_client import get_redis
from kilowatch.settings import Settings, get_settings

log = logging.getLogger(__name__)

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE.parent / "assets"
PAGES = PACKAGE / "pages"


def healthz():
    """Answer 200 when the database and Redis answer, 503 otherwise (no details)."""
    settings = flask.current_app.config["KILOWATCH_SETTINGS"]
    try:
        with db.connection(settings) as conn:
            conn.execute("SELECT 1")
        get_redis(settings).ping()
    except outage.OUTAGE_ERRORS as error:
        return outage.answer_outage(error)
    except Exception:
        log.exception("health check failed")
        return {"status": "unavailable"}, 503
    return {"status": "ok"}


def device_api_not_found(rest: str):
    """Answer 404 under the device API prefix rather than Dash's catch-all page."""
    return {"error": "not found"}, 404


def _callback_request_problem(app: dash.Dash, body) -> str | None:
    """Say what is wrong with a callback request body, or None when it is well formed."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), str):
        return "a callback request is a JSON object with an output"
    entry = app.callback_map.get(body["output"])
    if entry is None:
        return "unknown callback"
    for part in ("inputs", "state"):
        items = body.get(part, [])
        if not isinstance(items, list) or len(items) != len(entry[part]):
            return f"the callback expects {len(entry[part])} {part}"
    if not isinstance(body.get("outputs"), dict | list):
        return "a callback request names its outputs"
    return None


def _check_callback_requests(app: dash.Dash):
    def check():
        if flask.request.path != "/_dash-update-component":
            return None
        problem = _callback_request_problem(app, flask.request.get_json(silent=True))
        if problem:
            log.warning("malformed callback request: %s", problem)
            return {"error": problem}, 400
        return None
    return check


def create_app(settings: Settings | None = None) -> dash.Dash:
    """Return the Dash app with every page, behind login and the deny-by-default guard."""
    settings = settings or get_settings()
    server = flask.Flask(__name__)
    server.add_url_rule("/healthz", "healthz", healthz)
    server.add_url_rule("/api/device/<path:rest>", "device_api_not_found", device_api_not_found,
                        methods=["GET", "POST", "PUT", "DELETE"])
    outage.init_outage(server)
    app = dash.Dash(
        __name__,
        server=server,
        use_pages=True,
        pages_folder=str(PAGES),
        assets_folder=str(ASSETS),
        title="Kilowatch",
        update_title=None,
        suppress_callback_exceptions=True,
        serve_locally=True,
    )
    auth.init_app(server, settings)
    headers.init_headers(app, settings)
    export.init_export(server)
    reports.init_reports(server)
    server.before_request(_check_callback_requests(app))
    shell.protect_pages()
    app.layout = shell.app_layout
    _finish_dash_setup(app)
    return app


def _finish_dash_setup(app: dash.Dash) -> None:
    # Dash sets itself up on a process's first request (scripts it may serve, the
    # pages router, the callback map) and marks that done before finishing, so under
    # gunicorn's threads the requests racing the first one saw no scripts (404) and
    # missing callbacks. Run Dash's own first-request hooks now, before serving.
    with app.server.test_request_context("/"):
        for hook in list(app.server.before_request_funcs[None]):
            if getattr(hook, "__qualname__", "").startswith("Dash."):
                hook()
