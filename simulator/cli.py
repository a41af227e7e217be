"""``kilowatch simulate``: a fleet of simulated BESS sites speaking MQTT like real equipment."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from urllib.parse import quote

import click

from kilowatch.cli import UserError
from kilowatch.fleet import SERIAL_PATTERN
from kilowatch.settings import get_settings
from simulator import identity, register, runner
from simulator.alarms import KINDS
from simulator.controller import default_controller
from simulator.link import LinkError, MqttLink
from simulator.schedule_follower import following_controller
from simulator.sites import SiteSpec, make_sites

log = logging.getLogger(__name__)


@click.command("simulate")
@click.option("--sites", "site_count", type=click.IntRange(1, 500), default=3, show_default=True,
              help="Number of simulated sites (one storage device each).")
@click.option("--interval", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              help="Seconds between live samples.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Same seed, same sites, weather, load and faults.")
@click.option("--backfill", "backfill_days", type=click.FloatRange(0, None), default=0.0,
              help="Days of history to publish fast before going live.")
@click.option("--backfill-interval", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, help="Seconds between samples of the backfilled history.")
@click.option("--duration", type=click.FloatRange(0, None), default=None,
              help="Stop after this many seconds of live publishing (default: run until stopped).")
@click.option("--fault-rate", type=click.FloatRange(0, 3600), default=0.02, show_default=True,
              help="Device alarms raised per device and hour, on average.")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of telemetry messages lost (their seq numbers are skipped).")
@click.option("--extra-points", type=click.IntRange(0, 9000), default=0, show_default=True,
              help="Extra per-cell voltage points per device (bms.cell.v_001 …).")
@click.option("--outage", type=click.FloatRange(0, None), default=0.0,
              help="Go silent (no telemetry, no will) for this many seconds once.")
@click.option("--outage-after", type=click.FloatRange(0, None), default=60.0, show_default=True,
              help="Seconds of live publishing before the outage starts.")
@click.option("--stuck-alarm", "stuck_alarms", multiple=True, metavar="SERIAL:CODE",
              help="Raise this alarm on this device when live publishing starts and keep it "
                   f"raised (codes: {', '.join(KINDS)}); repeatable.")
@click.option("--register", "do_register", is_flag=True,
              help="Create the company, sites and devices through the kilowatch CLI first.")
@click.option("--company", default="Demo Energy", show_default=True,
              help="Company that owns the registered sites.")
@click.option("--serial-prefix", default="SIM", show_default=True,
              help="Serials are PREFIX-0001, PREFIX-0002 …")
@click.option("--ignore-schedules", is_flag=True,
              help="Run the built-in program only; do not follow (nor ack) the schedules sent.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              default="kilowatch-simulator-state.json", show_default=True,
              help="File keeping each device's activation code and MQTT credentials (0600).")
def simulate(site_count, interval, seed, backfill_days, backfill_interval, duration, fault_rate,
             drop_rate, extra_points, outage, outage_after, stuck_alarms, do_register, company,
             serial_prefix, ignore_schedules, state_path) -> None:
    """Simulate a fleet of BESS sites publishing telemetry, alarms and status over MQTT.

    Each device activates over HTTPS at KILOWATCH_BASE_URL with its one-time code
    (from --register, or put in the state file) and then connects over TLS with its
    own credentials. A test bench may set KILOWATCH_SIMULATOR_MQTT_URL instead: every
    device then logs in with that account and nothing is activated.
    """
    settings = get_settings()
    if backfill_days >= settings.raw_retention_days:
        raise UserError(f"--backfill must be less than the raw retention "
                        f"({settings.raw_retention_days} days): older data would be rejected")
    sites = _make_sites(site_count, seed, serial_prefix)
    stuck = _stuck_alarms(stuck_alarms, {site.serial for site in sites})
    codes = _register(sites, company) if do_register else {}
    options = runner.RunOptions(
        interval_s=interval, backfill_days=backfill_days, backfill_interval_s=backfill_interval,
        duration_s=duration, fault_rate=fault_rate, drop_rate=drop_rate,
        extra_points=extra_points, outage_s=outage, outage_after_s=outage_after,
        stuck_alarms=stuck)
    if settings.simulator_mqtt_url:
        links = _connect_bench(sites, settings.simulator_mqtt_url, settings.mqtt_prefix)
    else:
        links = _connect_devices(sites, _identities(sites, state_path, codes, do_register))
    factory = default_controller if ignore_schedules else following_controller
    devices = runner.make_devices(sites, links, options, factory)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        runner.run(devices, options, stop)
    except KeyboardInterrupt:
        pass
    finally:
        for link in links:
            link.close()
        for device in devices:
            click.echo(f"{device.site.serial}: stopped at seq {device.seq}, status offline",
                       err=True)


def _make_sites(count: int, seed: int, serial_prefix: str) -> list[SiteSpec]:
    try:
        sites = make_sites(count, seed, serial_prefix)
    except ValueError as error:
        raise UserError(str(error)) from None
    bad = [s.serial for s in sites if not _serial_ok(s.serial)]
    if bad:
        raise UserError(f"--serial-prefix gives invalid serials such as {bad[0]!r} "
                        "(1-64 letters, digits, '-' or '_')")
    return sites


def _stuck_alarms(values: tuple[str, ...], serials: set[str]) -> tuple[tuple[str, str], ...]:
    stuck = []
    for value in values:
        serial, _, code = value.rpartition(":")
        if serial not in serials:
            raise UserError(f"--stuck-alarm {value!r}: expected SERIAL:CODE with the serial of a "
                            f"simulated device such as {min(serials)}")
        if code not in KINDS:
            raise UserError(f"--stuck-alarm {value!r}: unknown alarm code {code!r} "
                            f"(expected one of {', '.join(KINDS)})")
        stuck.append((serial, code))
    return tuple(stuck)


def _serial_ok(serial: str) -> bool:
    return bool(SERIAL_PATTERN.match(serial))


def _register(sites: list[SiteSpec], company: str) -> dict[str, str]:
    try:
        lines, codes = register.register_fleet(sites, company)
    except register.RegisterError as error:
        raise UserError(str(error)) from None
    for line in lines:
        click.echo(line, err=True)
    return codes


def _identities(sites: list[SiteSpec], state_path: Path, codes: dict[str, str],
                may_issue: bool) -> dict[str, dict]:
    """Return each device's activation answer, activating those that have none yet."""
    settings = get_settings()
    try:
        state = identity.StateFile(state_path)
        for serial, code in codes.items():
            state.set_code(serial, code)
        for site in sites:
            if state.credentials(site.serial):
                continue
            code = state.code(site.serial) or (register.new_code(site.serial) if may_issue
                                               else None)
            if code is None:
                raise UserError(f"{site.serial} has no credentials nor activation code in "
                                f"{state_path}: run with --register, or add its code there")
            answer = identity.activate(settings.base_url, site.serial, code, site.firmware,
                                       ca_file=settings.mqtt_ca_file)
            state.set_credentials(site.serial, answer)
            click.echo(f"{site.serial} activated", err=True)
    except (identity.IdentityError, register.RegisterError) as error:
        raise UserError(str(error)) from None
    return {site.serial: state.credentials(site.serial) for site in sites}


