"""Refuse state-changing requests that a browser sent from another site (Origin, then Referer).

Every POST, PUT, PATCH and DELETE, Dash's ``/_dash-update-component`` included,
must come from the web app's own origin: the ``Origin`` header, or when a
browser sent none the ``Referer``, must be the origin of ``KILOWATCH_BASE_URL``
or of the request itself (scheme, host and port). A cross-site or ``null``
origin gets 403. A request with neither header is let through: browsers send
``Origin`` on every cross-site POST, so only non-browser clients (the CLI, curl,
scripts) send none, and they carry no victim's cookie. The device API
(``/api/device/``) is not checked at all: devices prove who they are with a code
or a password in the request, never with a cookie, so there is nothing to forge.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Flask, jsonify, request

from auth.scope import app_settings

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UNCHECKED_PREFIXES = ("/api/device/",)
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) of a URL, or None when it names no web origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def _own_origins() -> set[tuple[str, str, int]]:
    own = {origin_of(app_settings().base_url), origin_of(request.host_url)}
    own.discard(None)
    return own


def _claimed_origin() -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin
    return request.headers.get("Referer")


def check_origin():
    """Answer 403 to a state-changing request whose Origin (or Referer) is another site."""
    if request.method not in STATE_CHANGING or request.path.startswith(UNCHECKED_PREFIXES):
        return None
    claimed = _claimed_origin()
    if claimed is None:
        return None
    if origin_of(claimed) in _own_origins():
        return None
    log.warning("cross-site %s %s refused: origin %.100r", request.method, request.path, claimed)
    return jsonify(error="cross-site request refused: this request did not come from a page "
                         "of this site"), 403


def init_origin_check(server: Flask) -> None:
    """Check the origin before every other before-request function (the guard included)."""
    server.before_request_funcs.setdefault(None, []).insert(0, check_origin)
