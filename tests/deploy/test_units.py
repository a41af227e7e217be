"""The deployment files parse: systemd units, their commands, the nginx site, the scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import click
import pytest

from kilowatch.cli import main
from tests.deploy.units import INSTALL_DIR, ROOT, UNITS, exec_start, local, read_unit, values

SERVICES = sorted(UNITS.glob("*.service"))
APP_UNITS = ["kilowatch-web.service", "kilowatch-collector@.service", "kilowatch-worker.service"]


def test_every_expected_unit_is_there():
    names = {path.name for path in UNITS.iterdir()}
    assert names == {*APP_UNITS, "kilowatch-backup.service", "kilowatch-backup.timer"}


def test_systemd_verifies_every_unit(tmp_path):
    # systemd checks that ExecStart is executable: point the units at this checkout.
    for path in UNITS.iterdir():
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALL_DIR, str(ROOT)))
    names = [str(tmp_path / name) for name in
             ("kilowatch-web.service", "kilowatch-collector@9108.service",
              "kilowatch-worker.service", "kilowatch-backup.service", "kilowatch-backup.timer")]
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True,
                            text=True, timeout=60)
    # Unknown keys and bad values are only warnings: any output is a failure.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("name", APP_UNITS)
def test_app_units_run_as_their_own_user_with_their_own_login(name):
    unit = read_unit(UNITS / name)
    service = name.removeprefix("kilowatch-").split("@")[0].removesuffix(".service")
    assert values(unit, "Service", "User") == [f"kilowatch-{service}"]
    assert values(unit, "Service", "EnvironmentFile") == [
        "/etc/kilowatch/kilowatch.env", f"/etc/kilowatch/{service}.env"]
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]
    assert values(unit, "Service", "Restart") and values(unit, "Unit", "Description")
    env = (ROOT / "deploy" / "env" / f"{service}.env").read_text()
    assert f"KILOWATCH_{service.upper()}_DATABASE_URL=" in env


@pytest.mark.parametrize("name", APP_UNITS)
def test_exec_start_is_a_real_kilowatch_command(name):
    argv = exec_start(UNITS / name)
    assert argv[0] == f"{INSTALL_DIR}/.venv/bin/kilowatch"
    context = click.Context(main, info_name="kilowatch")
    command_name, command, rest = main.resolve_command(context, argv[1:])
    assert command_name == name.removeprefix("kilowatch-").split("@")[0].removesuffix(".service")
    # Parsing checks every option's name and value without running the command.
    command.make_context(command_name, rest, parent=context)


def test_collector_instances_differ_in_client_id_and_metrics_port():
    one, two = (exec_start(UNITS / "kilowatch-collector@.service", instance=port)
                for port in ("9108", "9109"))
    assert one != two
    assert one[one.index("--metrics-port") + 1] == "9108"
    assert two[two.index("--client-id") + 1] == "kilowatch-collector-host-9109"


def test_backup_runs_the_script_nightly():
    argv = local(exec_start(UNITS / "kilowatch-backup.service"))
    assert Path(argv[0]).is_file() and shutil.which(argv[0]), argv[0]
    timer = read_unit(UNITS / "kilowatch-backup.timer")
    assert values(timer, "Timer", "OnCalendar") and values(timer, "Timer", "Persistent")


@pytest.mark.parametrize("script", ["kilowatch-backup", "kilowatch-admin"])
def test_scripts_are_valid_bash(script):
    result = subprocess.run(["bash", "-n", str(ROOT / "deploy" / script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(nginx).is_file(), "nginx is missing: scripts/bootstrap installs it"
    live = "/etc/letsencrypt/live/kilowatch.example.com/"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=kilowatch.example.com", "-keyout", str(tmp_path / "privkey.pem"),
                    "-out", str(tmp_path / "fullchain.pem")], check=True, capture_output=True)
    site = (ROOT / "deploy" / "nginx" / "kilowatch.conf").read_text()
    assert live in site
    (tmp_path / "site.conf").write_text(site.replace(live, f"{tmp_path}/"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n")
    result = subprocess.run([nginx, "-t", "-q", "-p", str(tmp_path), "-e",
                             str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
