"""``kilowatch schedule``: the real executable against this module's database and broker."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from kilowatch.schedules import delivery as schedule_delivery

BODY = {"timezone": "Europe/Paris", "default_mode": "idle",
        "periods": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "17:00",
                     "end": "21:00", "mode": "discharge", "power_kw": 60, "soc_min": 20}],
        "exceptions": [{"date": "2099-12-25", "name": "Christmas", "periods": []}]}


def run(kw_env, *args, stdin=None, **env):
    """Run the real ``kilowatch`` executable against this module's services."""
    return subprocess.run(["kilowatch", *args], env={**os.environ, **kw_env, **env},
                          input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def depot(kw_env, settings):
    """Site "Depot" of company Acme with one HES-XL (125 kW) and a meter."""
    assert run(kw_env, "company", "create", "Acme").returncode == 0
    assert run(kw_env, "site", "create", "--company", "Acme", "--name", "Depot",
               "--timezone", "Europe/Paris").returncode == 0
    for serial, model in (("CLI-XL", "HES-XL"), ("CLI-M", "meter")):
        assert run(kw_env, "device", "register", "--site", "Depot", "--serial", serial,
                   "--model", model).returncode == 0
    yield "Depot"
    schedule_delivery.publish_retained(
        [(schedule_delivery.schedule_topic("CLI-XL", settings), "")], settings=settings)


def write(tmp_path, body, name="schedule.json"):
    path = tmp_path / name
    path.write_text(body if isinstance(body, str) else json.dumps(body))
    return str(path)


def test_set_show_history_diff_and_restore(kw_env, depot, tmp_path):
    saved = run(kw_env, "schedule", "set", "--site", depot, "--file", write(tmp_path, BODY),
                "--comment", "weekday evening peak")
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.splitlines() == ["revision 1 saved for site Depot",
                                         "published to CLI-XL"]
    shown = run(kw_env, "schedule", "show", "--site", depot)
    assert shown.returncode == 0, shown.stderr
    assert "revision 1 saved" in shown.stdout and "weekday evening peak" in shown.stdout
    assert "delivery: revision 1 pending since" in shown.stdout
    assert "Mon–Fri 17:00–21:00 discharge (power 60 kW, SoC min 20 %)" in shown.stdout
    assert "2099-12-25 (Christmas): default mode all day" in shown.stdout

    # show --json gives back a file that set accepts.
    exported = run(kw_env, "schedule", "show", "--site", depot, "--json").stdout
    assert json.loads(exported)["revision"] == 1
    changed = json.loads(exported)
    changed["periods"][0]["power_kw"] = 100
    assert run(kw_env, "schedule", "set", "--site", depot, "--file",
               write(tmp_path, changed)).returncode == 0

    diff = run(kw_env, "schedule", "diff", "--site", depot, "1", "2")
    assert diff.stdout.strip() == ("changed Mon–Fri 17:00–21:00 discharge (power 60 kW, "
                                   "SoC min 20 %) → discharge (power 100 kW, SoC min 20 %)")
    restored = run(kw_env, "schedule", "restore", "--site", depot, "--revision", "1")
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith("revision 3 saved")
    history = run(kw_env, "schedule", "history", "--site", depot).stdout.splitlines()
    assert [line.split()[0] for line in history] == ["3", "2", "1"]
    assert "restore revision 1 (restores 1)" in history[0]
    assert "weekday evening peak" in history[2]
    assert run(kw_env, "schedule", "diff", "--site", depot, "1", "3").stdout.strip() == \
        "revisions 1 and 3 are the same"


def test_show_names_each_devices_share_on_a_site_with_two_storage_devices(kw_env, settings,
                                                                          depot, tmp_path):
    assert run(kw_env, "site", "create", "--company", "Acme", "--name", "Yard",
               "--timezone", "Europe/Paris").returncode == 0
    for serial, model in (("CLI-Y1", "HES-L"), ("CLI-Y2", "HES-XXL")):
        assert run(kw_env, "device", "register", "--site", "Yard", "--serial", serial,
                   "--model", model).returncode == 0
    # 280 kW is more than either device's rating but within the site's 300 kW.
    body = {**BODY, "periods": [{**BODY["periods"][0], "power_kw": 280}]}
    saved = run(kw_env, "schedule", "set", "--site", "Yard", "--file", write(tmp_path, body))
    assert saved.returncode == 0, saved.stderr
    shown = run(kw_env, "schedule", "show", "--site", "Yard").stdout
    assert "(50 kW, 17 % of the site's power)" in shown
    assert "(250 kW, 83 % of the site's power)" in shown
    assert "published to CLI-Y1, CLI-Y2" in saved.stdout
    schedule_delivery.publish_retained(
        [(schedule_delivery.schedule_topic(s, settings), "") for s in ("CLI-Y1", "CLI-Y2")],
        settings=settings)


def test_invalid_schedule_is_one_clear_line(kw_env, depot, tmp_path):
    bad = {**BODY, "periods": [*BODY["periods"],
                               {"days": ["mon"], "start": "20:00", "end": "22:00",
                                "mode": "charge", "power_kw": 200, "soc_max": 90}]}
    result = run(kw_env, "schedule", "set", "--site", depot, "--file", write(tmp_path, bad))
    assert result.returncode == 1
    assert result.stderr == (
        "Error: the schedule is not valid: period 2 (Monday 20:00–22:00): power 200 kW is "
        "above the site's rated storage power of 125 kW; "
        "Monday 17:00–21:00 overlaps Monday 20:00–22:00\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--file", "/nonexistent/s.json"], "Error: cannot read /nonexistent/s.json: "
                                        "No such file or directory"),
    (["--site", "Nowhere"], "Error: no site matches 'Nowhere'"),
])
def test_bad_arguments_are_one_line_errors(kw_env, depot, tmp_path, args, message):
    options = {"--site": depot, "--file": write(tmp_path, BODY)}
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = run(kw_env, "schedule", "set", *[x for kv in options.items() for x in kv])
    assert result.returncode == 1 and result.stderr.strip() == message


