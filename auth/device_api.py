"""The device API over HTTPS: activation with a one-time code, and status reports.

``POST /api/device/activate`` takes ``{"serial", "activation_code", "firmware"?}``
and answers the device's MQTT credentials, the broker URL, the topic prefix and
the CA certificate. ``POST /api/device/status`` takes the MQTT ``status`` message,
authenticated by HTTP Basic with the device's MQTT username and password. Both
answer JSON, with one line saying why on 400, 401 and 429; failed activations
are throttled per serial and per client address. These routes are public in the
request guard: the device proves who it is here, not with a session.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from functools import cache
from importlib import resources

import jsonschema
from flask import Blueprint, Flask, current_app, g, request
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address
from referencing import Registry, Resource

from kilowatch import audit, db
from kilowatch.access import system_scope
from kilowatch.devices import lifecycle
from kilowatch.errors import UserFacingError
from kilowatch.fleet import SERIAL_PATTERN
from kilowatch.settings import get_settings
from kilowatch.telemetry import ingest

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
UNAUTHORIZED = "unknown serial or invalid activation code"


class BadRequest(ValueError):
    """The request is not one the API takes; the message says why in one line."""


def _error(status: int, message: str, **headers: str):
    return {"error": message}, status, headers


def _refuse_big_bodies():
    # Before anything reads the body (the throttle's key reads the serial in it).
    if request.content_length is None:
        return _error(400, "the request needs a Content-Length")
    if request.content_length > MAX_BODY_BYTES:
        return _error(400, f"the body is over {MAX_BODY_BYTES // 1024} KB")
    return None


def _json_body() -> dict:
    if request.mimetype != "application/json":
        raise BadRequest("the body must be JSON (Content-Type: application/json)")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _text(body: dict, name: str, *, max_length: int, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= max_length or "\x00" in value:
        raise BadRequest(f"{name!r} must be a string of 1 to {max_length} characters")
    return value


def _serial_key() -> str:
    if request.content_length is None or request.content_length > MAX_BODY_BYTES:
        return "serial:?"  # refused as too big before the body is read
    try:
        body = json.loads(request.get_data(cache=True))
        serial = body.get("serial") if isinstance(body, dict) else None
    except (ValueError, UnicodeDecodeError):
        serial = None
    return f"serial:{serial if isinstance(serial, str) else '?'}"[:80]


def _refused(_response) -> bool:
    return bool(g.get("activation_refused"))


def activate():
    """Trade a one-time activation code for the device's MQTT credentials."""
    try:
        body = _json_body()
        serial = _text(body, "serial", max_length=64)
        code = _text(body, "activation_code", max_length=64)
        firmware = _text(body, "firmware", max_length=64, required=False)
        if not SERIAL_PATTERN.match(serial):
            raise BadRequest("'serial' must be 1-64 letters, digits, '-' or '_'")
    except BadRequest as error:
        g.activation_refused = True
        return _error(400, str(error))
    try:
        with db.connect(autocommit=True) as conn:
            activation = lifecycle.activate(conn, get_settings(), serial=serial, code=code,
                                            firmware=firmware, client=get_remote_address())
    except lifecycle.ActivationRefused:
        g.activation_refused = True
        return _error(401, UNAUTHORIZED)
    except UserFacingError as error:
        log.error("activation of %s failed: %s", serial, error)
        return _error(503, "activation is unavailable right now; try again later")
    log.info("device %s activated from %s", serial, get_remote_address())
    return activation.as_json(), 200, {"Cache-Control": "no-store"}


def report_status():
    """Record a status report of a device authenticated with its MQTT credentials."""
    auth = request.authorization
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        return _error(401, "log in with the device's MQTT username and password (HTTP Basic)",
                      **{"WWW-Authenticate": 'Basic realm="kilowatch-devices"'})
    try:
        body = _json_body()
        _check_status(body)
    except BadRequest as error:
        return _error(400, str(error))
    now = dt.datetime.now(dt.UTC)
    with db.connect(autocommit=True) as conn:
        device = lifecycle.authenticate(conn, get_settings(), auth.username, auth.password)
        if device is None:
            g.activation_refused = True
            return _error(401, "unknown device or wrong password",
                          **{"WWW-Authenticate": 'Basic realm="kilowatch-devices"'})
        state = body["state"]
        with conn.transaction():
            ingest.apply_activity(conn, {device["id"]: [ingest.Activity(
                now, state == "online", f"status {state} (https)", body.get("firmware"))]})
    return {"stored": True}, 200


def _check_status(body: dict) -> None:
    error = jsonschema.exceptions.best_match(_status_validator().iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        raise BadRequest(f"{where}: {error.message}"[:200])


@cache
def _status_validator() -> jsonschema.protocols.Validator:
    schemas = {name: json.loads(resources.files("kilowatch").joinpath("schemas", name)
                                .read_text()) for name in ("status.json", "telemetry.json")}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values())
    schema = schemas["status.json"]
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


def _throttled(_exceeded: RateLimitExceeded):
    if request.path == "/api/device/activate":
        with db.connect(autocommit=True) as conn:
            audit.record(conn, system_scope(f"device:? from {get_remote_address()}"),
                         "device.activation_throttled", target=_serial_key())
    return _error(429, "too many failed attempts; wait a few minutes, then try again",
                  **{"Retry-After": "300"})


def init_device_api(server: Flask) -> None:
    """Add the device API to the Flask server, throttled with the app's limiter."""
    limiter = server.extensions["kilowatch_limiter"]
    server.config.setdefault("KILOWATCH_DEVICE_LIMIT_SERIAL", "10 per 15 minutes")
    server.config.setdefault("KILOWATCH_DEVICE_LIMIT_IP", "30 per 15 minutes")
    per_serial = limiter.limit(lambda: current_app.config["KILOWATCH_DEVICE_LIMIT_SERIAL"],
                               key_func=_serial_key, deduct_when=_refused,
                               scope="device-serial")
    per_ip = limiter.limit(lambda: current_app.config["KILOWATCH_DEVICE_LIMIT_IP"],
                           key_func=get_remote_address, deduct_when=_refused,
                           scope="device-ip")
    blueprint = Blueprint("device_api", __name__, url_prefix="/api/device")
    blueprint.before_request(_refuse_big_bodies)
    blueprint.add_url_rule("/activate", "activate", per_ip(per_serial(activate)),
                           methods=["POST"])
    blueprint.add_url_rule("/status", "status", per_ip(report_status), methods=["POST"])
    blueprint.register_error_handler(RateLimitExceeded, _throttled)
    server.register_blueprint(blueprint)
