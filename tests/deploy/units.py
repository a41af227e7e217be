"""Read the systemd units of deploy/systemd and turn their ExecStart into a local command."""

from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
INSTALL_DIR = "/opt/kilowatch"  # where docs/deployment.md installs the checkout


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Return a unit file's sections as lists of (key, value), keeping repeated keys."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None, f"{path.name}:{number}: not a key=value line"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict, section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section``."""
    return [value for name, value in unit.get(section, []) if name == key]


def exec_start(path: Path, *, instance: str = "9108", host: str = "host") -> list[str]:
    """The unit's ExecStart as arguments, with %i and %H filled in."""
    [command] = values(read_unit(path), "Service", "ExecStart")
    return shlex.split(command.replace("%i", instance).replace("%H", host))


def local(argv: list[str]) -> list[str]:
    """The same command run from this checkout instead of the installed one."""
    return [arg.replace(INSTALL_DIR, str(ROOT), 1) if arg.startswith(INSTALL_DIR) else arg
            for arg in argv]
