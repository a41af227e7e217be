"""The friendly page for addresses that lead nowhere (Dash Pages picks it by name)."""

from __future__ import annotations

import dash

from auth.callbacks import ALL_ROLES
from dashboards.components.shell import not_found

dash.register_page(__name__, path="/404", name="Not found", title="Not found · Kilowatch",
                   roles=ALL_ROLES)


def layout(**_query):
    """Say the page does not exist."""
    return not_found()
