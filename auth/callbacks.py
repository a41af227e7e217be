"""The one way to register a Dash callback: a role check, the caller's scope, and a mark.

Use it exactly like ``dash.callback``, plus the roles allowed to run it::

    from auth.callbacks import current_scope, guarded_callback

    @guarded_callback(Output("site-power-graph", "figure"), Input("site-id", "data"),
                      roles=("viewer", "operator", "admin", "support", "superadmin"))
    def update_power(site_id):
        with connection() as conn:
            site = fleet.get_site(conn, current_scope(), site_id)   # AccessDenied if not allowed
        ...

On every call the wrapper checks that a user is logged in and has one of the
roles (otherwise it answers 403 and logs the attempt), and turns an
``AccessDenied`` raised inside the callback (a site id from the browser that
the scope does not cover) into "no update" (HTTP 204) plus a log line, so that
nothing of another company is ever sent. Each registered function is marked;
:func:`unguarded_callbacks` walks a built app's callback map and lists every
callback that was not registered here — a test fails on any.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterable

import dash
from dash import _callback
from dash.exceptions import PreventUpdate
from flask import abort

from auth.scope import connection, current_account, current_scope
from kilowatch.access import ROLES, AccessDenied

__all__ = ["ADMIN_ROLES", "ADMIN_VIEW_ROLES", "ALL_ROLES", "EDITOR_ROLES", "connection",
           "current_scope", "guarded_callback", "guarded_clientside_callback", "has_role",
           "unguarded_callbacks"]

log = logging.getLogger(__name__)

ALL_ROLES = ROLES
EDITOR_ROLES = ("operator", "admin", "superadmin")
ADMIN_ROLES = ("admin", "superadmin")
# Administration pages that support staff may read (sites, devices), never change.
ADMIN_VIEW_ROLES = ("admin", "support", "superadmin")
MARK = "_kilowatch_roles"

# Dash Pages' own router (renders a page's layout) and its document-title
# callback. The request guard already refuses them without a login, and
# every page layout checks its roles (dashboards.components.shell).
DASH_INTERNAL_OUTPUTS = ("_pages_content.children", "_pages_store.data", "_pages_dummy.children")

# Ids of client-side callbacks registered through guarded_clientside_callback:
# they run in the browser and never reach the server, but must still be declared.
_CLIENTSIDE_IDS: set[str] = set()


def _check_roles(roles: Iterable[str]) -> frozenset[str]:
    allowed = frozenset(roles)
    unknown = allowed - set(ROLES)
    if not allowed or unknown:
        raise ValueError(f"roles must be a non-empty subset of {ROLES}, not {sorted(roles)}")
    return allowed


def has_role(roles: Iterable[str]) -> bool:
    """Say whether the logged-in user has one of these roles."""
    account = current_account()
    return account is not None and account.role in set(roles)


def _enforce(name: str, allowed: frozenset[str]) -> None:
    account = current_account()
    if account is None:
        log.warning("callback %s refused: no logged-in user", name)
        abort(401)
    if account.role not in allowed:
        log.warning("callback %s refused to %s (role %s)", name, account.email, account.role)
        abort(403)


def guarded_callback(*args, roles: Iterable[str] = ALL_ROLES, **kwargs) -> Callable:
    """Register a server-side Dash callback that only ``roles`` may run (see module doc)."""
    allowed = _check_roles(roles)
    if kwargs.get("background"):
        raise TypeError("background callbacks run outside the request; they cannot be guarded")

    def decorator(func: Callable) -> Callable:
        if inspect.iscoroutinefunction(func):
            raise TypeError("guarded callbacks are synchronous functions")
        name = f"{func.__module__}.{func.__qualname__}"

        @functools.wraps(func)
        def wrapper(*call_args, **call_kwargs):
            _enforce(name, allowed)
            try:
                return func(*call_args, **call_kwargs)
            except AccessDenied as error:
                account = current_account()
                log.warning("callback %s: %s asked for something outside their scope (%s)",
                            name, account.email if account else "?", error)
                raise PreventUpdate from None

        setattr(wrapper, MARK, allowed)
        dash.callback(*args, **kwargs)(wrapper)
        return func

    return decorator


def guarded_clientside_callback(clientside_function, *args, **kwargs) -> None:
    """Register a browser-only callback (no server data) and mark it as reviewed."""
    before = set(_callback.GLOBAL_CALLBACK_MAP)
    dash.clientside_callback(clientside_function, *args, **kwargs)
    _CLIENTSIDE_IDS.update(set(_callback.GLOBAL_CALLBACK_MAP) - before)


def _is_internal(callback_id: str) -> bool:
    outputs = callback_id.strip(".").split("...")
    return all(output in DASH_INTERNAL_OUTPUTS for output in outputs)


def unguarded_callbacks(app: dash.Dash) -> list[str]:
    """Return the ids of the app's callbacks not registered through this module.

    Call it after the app served one request (Dash copies page callbacks into
    ``app.callback_map`` then).
    """
    missing = []
    for callback_id, entry in {**_callback.GLOBAL_CALLBACK_MAP, **app.callback_map}.items():
        function = entry.get("callback")
        if function is not None:
            if getattr(function, MARK, None) is None and not _is_internal(callback_id):
                missing.append(callback_id)
        elif callback_id not in _CLIENTSIDE_IDS and not _is_internal(callback_id):
            missing.append(callback_id)
    return sorted(missing)
