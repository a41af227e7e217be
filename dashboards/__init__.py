"""The Dash web app: app factory, pages, components and per-page callbacks."""
