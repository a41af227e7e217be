"""The words of alarm e-mails: subject, plain text and HTML, in English or French.

Pure functions of the alarms (already read through the recipient's scope), the
recipient and the base URL; every value put into HTML is escaped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from zoneinfo import ZoneInfo

from kilowatch.alarms.rules import format_duration

MAX_SUMMARY_LINES = 50
COLORS = {"critical": "#b91c1c", "major": "#c2410c", "minor": "#a16207", "warning": "#475569"}

TEXTS = {
    "en": {
        "raised": "{severity} {code} at {site}",
        "cleared": "Cleared: {code} at {site}",
        "reminder": "Reminder: unacknowledged {severity} {code} at {site}",
        "comm_lost": "{site}: device {serial} is offline",
        "comm_back": "{site}: device {serial} is back online",
        "summary": "{count} alarm notifications",
        "intro_raised": "An alarm was raised.",
        "intro_cleared": "An alarm was cleared.",
        "intro_reminder": "This critical alarm is still active and nobody has acknowledged it.",
        "intro_comm_lost": "The platform has not heard from this device: it is offline.",
        "intro_comm_back": "The device is talking to the platform again.",
        "intro_summary": "Many alarms changed at once; here they are in one message.",
        "site": "Site", "device": "Device", "severity": "Severity", "code": "Code",
        "message": "Message", "raised_at": "Raised", "cleared_at": "Cleared",
        "duration": "Duration", "open": "Open the alarm", "open_list": "Open the alarm list",
        "more": "… and {count} more.",
        "kinds": {"raised": "raised", "cleared": "cleared", "reminder": "reminder"},
        "footer": "You receive this e-mail from Kilowatch because of your notification "
                  "settings or your role. Change them at {url}",
    },
    "fr": {
        "raised": "{severity} {code} sur {site}",
        "cleared": "Terminée : {code} sur {site}",
        "reminder": "Rappel : {severity} {code} non acquittée sur {site}",
        "comm_lost": "{site} : l'équipement {serial} est hors ligne",
        "comm_back": "{site} : l'équipement {serial} est de nouveau en ligne",
        "summary": "{count} notifications d'alarme",
        "intro_raised": "Une alarme a été déclenchée.",
        "intro_cleared": "Une alarme est terminée.",
        "intro_reminder": "Cette alarme critique est toujours active et personne ne l'a acquittée.",
        "intro_comm_lost": "La plateforme ne reçoit plus rien de cet équipement : il est hors "
                           "ligne.",
        "intro_comm_back": "L'équipement communique de nouveau avec la plateforme.",
        "intro_summary": "De nombreuses alarmes ont changé en même temps ; les voici en un seul "
                         "message.",
        "site": "Site", "device": "Équipement", "severity": "Gravité", "code": "Code",
        "message": "Message", "raised_at": "Déclenchée", "cleared_at": "Terminée",
        "duration": "Durée", "open": "Ouvrir l'alarme", "open_list": "Ouvrir la liste des alarmes",
        "more": "… et {count} de plus.",
        "kinds": {"raised": "déclenchée", "cleared": "terminée", "reminder": "rappel"},
        "footer": "Vous recevez cet e-mail de Kilowatch en raison de vos préférences de "
                  "notification ou de votre rôle. Modifiez-les sur {url}",
    },
}
SEVERITY_WORDS = {"en": {"critical": "CRITICAL", "major": "MAJOR", "minor": "MINOR",
                         "warning": "WARNING"},
                  "fr": {"critical": "CRITIQUE", "major": "MAJEURE", "minor": "MINEURE",
                         "warning": "AVERTISSEMENT"}}


@dataclasses.dataclass(frozen=True)
class Email:
    """One e-mail ready for the outbox."""

    subject: str
    text: str
    html: str


def subject_line(text: str) -> str:
    """Return a one-line subject (names typed by people may hold line breaks)."""
    return " ".join(f"[Kilowatch] {text}".split())[:200]


def language_of(code: str | None) -> str:
    """Return the e-mail language for a user's language code (English when not translated)."""
    base = (code or "en").split("-")[0]
    return base if base in TEXTS else "en"


def _local(moment: dt.datetime | None, timezone: str) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _headline_key(alarm: dict, kind: str) -> str:
    if alarm["code"] == "COMM_LOST" and kind in ("raised", "cleared"):
        return "comm_lost" if kind == "raised" else "comm_back"
    return kind