def _connect_bench(sites: list[SiteSpec], url: str, prefix: str) -> list[MqttLink]:
    return _connect_all([(MqttLink(url=url, prefix=prefix, serial=site.serial,
                                   firmware=site.firmware)) for site in sites])


def _connect_devices(sites: list[SiteSpec], identities: dict[str, dict]) -> list[MqttLink]:
    links = []
    for site in sites:
        answer = identities[site.serial]
        mqtt_login = answer["mqtt"]
        url = _with_login(mqtt_login["url"], mqtt_login["username"], mqtt_login["password"])
        links.append(MqttLink(url=url, prefix=mqtt_login["prefix"], serial=site.serial,
                              firmware=site.firmware, client_id=mqtt_login["username"],
                              tls=identity.tls_context(answer.get("ca_certificate", ""))))
    return _connect_all(links)


def _with_login(url: str, username: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


def _connect_all(links: list[MqttLink]) -> list[MqttLink]:
    connected: list[MqttLink] = []
    try:
        for link in links:
            _connect_with_retry(link)
            connected.append(link)
    except LinkError as error:
        for link in connected:
            link.close(timeout_s=2)
        raise UserError(str(error)) from None
    return connected


def _connect_with_retry(link: MqttLink, patience_s: float = 15.0) -> None:
    # A device activated a moment ago waits for the platform to create its broker account.
    deadline = time.monotonic() + patience_s
    while True:
        try:
            link.connect()
            return
        except LinkError as error:
            if "Not authorized" not in str(error) or time.monotonic() > deadline:
                raise
            link.reset()
            time.sleep(0.5)
