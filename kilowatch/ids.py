"""Parse database ids that come from outside: the browser, a URL or the command line.

PostgreSQL's ``int`` columns hold 1 … 2**31 - 1. Anything else (a bool, a float,
a list, Unicode digits such as ``"²"`` that ``str.isdigit`` accepts but ``int``
refuses, a number past the column's range) is not an id, and the caller decides
how to refuse it.
"""

from __future__ import annotations

MAX_ID = 2**31 - 1


def parse_id(value: object) -> int | None:
    """Return ``value`` as an id in 1 … 2**31 - 1 (an int or ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    else:
        return None
    return number if 1 <= number <= MAX_ID else None
