"""``kilowatch web`` refuses to serve with the public development secret key."""

from __future__ import annotations

import os
import subprocess

from kilowatch.settings import DEFAULT_SECRET_KEY


def _web(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kilowatch", "web", "--host", "256.0.0.1", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_web_without_a_secret_key_stops_with_one_line(kw_env):
    env = {k: v for k, v in {**os.environ, **kw_env}.items() if k != "KILOWATCH_SECRET_KEY"}
    result = _web(env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: KILOWATCH_SECRET_KEY"), result.stderr


def test_web_with_the_development_key_spelled_out_stops_too(kw_env):
    result = _web({**os.environ, **kw_env, "KILOWATCH_SECRET_KEY": DEFAULT_SECRET_KEY})
    assert result.returncode != 0 and "KILOWATCH_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
