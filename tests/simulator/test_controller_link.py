"""The controller seam: a controller attached to its device's MQTT link steers the battery."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from simulator import runner
from simulator.controller import ConstantController, LinkedController
from simulator.link import MqttLink
from simulator.sites import make_sites
from tests.conftest import bench_login


class CommandFollower:
    """Runs whatever mode the last ``command`` message said, and acknowledges it."""

    def __init__(self) -> None:
        self.current = ConstantController("idle", {})
        self.link = None

    def attach(self, link) -> None:
        self.link = link
        link.subscribe("command", self._on_command)

    def _on_command(self, payload: bytes) -> None:
        command = json.loads(payload)
        self.current = ConstantController(command["mode"], command["params"])
        self.link.publish("command/ack", {"revision": command["revision"], "status": "applied"})

    def mode_at(self, t):
        return self.current.mode_at(t)


def test_a_linked_controller_receives_messages_acks_and_drives_the_battery(kw_env, inbox):
    prefix = kw_env["KILOWATCH_MQTT_PREFIX"]
    site = make_sites(1, seed=4, serial_prefix="CTL")[0]
    link = MqttLink(url=kw_env["KILOWATCH_SIMULATOR_MQTT_URL"], prefix=prefix, serial=site.serial,
                    firmware=site.firmware)
    link.connect()
    follower = CommandFollower()
    assert isinstance(follower, LinkedController)
    options = runner.RunOptions(interval_s=0.2, duration_s=3.0, fault_rate=0.0)
    devices = runner.make_devices([site], [link], options, lambda spec: follower)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(devices, options, stop))
    thread.start()
    try:
        assert inbox.wait_for(lambda box: len(box.on("telemetry", site.serial)) >= 3)
        operator = mqtt.Client(CallbackAPIVersion.VERSION2)
        operator.connect(*bench_login(operator))
        operator.loop_start()
        command = {"revision": 3, "mode": "charge",
                   "params": {"power_kw": site.rated_power_kw / 2, "soc_max": 100}}
        operator.publish(f"{prefix}/{site.serial}/command", json.dumps(command),
                         qos=1).wait_for_publish(5)
        operator.disconnect()
        operator.loop_stop()
        assert inbox.wait_for(lambda box: box.on("command/ack", site.serial), 10)
    finally:
        thread.join(20)
        stop.set()
        link.close()
    assert inbox.on("command/ack", site.serial) == [{"revision": 3, "status": "applied"}]
    powers = [m["samples"][0]["v"]["pcs.p"] for m in inbox.on("telemetry", site.serial)]
    assert powers[0] == 0
    assert powers[-1] == -site.rated_power_kw / 2
