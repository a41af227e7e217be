"""The base of every error a person can cause and fix: its message is shown as it is.

``kilowatch``'s CLI turns any :class:`UserFacingError` into one line on stderr
(``kilowatch.cli._Group``), so a command never prints a traceback for a bad
argument. Raise a subclass for what the person at the keyboard can change (an
unknown name, a bad date, an invalid schedule); let programming errors through.
"""

from __future__ import annotations


class UserFacingError(Exception):
    """An error caused by what someone asked for, with a message they understand."""
