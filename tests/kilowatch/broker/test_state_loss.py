"""A broker that lost its state is repaired from the database: no device re-activates."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import time

import pytest

from kilowatch import db
from kilowatch.broker import config
from kilowatch.settings import load_settings
from tests.collector.helpers import count_rows, running_collector, telemetry
from tests.collector.servers import Mosquitto
from tests.conftest import wait_for
from tests.kilowatch.broker.devices import Device, activated_device, make_site


@pytest.fixture
def broker():
    private = Mosquitto().start()
    yield private
    private.remove()


def _wipe(broker: Mosquitto) -> None:
    """Stop the broker, delete its accounts, roles and sessions, start it with the admin only."""
    broker.process.kill()
    broker.process.wait(10)
    data = broker.dir / "data"
    shutil.rmtree(data)
    data.mkdir()
    files = config.BrokerFiles(directory=data, cafile=broker.files.cafile,
                               certfile=broker.files.certfile, keyfile=broker.files.keyfile)
    config.init_security(files, broker.admin_url)
    shutil.chown(data, "mosquitto", "mosquitto")
    for child in data.iterdir():
        shutil.chown(child, "mosquitto", "mosquitto")
    broker.start()


def test_devices_and_services_come_back_within_a_minute_without_activation(kw_env, broker):
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    env = {**kw_env, **broker.logins(prefix),
           "KILOWATCH_MQTT_DEVICE_URL": f"mqtts://127.0.0.1:{broker.tls_port}"}
    env.pop("KILOWATCH_SIMULATOR_MQTT_URL")
    settings = load_settings(env)
    serial = f"LOSS-{secrets.token_hex(3)}"
    with db.connect(settings.database_url, autocommit=True) as conn:
        password = activated_device(conn, settings, make_site(conn), serial)
        device_id = conn.execute("SELECT id FROM devices WHERE serial = %s",
                                 (serial,)).fetchone()["id"]
    worker = subprocess.Popen(["kilowatch", "worker", "--job", "broker-reconcile", "--job",
                               "broker-devices"], env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    device = Device(serial, password, port=broker.tls_port, keep_trying=True)
    device.client.reconnect_delay_set(1, 2)
    try:
        with running_collector(env), db.connect(settings.database_url, autocommit=True) as conn:
            device.connect()
            assert device.accepted, device.connack
            _publish_until_stored(device, conn, prefix, serial, device_id, seq=1)
            _wipe(broker)
            lost_at = time.monotonic()
            _publish_until_stored(device, conn, prefix, serial, device_id, seq=2,
                                  timeout_s=60)
            assert time.monotonic() - lost_at < 60
    finally:
        device.close()
        worker.terminate()
        _, log = worker.communicate(timeout=30)
    assert "broker: created account " + serial in log
    assert "broker: created account kwtest-" in log  # the collector's, from the settings


def _publish_until_stored(device, conn, prefix, serial, device_id, *, seq, timeout_s=20.0):
    before = count_rows(conn, [device_id])
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def stored() -> bool:
        if device.client.is_connected():
            device.client.publish(f"{prefix}/{serial}/telemetry",
                                  telemetry(seq, stamp, points=2), qos=1)
        return count_rows(conn, [device_id]) > before

    wait_for(stored, what=f"message {seq} of {serial} stored", timeout_s=timeout_s,
             interval_s=1.0)
