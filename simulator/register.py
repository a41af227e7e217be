"""Register the simulated fleet through the platform's own CLI, as an operator would.

Runs ``kilowatch company create``, ``site create`` and ``device register`` as
subprocesses (never touching the database directly). Items that already exist
are fine, so registering the same fleet twice changes nothing.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

from simulator.sites import SiteSpec

log = logging.getLogger(__name__)

_ALREADY = re.compile(r"already (exists|has a site named|registered)")
_CREATED_SITE = re.compile(r"^site (\d+) created", re.MULTILINE)


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


def register_fleet(sites: list[SiteSpec], company: str) -> list[str]:
    """Create the company, its sites and their devices; return one line per action."""
    report = []
    created, _ = kilowatch("company", "create", company)
    report.append(f"company {company!r} {'created' if created else 'already exists'}")
    for site in sites:
        report.extend(register_site(site, company))
    return report


def register_site(site: SiteSpec, company: str) -> list[str]:
    """Create one site and register its storage device."""
    created, output = kilowatch(
        "site", "create", "--company", company, "--name", site.name,
        "--timezone", site.timezone, "--latitude", str(site.latitude),
        "--longitude", str(site.longitude), "--address", site.address)
    match = _CREATED_SITE.search(output) if created else None
    site_ref = match.group(1) if match else site.name
    registered, _ = kilowatch(
        "device", "register", "--site", site_ref, "--serial", site.serial,
        "--model", site.model, "--rated-power-kw", str(site.rated_power_kw),
        "--capacity-kwh", str(site.capacity_kwh))
    return [f"site {site.name!r} {'created' if created else 'already exists'}",
            f"device {site.serial} {'registered' if registered else 'already registered'}"]
