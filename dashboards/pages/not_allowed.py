"""The friendly page for what the user may not see."""

from __future__ import annotations

import dash

from auth.callbacks import ALL_ROLES
from dashboards.components.shell import not_allowed

dash.register_page(__name__, path="/not-allowed", name="Not allowed",
                   title="Not allowed · Kilowatch", roles=ALL_ROLES)


def layout(**_query):
    """Say the user lacks access."""
    return not_allowed()
