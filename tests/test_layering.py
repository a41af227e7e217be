"""The import contracts in pyproject.toml hold for the repository and catch a planted breach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kilowatch", "collector", "dashboards", "auth", "simulator", "tests", "benchmarks")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    # lint-imports analyses the packages found from its working directory first.
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--no-logo"], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_repository_keeps_every_import_contract():
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 5 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("kilowatch/planted.py", "import dashboards.app",
     "The core kilowatch imports none of the programs built on it"),
    ("kilowatch/jobs/planted.py", "from collector import metrics",
     "The core kilowatch imports none of the programs built on it"),
    ("auth/planted.py", "import dashboards",
     "auth does not import dashboards"),
    ("dashboards/planted.py", "from collector.metrics import Metrics",
     "collector and dashboards are independent"),
    ("collector/planted.py", "import dashboards.app",
     "collector and dashboards are independent"),
    ("collector/planted.py", "import simulator.cli",
     "Only the simulator imports the simulator"),
    ("simulator/planted.py", "from tests import conftest",
     "The product imports no tests or benchmarks"),
    ("dashboards/planted.py", "import benchmarks.ingest",
     "The product imports no tests or benchmarks"),
])
def test_a_planted_import_breaks_its_contract(tmp_path, module, line, contract):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / module).write_text(f'"""A breach planted by a test."""\n\n{line}\n')

    result = _lint_imports(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{contract} BROKEN" in result.stdout
    planted = module.removesuffix(".py").replace("/", ".")
    assert f"{planted} -> {line.split()[1]}" in result.stdout
    assert "Contracts: 4 kept, 1 broken." in result.stdout
