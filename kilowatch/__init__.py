"""Shared core of Kilowatch: settings, database access, domain logic and the CLI."""