def test_malformed_json_names_line_and_column(kw_env, depot, tmp_path):
    result = run(kw_env, "schedule", "set", "--site", depot, "--file",
                 write(tmp_path, '{"timezone": "Europe/Paris",\n "periods": [}'))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is not valid JSON (line 2, column 14: Expecting value)" in result.stderr


def test_unreachable_broker_saves_but_says_it_is_not_published(kw_env, depot, tmp_path):
    result = run(kw_env, "schedule", "set", "--site", depot, "--file", "-",
                 stdin=json.dumps(BODY), KILOWATCH_MQTT_PUBLISHER_URL="mqtt://127.0.0.1:1")
    assert result.returncode == 3
    revision = result.stdout.split()[1]
    assert result.stdout.startswith(f"revision {revision} saved for site Depot")
    assert result.stderr.startswith(f"Error: revision {revision} is saved but NOT published "
                                    "to CLI-XL: cannot reach the MQTT broker at 127.0.0.1:1")
    shown = run(kw_env, "schedule", "show", "--site", depot).stdout
    assert "(not yet published)" in shown and "pending, not yet published" in shown
    republished = run(kw_env, "schedule", "publish", "--site", depot)
    assert republished.stdout.strip() == f"revision {revision} published to CLI-XL"


def test_show_without_a_schedule(kw_env, depot):
    assert run(kw_env, "site", "create", "--company", "Acme", "--name", "Empty",
               "--timezone", "UTC").returncode == 0
    assert run(kw_env, "schedule", "show", "--site", "Empty").stdout.strip() == \
        "site Empty has no schedule yet"
    assert run(kw_env, "schedule", "history", "--site", "Empty").stdout.strip() == \
        "no schedule yet"
