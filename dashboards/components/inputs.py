"""Checks on values that arrive from the browser before they reach ``kilowatch``."""

from __future__ import annotations

import logging

from dash.exceptions import PreventUpdate

log = logging.getLogger(__name__)


def as_id(value: object) -> int:
    """Return a positive database id sent by the browser, or stop the callback (no update)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31:
        return value
    if isinstance(value, str) and value.isdigit() and 0 < int(value) < 2**31:
        return int(value)
    log.warning("callback refused a malformed id %r", value)
    raise PreventUpdate
