"""Cells that spreadsheets open as text: no formula runs from text a device or a user wrote.

OWASP's CSV-injection rule: a text cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return gets a leading ``'``, so Excel, LibreOffice and
Google Sheets show it instead of evaluating it. Numbers stay numbers, negative
ones included. XLSX files are written with xlsxwriter's ``TEXT_OPTIONS``, under
which a string is always stored as a string, never as a formula or a link.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# xlsxwriter.Workbook options: write() never turns a string into a formula, number or link.
TEXT_OPTIONS = {"strings_to_formulas": False, "strings_to_numbers": False,
                "strings_to_urls": False}


def text_cell(value: Any) -> Any:
    """Return a CSV cell value with text that would start a formula quoted by a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def text_row(values) -> list:
    """Return a CSV row with :func:`text_cell` applied to every value."""
    return [text_cell(value) for value in values]