def _fields(alarm: dict, words: dict, lang: str) -> list[tuple[str, str]]:
    rows = [(words["site"], f"{alarm['site_name']} ({alarm['company_name']})"),
            (words["device"], f"{alarm['serial']} ({alarm['model']})"),
            (words["severity"], SEVERITY_WORDS[lang][alarm["severity"]]),
            (words["code"], alarm["code"]),
            (words["message"], alarm["message"] or "—"),
            (words["raised_at"], _local(alarm["raised_at"], alarm["timezone"]))]
    if alarm["cleared_at"] is not None:
        rows += [(words["cleared_at"], _local(alarm["cleared_at"], alarm["timezone"])),
                 (words["duration"], format_duration(alarm["duration_s"]))]
    return rows


def html_page(title: str, intro: str, body: str, footer: str) -> str:
    """Return an e-mail's HTML: a title, an introduction, a body (already HTML), a footer."""
    return (
        "<!doctype html><html><body style=\"font-family:Arial,sans-serif;color:#111827\">"
        f"<h2 style=\"font-size:18px\">{html.escape(title)}</h2>"
        f"<p>{html.escape(intro)}</p>{body}"
        f"<p style=\"color:#6b7280;font-size:12px\">{html.escape(footer)}</p></body></html>")


def single(alarm: dict, kind: str, *, language: str, base_url: str) -> Email:
    """Return the e-mail about one alarm: ``raised``, ``cleared`` or ``reminder``."""
    lang = language_of(language)
    words = TEXTS[lang]
    key = _headline_key(alarm, kind)
    headline = words[key].format(severity=SEVERITY_WORDS[lang][alarm["severity"]],
                                 code=alarm["code"], site=alarm["site_name"],
                                 serial=alarm["serial"])
    link = f"{base_url.rstrip('/')}/alarms/{alarm['id']}"
    footer = words["footer"].format(url=f"{base_url.rstrip('/')}/account/notifications")
    fields = _fields(alarm, words, lang)
    text = "\n".join([words[f"intro_{key}"], "",
                      *(f"{label}: {value}" for label, value in fields), "",
                      f"{words['open']}: {link}", "", footer, ""])
    rows = "".join(f"<tr><th align=\"left\" style=\"padding:2px 12px 2px 0\">"
                   f"{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                   for label, value in fields)
    color = COLORS[alarm["severity"]]
    body = (f"<table style=\"border-left:4px solid {color};padding-left:8px\">{rows}</table>"
            f"<p><a href=\"{html.escape(link)}\">{html.escape(words['open'])}</a></p>")
    return Email(subject_line(headline), text,
                 html_page(headline, words[f"intro_{key}"], body, footer))


def summary(items: list[tuple[dict, str]], *, language: str, base_url: str) -> Email:
    """Return one e-mail listing many (alarm, kind) notifications, newest first."""
    lang = language_of(language)
    words = TEXTS[lang]
    base = base_url.rstrip("/")
    headline = words["summary"].format(count=len(items))
    shown = items[:MAX_SUMMARY_LINES]
    lines, rows = [], []
    for alarm, kind in shown:
        link = f"{base}/alarms/{alarm['id']}"
        what = (f"{SEVERITY_WORDS[lang][alarm['severity']]} {alarm['code']} "
                f"({words['kinds'][kind]})")
        where = f"{alarm['site_name']} · {alarm['serial']}"
        when = _local(alarm["cleared_at"] if kind == "cleared" else alarm["raised_at"],
                      alarm["timezone"])
        lines.append(f"- {when} {what} — {where}: {alarm['message'] or '—'}\n  {link}")
        rows.append(f"<tr><td>{html.escape(when)}</td>"
                    f"<td style=\"color:{COLORS[alarm['severity']]}\">{html.escape(what)}</td>"
                    f"<td>{html.escape(where)}</td><td>{html.escape(alarm['message'] or '—')}</td>"
                    f"<td><a href=\"{html.escape(link)}\">#{alarm['id']}</a></td></tr>")
    more = words["more"].format(count=len(items) - len(shown)) if len(items) > len(shown) else ""
    footer = words["footer"].format(url=f"{base}/account/notifications")
    text = "\n".join([words["intro_summary"], "", *lines, more, "",
                      f"{words['open_list']}: {base}/alarms", "", footer, ""])
    body = (f"<table cellpadding=\"4\" style=\"border-collapse:collapse\">{''.join(rows)}</table>"
            f"<p>{html.escape(more)}</p>"
            f"<p><a href=\"{html.escape(base)}/alarms\">{html.escape(words['open_list'])}</a></p>")
    return Email(subject_line(headline), text,
                 html_page(headline, words["intro_summary"], body, footer))
