"""Checks on free text that arrives from the browser before it reaches ``kilowatch``.

A forged callback can send a number, a list or an object where an input sends
a string; ``text`` turns anything but a string into ``""`` so the usual "this
field is required" message answers it instead of an AttributeError.
"""

from __future__ import annotations


def text(value: object, max_len: int) -> str:
    """Return a browser-supplied string cut to ``max_len`` characters, or "" when it is not one."""
    if not isinstance(value, str):
        return ""
    return value[:max_len]
