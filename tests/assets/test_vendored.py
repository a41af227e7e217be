"""Vendored files in assets/ are exactly the upstream files recorded in assets/vendored.json."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

ASSETS = Path(__file__).resolve().parents[2] / "assets"
RECORD = json.loads((ASSETS / "vendored.json").read_text())
SOURCE_MAP_LINE = b"/*# sourceMappingURL=bootstrap.min.css.map */"


@pytest.mark.parametrize("name", sorted(RECORD))
def test_a_vendored_file_has_its_recorded_sha256(name):
    assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == RECORD[name]["sha256"]


def test_bootstrap_is_the_upstream_release_but_its_source_map_line():
    entry = RECORD["bootstrap.min.css"]
    content = (ASSETS / "bootstrap.min.css").read_bytes()
    assert f"Bootstrap  v{entry['version']} ".encode() in content[:100]
    upstream = content + SOURCE_MAP_LINE
    assert base64.b64encode(hashlib.sha384(upstream).digest()).decode() == \
        entry["upstream_sha384"]
