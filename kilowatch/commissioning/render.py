"""Render a commissioning report's content as HTML and as a PDF, from the same sections.

The PDF is made with ReportLab rather than WeasyPrint: ReportLab is pure Python
(wheels on PyPI, maintained since 2000, BSD licence) and needs no system
libraries, while WeasyPrint needs Pango and its fonts from the operating
system, one more thing to install and keep in step on every server and CI
runner. The report is tables and paragraphs, which ReportLab's ``platypus``
lays out (page breaks, wrapped cells, repeated table headers) without HTML.
The PDF uses the standard Helvetica fonts: characters outside Latin-1 (rare in
names and comments) may show as blanks in the PDF; the HTML keeps them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import io
from zoneinfo import ZoneInfo

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle


@dataclasses.dataclass(frozen=True)
class Section:
    """One titled part of the report: paragraphs, then an optional table."""

    title: str
    paragraphs: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    empty: str = ""
    widths: tuple[float, ...] = ()  # share of the page width per column (PDF)


def local_time(value: str | None, timezone: str) -> str:
    """Return an ISO time as ``YYYY-MM-DD HH:MM`` in the site's zone ('—' for none)."""
    if not value:
        return "—"
    return f"{dt.datetime.fromisoformat(value).astimezone(ZoneInfo(timezone)):%Y-%m-%d %H:%M}"


def _number(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g} {unit}"


def title(content: dict) -> str:
    """Return the report's title line."""
    return f"Commissioning report v{content['version']} — {content['site']['name']}"


def sections(content: dict) -> list[Section]:
    """Split the content into the sections both renderings show, in order."""
    site, tz = content["site"], content["site"]["timezone"]
    support = content["support"]
    contact = [f"E-mail: {support['email']}"] + (
        [f"Phone: {support['phone']}"] if support.get("phone") else [])
    return [
        Section("Site", paragraphs=(
            f"{site['name']} · {site['company']}",
            f"Address: {site.get('address') or '—'} · time zone {tz}",
            f"Issued {local_time(content['issued_at'], tz)} by {content['issued_by']}")),
        Section("Checklist", headers=("Item", "State", "Detail"), rows=tuple(
            (i["label"], "ok" if i["ok"] else "missing", i["detail"])
            for i in content["checklist"]), widths=(0.27, 0.1, 0.63)),
        Section("Inventory", headers=(
            "Serial", "Model", "Power", "Capacity", "Firmware", "State", "Activated", "First data"),
            rows=tuple((d["serial"], d["model"], _number(d["rated_power_kw"], "kW"),
                        _number(d["capacity_kwh"], "kWh"), d["firmware"] or "—", d["state"],
                        local_time(d["activated_at"], tz), local_time(d["first_data"], tz))
                       for d in content["inventory"]),
            empty="No device registered.", widths=(0.16, 0.1, 0.1, 0.1, 0.1, 0.1, 0.12, 0.12)),
        Section("Logins", paragraphs=("Passwords are never sent or printed: each person "
                                      "chooses their own.",),
                headers=("E-mail", "Name", "Role", "State", "Created"),
                rows=tuple((u["email"], u["name"], u["role"],
                            "active" if u["active"] else "deactivated",
                            local_time(u["created_at"], tz)) for u in content["logins"]),
                empty="No login.", widths=(0.34, 0.22, 0.12, 0.14, 0.18)),
        Section("Actions carried out", headers=("When", "Who", "What", "Detail"),
                rows=tuple((local_time(a["at"], tz), a["who"], a["what"], a["detail"])
                           for a in content["actions"]),
                empty="No recorded action.", widths=(0.16, 0.24, 0.2, 0.4)),
        Section("Support", paragraphs=(support["procedure"], *contact)),
        Section("Commissioner's comment",
                paragraphs=tuple(content["comment"].splitlines()) or ("(none)",)),
    ]


# ---- HTML -------------------------------------------------------------------------------------

_CSS = """body{font-family:Helvetica,Arial,sans-serif;font-size:13px;margin:2em;color:#222}
h1{font-size:20px}h2{font-size:15px;margin-top:1.5em}table{border-collapse:collapse;width:100%}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#eef2f5}"""


def _html_section(section: Section) -> str:
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{html.escape(text)}</p>" for text in section.paragraphs]
    if section.headers and section.rows:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in section.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in section.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    elif section.headers:
        parts.append(f"<p><em>{html.escape(section.empty)}</em></p>")
    return "\n".join(parts)


def to_html(content: dict) -> str:
    """Return the report as a standalone HTML document (every text escaped)."""
    heading = html.escape(title(content))
    body = "\n".join(_html_section(section) for section in sections(content))
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{heading}</title><style>{_CSS}</style></head>\n"
            f"<body><h1>{heading}</h1>\n{body}\n</body></html>\n")


# ---- PDF --------------------------------------------------------------------------------------

_MARGIN = 15 * mm
_STYLES = getSampleStyleSheet()
_CELL = _STYLES["BodyText"].clone("cell", fontSize=8, leading=10)
_HEAD = _CELL.clone("head", fontName="Helvetica-Bold")
_TABLE_STYLE = TableStyle([
    ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f5")),
    ("VALIGN", (0, 0), (-1, -1), "TOP"),
])


def _para(text: str, style=None) -> Paragraph:
    # Paragraph reads a small markup language: every text is escaped first.
    return Paragraph(html.escape(text).replace("\n", "<br/>"), style or _STYLES["BodyText"])


def _pdf_section(section: Section) -> list:
    flow: list = [_para(section.title, _STYLES["Heading2"])]
    flow += [_para(text) for text in section.paragraphs]
    if section.headers and section.rows:
        data = [[_para(h, _HEAD) for h in section.headers]]
        data += [[_para(cell, _CELL) for cell in row] for row in section.rows]
        width = A4[0] - 2 * _MARGIN
        table = Table(data, repeatRows=1, hAlign="LEFT",
                      colWidths=[share * width for share in section.widths] or None)
        table.setStyle(_TABLE_STYLE)
        flow.append(table)
    elif section.headers:
        flow.append(_para(section.empty))
    return flow


def to_pdf(content: dict) -> bytes:
    """Return the report as PDF bytes (A4)."""
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=_MARGIN, rightMargin=_MARGIN,
                            topMargin=_MARGIN, bottomMargin=_MARGIN, title=title(content),
                            author="Kilowatch")
    flow: list = [_para(title(content), _STYLES["Title"]), Spacer(1, 4 * mm)]
    for section in sections(content):
        flow += _pdf_section(section)
    doc.build(flow)
    return buffer.getvalue()
