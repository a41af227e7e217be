"""Register the simulated fleet through the platform's own CLI, as an operator would.

Runs ``kilowatch company create``, ``site create`` and ``device register`` as
subprocesses (never touching the database directly), and keeps the activation
code each registration prints, as an installer would. Items that already exist
are fine, so registering the same fleet twice changes nothing.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from simulator.sites import SiteSpec

log = logging.getLogger(__name__)

PARALLEL = 4  # sites registered at once: each CLI call spends most of its time starting up
_ALREADY = re.compile(r"already (exists|has a site named|registered)")
_CREATED_SITE = re.compile(r"^site (\d+) created", re.MULTILINE)
_CODE = re.compile(r"^activation code: (\S+)$", re.MULTILINE)


class RegisterError(RuntimeError):
    """The platform refused to register part of the fleet for a reason other than a duplicate."""


def kilowatch(*args: str) -> tuple[bool, str]:
    """Run ``kilowatch ARGS``; return (created, output), created False when it already existed."""
    result = subprocess.run([sys.executable, "-m", "kilowatch", *args], capture_output=True,
                            text=True, timeout=120, check=False)
    if result.returncode == 0:
        return True, result.stdout
    lines = result.stderr.strip().splitlines()
    message = lines[-1].removeprefix("Error: ") if lines else f"exit status {result.returncode}"
    if _ALREADY.search(message):
        return False, message
    raise RegisterError(f"kilowatch {' '.join(args[:2])}: {message}")


def register_fleet(sites: list[SiteSpec], company: str) -> tuple[list[str], dict[str, str]]:
    """Create the company, then its sites and their devices (a few sites at once).

    Returns one line per action, and the activation code of each device registered now.
    """
    report = []
    codes: dict[str, str] = {}
    created, _ = kilowatch("company", "create", company)
    report.append(f"company {company!r} {'created' if created else 'already exists'}")
    with ThreadPoolExecutor(PARALLEL) as pool:
        registered = list(pool.map(lambda site: register_site(site, company), sites))
    for site, (lines, code) in zip(sites, registered, strict=True):
        report.extend(lines)
        if code:
            codes[site.serial] = code
    return report, codes


def new_code(serial: str) -> str:
    """Ask the platform for a new activation code of an already registered device."""
    _, output = kilowatch("device", "activation-code", "--serial", serial)
    match = _CODE.search(output)
    if match is None:
        raise RegisterError(f"kilowatch device activation-code gave no code for {serial}")
    return match.group(1)


def register_site(site: SiteSpec, company: str) -> tuple[list[str], str | None]:
    """Create one site and register its storage device; return the report and its code."""
    created, output = kilowatch(
        "site", "create", "--company", company, "--name", site.name,
        "--timezone", site.timezone, "--latitude", str(site.latitude),
        "--longitude", str(site.longitude), "--address", site.address)
    match = _CREATED_SITE.search(output) if created else None
    site_ref = match.group(1) if match else site.name
    registered, output = kilowatch(
        "device", "register", "--site", site_ref, "--serial", site.serial,
        "--model", site.model, "--rated-power-kw", str(site.rated_power_kw),
        "--capacity-kwh", str(site.capacity_kwh))
    code = _CODE.search(output) if registered else None
    return ([f"site {site.name!r} {'created' if created else 'already exists'}",
             f"device {site.serial} {'registered' if registered else 'already registered'}"],
            code.group(1) if code else None)
