"""Checks on values that arrive from the browser before they reach ``kilowatch``."""

from __future__ import annotations

import logging

from dash.exceptions import PreventUpdate

from kilowatch.ids import parse_id

log = logging.getLogger(__name__)


def as_id(value: object) -> int:
    """Return a database id sent by the browser, or stop the callback (no update)."""
    number = parse_id(value)
    if number is None:
        log.warning("callback refused a malformed id %r", value)
        raise PreventUpdate
    return number


def next_count(changed: object) -> int:
    """Return the next value of a page's "changed" counter store (1 when it holds no int)."""
    return (changed if isinstance(changed, int) else 0) + 1
