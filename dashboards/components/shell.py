"""The app shell: a navbar with the user's name, company and role-dependent menu; error pages.

Pages declare themselves with ``dash.register_page`` and these extra keys,
which the shell reads:

- ``roles`` (required): the roles allowed to open the page; a page without it
  is shown to nobody (deny by default);
- ``menu``: ``"main"`` for the navbar, ``"admin"`` for the Administration
  menu, absent for pages reached by links only;
- ``order``: position within its menu (default 100).

:func:`protect_pages` wraps every page's layout so that a user without one of
its roles gets the "not allowed" page, as does a layout that raises
``AccessDenied`` (e.g. a site id in the URL outside the user's scope).
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html
from flask_wtf.csrf import generate_csrf

from auth.callbacks import has_role
from auth.scope import SessionUser, current_account
from dashboards.components.alarms import badges as alarm_badges
from kilowatch.access import AccessDenied

log = logging.getLogger(__name__)

ROLE_LABELS = {"viewer": "Viewer", "operator": "Operator", "admin": "Administrator",
               "support": "Support", "superadmin": "Platform operator"}
_PAGE_MARK = "_kilowatch_page"


def not_allowed() -> html.Div:
    """Return the friendly "not allowed" page body."""
    return _message_page("Not allowed", "You do not have access to this page or site.",
                         "kw-not-allowed")


def not_found() -> html.Div:
    """Return the friendly 404 page body."""
    return _message_page("Page not found", "There is nothing at this address.", "kw-not-found")


def _message_page(title: str, text: str, element_id: str) -> html.Div:
    return html.Div(id=element_id, className="kw-message-page text-center py-5", children=[
        html.H1(title, className="h3"),
        html.P(text, className="text-muted"),
        dcc.Link("Back to my sites", href="/", className="btn btn-primary"),
    ])


def _guard_layout(layout, roles) -> object:
    if getattr(layout, _PAGE_MARK, False):
        return layout

    def guarded(**kwargs):
        if not roles or not has_role(roles):
            return not_allowed()
        try:
            return layout(**kwargs) if callable(layout) else layout
        except AccessDenied as error:
            account = current_account()
            log.warning("page refused to %s: %s", account.email if account else "?", error)
            return not_allowed()

    setattr(guarded, _PAGE_MARK, True)
    return guarded


def protect_pages() -> None:
    """Wrap the layout of every registered page with its role check."""
    for page in dash.page_registry.values():
        if not page.get("roles"):
            log.warning("page %s declares no roles: nobody may open it", page["module"])
        page["layout"] = _guard_layout(page["layout"], tuple(page.get("roles") or ()))


def menu_pages(role: str, menu: str) -> list[dict]:
    """Return the registered pages of one menu that a role may open, in order."""
    pages = [page for page in dash.page_registry.values()
             if page.get("menu") == menu and role in (page.get("roles") or ())]
    return sorted(pages, key=lambda page: (page.get("order", 100), page["name"]))


def _nav_link(page: dict) -> dbc.NavItem:
    return dbc.NavItem(dbc.NavLink(page["name"], href=page["relative_path"], active="exact",
                                   id=f"nav-{page['module'].rsplit('.', 1)[-1]}"))


def _user_menu(account: SessionUser) -> dbc.DropdownMenu:
    company = account.company_name or "Kilowatch platform"
    return dbc.DropdownMenu(
        label=account.display_name, id="nav-user", align_end=True, nav=True, in_navbar=True,
        children=[
            dbc.DropdownMenuItem(f"{company} · {ROLE_LABELS[account.role]}", header=True,
                                 id="nav-user-company"),
            dbc.DropdownMenuItem(account.email, disabled=True),
            dbc.DropdownMenuItem(divider=True),
            dbc.DropdownMenuItem("Change password", href="/account/password",
                                 external_link=True),
            _sign_out_form(),
        ],
    )


def _sign_out_form() -> html.Form:
    # A POST with the session's CSRF token, so that no other site can sign the user out;
    # the layout is built per page load, inside the request, so the token is this session's.
    return html.Form(method="POST", action="/logout", className="m-0", children=[
        dcc.Input(type="hidden", name="csrf_token", value=generate_csrf()),
        html.Button("Sign out", type="submit", id="nav-logout", className="dropdown-item"),
    ])


def navbar(account: SessionUser | None) -> dbc.Navbar:
    """Return the navbar for this user: logo, their menus, their name and company."""
    brand = dcc.Link(href="/", className="navbar-brand d-flex align-items-center", children=[
        html.Img(src=dash.get_asset_url("logo.svg"), height="28", alt="", className="me-2"),
        html.Span("Kilowatch"),
    ])
    items = []
    if account is not None:
        items = [_nav_link(page) for page in menu_pages(account.role, "main")]
        admin = menu_pages(account.role, "admin")
        if admin:
            items.append(dbc.DropdownMenu(
                label="Administration", nav=True, in_navbar=True, id="nav-admin",
                children=[dbc.DropdownMenuItem(page["name"], href=page["relative_path"])
                          for page in admin]))
    user = [] if account is None else [alarm_badges.navbar_alarms(), _user_menu(account)]
    return dbc.Navbar(
        dbc.Container(fluid=True, className="kw-navbar-inner", children=[
            brand,
            dbc.Nav(items, navbar=True, className="kw-nav-main me-auto"),
            dbc.Nav(user, navbar=True, className="kw-nav-user"),
        ]),
        color="white", dark=False, className="kw-navbar border-bottom shadow-sm", expand=True,
    )


def app_layout() -> html.Div:
    """Return the whole page around the current page's content (built per page load)."""
    return html.Div(className="kw-app", children=[
        navbar(current_account()),
        dbc.Container(dash.page_container, fluid=True, className="kw-content py-3"),
    ])
