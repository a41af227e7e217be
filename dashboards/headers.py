"""The web app's security headers: a Content-Security-Policy that Dash works under, HSTS and more.

Scripts load only from the app itself plus Dash's own inline scripts (the
renderer's start and clientside callbacks), allowed one by one by their
SHA-256 (``Dash.csp_hashes``), so an injected ``<script>`` never runs. Styles
may be inline: Plotly and the React components write ``style`` attributes and
``<style>`` elements. No page may be framed (``frame-ancestors 'none'``, and
``X-Frame-Options: DENY`` for old browsers). When ``KILOWATCH_BASE_URL`` is
https, ``Strict-Transport-Security`` tells browsers to use nothing else for a
year. A route that sets its own policy (the stored commissioning report) keeps it.
"""

from __future__ import annotations

import dash
import flask

from kilowatch.settings import Settings, uses_https

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
HSTS = "max-age=31536000"
POLICY = {
    "default-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data: blob:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(app: dash.Dash) -> str:
    """Return the policy, its script-src allowing the app's scripts and Dash's inline ones."""
    scripts = " ".join(["'self'", *dict.fromkeys(app.csp_hashes())])
    return "; ".join(f"{name} {value}" for name, value in
                     {**POLICY, "script-src": scripts}.items())


def init_headers(app: dash.Dash, settings: Settings) -> None:
    """Add the security headers to every response of the app's server."""
    headers = dict(HEADERS)
    if uses_https(settings):
        headers["Strict-Transport-Security"] = HSTS

    def add(response: flask.Response) -> flask.Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if "Content-Security-Policy" not in response.headers:
            # Computed per response: pages may add clientside callbacks at their import.
            response.headers["Content-Security-Policy"] = content_security_policy(app)
        return response

    app.server.after_request(add)
