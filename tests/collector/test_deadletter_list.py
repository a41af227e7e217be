"""``kilowatch deadletter list`` shows what devices sent without letting it drive the terminal."""

from __future__ import annotations

import json
import os
import subprocess

EVIL = "\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\x9b31m"


def test_control_characters_from_devices_are_escaped(kw_env, conn):
    conn.execute("INSERT INTO dead_letters (topic, serial, reason, detail, payload) "
                 "VALUES (%s, %s, 'bad_json', %s, %s)",
                 (f"ess/EVIL/telemetry{EVIL}", "EVIL", f"detail {EVIL}", f"payload {EVIL}"))
    env = {**os.environ, **kw_env}
    result = subprocess.run(["kilowatch", "deadletter", "list", "--serial", "EVIL"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for raw in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert raw not in result.stdout
    assert result.stdout.count(r"\x1b]0;pwned\x07\x1b[2J\u202egnp.exe\x9b31m") == 3
    as_json = subprocess.run(["kilowatch", "deadletter", "list", "--serial", "EVIL", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout)["payload"] == f"payload {EVIL}"
