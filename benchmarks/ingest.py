"""Measure end-to-end ingest: MQTT publish → collector → TimescaleDB and Redis.

Runs on the local stack (``scripts/stack up``) with its own database, Redis key
prefix and topic prefix, a real ``kilowatch collector`` subprocess, and devices as
the platform meets them: each is registered, activates over HTTPS at a real
``kilowatch web`` with its one-time code, and publishes over the broker's TLS
listener with its own credentials. It prints:

- how long the devices took to activate (HTTPS, until the broker lets each in),
- points/s stored end to end (first publish → last commit) with QoS 1,
- the binary-COPY rate of the same rows into the same table, measured in the
  same run, and the ratio of the two,
- publish→committed and publish→Redis latency (p50/p95), at saturation and at a
  steady rate below it,
- the collector's peak resident memory.

    uv run python benchmarks/ingest.py [--devices 20 --messages 60 --samples 10 --points 100]
    uv run python benchmarks/ingest.py --devices 100 --messages 2   # activation of 100 devices
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fleet import DeviceFleet
from kilowatch import db, fleet, migrations
from kilowatch.access import system_scope
from kilowatch.telemetry import storage as telemetry

CANONICAL = ["meter.grid.p", "meter.grid.e_import", "meter.grid.e_export", "meter.load.p",
             "meter.load.e", "meter.pv.p", "meter.pv.e", "pcs.p", "pcs.q", "pcs.e_charge",
             "pcs.e_discharge", "pcs.state", "bms.soc", "bms.soh", "bms.v", "bms.i",
             "bms.t_min", "bms.t_max", "bms.cell_v_min", "bms.cell_v_max"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def point_names(count: int) -> list[str]:
    """Canonical points first, then cell voltages and temperatures up to ``count``."""
    names = CANONICAL[:count]
    n = 0
    while len(names) < count:
        names.append(f"bms.cell.v_{n:03d}" if n % 2 == 0 else f"bms.cell.t_{n:03d}")
        n += 1
    return names


def fleet_payloads(devices: int, messages: int, samples: int, names: list[str],
                   start: dt.datetime, *, first_seq: int = 1,
                   seed: int = 7) -> list[list[bytes]]:
    """Return payloads[n][device] for seq first_seq + n: BESS-like values, 1 s apart."""
    rng = random.Random(seed)
    out: list[list[bytes]] = []
    for seq in range(1, messages + 1):
        row = []
        for device in range(devices):
            body = {"seq": first_seq + seq - 1, "samples": []}
            for s in range(samples):
                t = (seq - 1) * samples + s
                load = 40 + 10 * math.sin(t / 900 + device) + rng.uniform(-2, 2)
                pv = max(0.0, 30 * math.sin(t / 3000 + device / 3))
                battery = rng.uniform(-20, 20)
                values = {n: round(3.3 + rng.uniform(-0.05, 0.05), 4) for n in names}
                values.update({"meter.load.p": round(load, 3), "meter.pv.p": round(pv, 3),
                               "pcs.p": round(battery, 3),
                               "meter.grid.p": round(load - pv - battery, 3),
                               "bms.soc": round(50 + 20 * math.sin(t / 5000), 2),
                               "pcs.state": 3 if battery > 0 else 2})
                values = {n: values[n] for n in names}
                ts = start + dt.timedelta(seconds=t)
                body["samples"].append({"ts": ts.isoformat().replace("+00:00", "Z"),
                                        "v": values})
            row.append(json.dumps(body).encode())
        out.append(row)
    return out


class Environment:
    """A private database, Redis prefix and topic prefix on the local stack."""

    def __init__(self) -> None:
        token = secrets.token_hex(4)
        base = os.environ.get("KILOWATCH_DATABASE_URL",
                              "postgresql://kilowatch@127.0.0.1:55432/kilowatch")
        self.admin_url = base.rsplit("/", 1)[0] + "/postgres"
        self.database = f"kw_bench_{token}"
        self.url = base.rsplit("/", 1)[0] + "/" + self.database
        self.env = {
            "KILOWATCH_DATABASE_URL": self.url,
            "KILOWATCH_REDIS_PREFIX": f"kwbench-{token}",
            "KILOWATCH_MQTT_PREFIX": f"kwbench-{token}/ess",
            "KILOWATCH_METRICS_PORT": str(free_port()),
        }
        self.redis_url = os.environ.get("KILOWATCH_REDIS_URL", "redis://127.0.0.1:56379/0")

    def create(self, devices: int) -> dict[str, int]:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        with db.connect(self.url, autocommit=True) as conn:
            migrations.upgrade(conn)
            scope = system_scope("benchmark")
            company = fleet.create_company(conn, scope, "Bench Energy")
            sites = [fleet.create_site(conn, scope, company_id=company, name=f"Site {n}",
                                       timezone="Europe/Paris") for n in range(devices)]
        return sites

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self.database)))
        client = redis.Redis.from_url(self.redis_url)
        for key in client.scan_iter(self.env["KILOWATCH_REDIS_PREFIX"] + ":*"):
            client.delete(key)


class Collector:
    """The real ``kilowatch collector`` as a subprocess."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = int(env["KILOWATCH_METRICS_PORT"])
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kilowatch", "collector", "--client-id",
             f"kwbench-{secrets.token_hex(4)}", "--session-expiry", "300"],
            env={**os.environ, **env}, stdout=self.log, stderr=self.log, cwd=ROOT)
        deadline = time.monotonic() + 30
        while self.metric("kilowatch_collector_broker_connected") != 1:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit(f"collector did not start; see {log_path}")
            time.sleep(0.2)

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        return None

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


class Watcher(threading.Thread):
    """Record when each (device, seq) was committed and seen in Redis, from notifications."""

    def __init__(self, redis_url: str, channel: str, devices: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.seen: dict[int, int] = dict.fromkeys(devices.values(), 0)
        self.committed: dict[tuple[int, int], float] = {}
        self.in_redis: dict[tuple[int, int], float] = {}
        self.lock = threading.Lock()
        self.running = True

    def run(self) -> None:
        while self.running:
            message = self.pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            now = time.time()
            body = json.loads(message["data"])
            with self.lock:
                for device, seq in body["devices"].items():
                    device_id = int(device)
                    if seq is None or device_id not in self.seen:
                        continue
                    for s in range(self.seen[device_id] + 1, seq + 1):
                        self.committed[(device_id, s)] = body["committed_at"]
                        self.in_redis[(device_id, s)] = now
                    self.seen[device_id] = max(self.seen[device_id], seq)

    def reset(self) -> None:
        with self.lock:
            self.committed.clear()
            self.in_redis.clear()


def publish_all(clients: dict[int, mqtt.Client], topics: dict[int, str],
                payloads: list[list[bytes]], ids: list[int], first_seq: int,
                rate_per_s: float | None) -> dict:
    """Publish seq by seq (all devices), as fast as possible or at ``rate_per_s`` messages/s."""
    sent: dict[tuple[int, int], float] = {}
    infos = []
    started = time.perf_counter()
    count = 0
    for offset, row in enumerate(payloads):
        seq = first_seq + offset
        for device_id, payload in zip(ids, row, strict=True):
            if rate_per_s:
                due = started + count / rate_per_s
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            sent[(device_id, seq)] = time.time()
            infos.append(clients[device_id].publish(topics[device_id], payload, qos=1))
            count += 1
    for info in infos:
        info.wait_for_publish(timeout=300)
    return sent


def percentiles(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(ordered), p95


def latencies(sent: dict, watcher: Watcher) -> dict:
    with watcher.lock:
        commit = [watcher.committed[k] - t for k, t in sent.items() if k in watcher.committed]
        live = [watcher.in_redis[k] - t for k, t in sent.items() if k in watcher.in_redis]
    return {"commit": percentiles(commit), "redis": percentiles(live),
            "measured": len(live), "published": len(sent)}


def wait_stored(collector: Collector, total: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while (collector.metric("kilowatch_collector_points_stored_total") or 0) < total:
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the collector to store every point")
        time.sleep(0.25)  # each scrape costs the collector CPU


def copy_baseline(url: str, payloads: list[list[bytes]], ids: list[int], names: list[str],
                  shift: dt.timedelta, batch_rows: int) -> float:
    """COPY the same rows (shifted in time) into ``telemetry``; return rows/s."""
    with db.connect(url) as conn:
        point_ids = {r["name"]: r["id"] for r in conn.execute(
            "SELECT id, name FROM points WHERE name = ANY(%s)", (names,)).fetchall()}
        rows = []
        for row in payloads:
            for device_id, payload in zip(ids, row, strict=True):
                for sample in json.loads(payload)["samples"]:
                    ts = dt.datetime.fromisoformat(sample["ts"]) + shift
                    for name, value in sample["v"].items():
                        rows.append((ts, device_id, point_ids[name], float(value)))
        started = time.perf_counter()
        for first in range(0, len(rows), batch_rows):
            telemetry.copy_samples(conn, rows[first:first + batch_rows])
            conn.commit()
        return len(rows) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--messages", type=int, default=60, help="messages per device")
    parser.add_argument("--samples", type=int, default=10, help="samples per message")
    parser.add_argument("--points", type=int, default=100, help="points per sample")
    parser.add_argument("--steady-fraction", type=float, default=0.5,
                        help="steady phase rate as a fraction of the measured throughput")
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    environment = Environment()
    print(f"setting up database {environment.database} ...", flush=True)
    sites = environment.create(args.devices)
    devices_fleet = DeviceFleet(environment.env, sites, ROOT)
    try:
        devices = devices_fleet.activate()
    except BaseException:
        devices_fleet.stop()
        environment.drop()
        raise
    ids = list(devices.values())
    prefix = environment.env["KILOWATCH_MQTT_PREFIX"]
    topics = {devices[s]: f"{prefix}/{s}/telemetry" for s in devices}
    names = point_names(args.points)
    per_message = args.samples * args.points
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)
    payloads = fleet_payloads(args.devices, args.messages, args.samples, names, start)
    steady_messages = max(1, args.messages // 2)
    steady_start = start + dt.timedelta(seconds=args.messages * args.samples)
    steady = fleet_payloads(args.devices, steady_messages, args.samples, names, steady_start,
                            first_seq=args.messages + 1, seed=8)
    total = args.devices * args.messages * per_message
    size_mb = sum(len(p) for row in payloads for p in row) / 1e6
    print(f"fleet: {args.devices} devices × {args.messages} messages × {args.samples} samples "
          f"× {args.points} points = {total:,} points ({size_mb:.1f} MB of JSON)", flush=True)

    log_path = Path(tempfile.mkdtemp(prefix="kwbench-")) / "collector.log"
    collector = Collector(environment.env, log_path)
    watcher = Watcher(environment.redis_url, environment.env["KILOWATCH_REDIS_PREFIX"] + ":live",
                      devices)
    watcher.start()
    clients = devices_fleet.connect()
    try:
        # Warm-up: each device's first message registers its point names (a one-time cost).
        warmup = fleet_payloads(args.devices, 1, 1, names, start - dt.timedelta(hours=1),
                                first_seq=0)
        publish_all(clients, topics, warmup, ids, 0, None)
        before = args.devices * args.points
        wait_stored(collector, before)
        # Saturation: publish everything as fast as possible.
        first_publish = time.time()
        sent = publish_all(clients, topics, payloads, ids, 1, None)
        published_at = time.time()
        wait_stored(collector, before + total)
        last_commit = collector.metric("kilowatch_collector_last_commit_timestamp_seconds")
        end_to_end = total / (last_commit - first_publish)
        saturated = latencies(sent, watcher)

        # Steady: a rate the collector sustains, for latency.
        rate = args.steady_fraction * end_to_end / per_message
        count = min(steady_messages, max(1, int(rate * args.steady_seconds / args.devices)))
        watcher.reset()
        steady_sent = publish_all(clients, topics, steady[:count], ids, args.messages + 1,
                                  rate)
        wait_stored(collector, before + total + count * args.devices * per_message)
        time.sleep(0.5)
        calm = latencies(steady_sent, watcher)
        peak_mb = collector.peak_rss_mb()
        # Best of three, so that a busy moment on the machine does not flatter the ratio.
        copy_rate = max(copy_baseline(environment.url, payloads, ids, names,
                                      dt.timedelta(hours=-12 * (n + 1)), 50_000)
                        for n in range(3))
    finally:
        watcher.running = False
        devices_fleet.disconnect()
        devices_fleet.stop()
        collector.stop()
        if not args.keep:
            environment.drop()

    print()
    print(devices_fleet.report())
    print(f"published {len(sent):,} messages in {published_at - first_publish:.2f} s "
          f"({len(sent) / (published_at - first_publish):,.0f} msg/s)")
    print(f"end to end stored:       {end_to_end:,.0f} points/s "
          f"({total:,} points in {last_commit - first_publish:.2f} s)")
    print(f"binary COPY, same rows:  {copy_rate:,.0f} points/s (best of 3, 50,000-row commits)")
    print(f"ratio:                   {end_to_end / copy_rate:.2f}")
    print(f"saturated  publish→committed p50 {saturated['commit'][0]:.3f} s "
          f"p95 {saturated['commit'][1]:.3f} s; publish→Redis p50 {saturated['redis'][0]:.3f} s "
          f"p95 {saturated['redis'][1]:.3f} s")
    print(f"steady {rate * per_message:,.0f} points/s ({rate:,.0f} msg/s, "
          f"{calm['published']} messages): publish→committed p50 {calm['commit'][0]:.3f} s "
          f"p95 {calm['commit'][1]:.3f} s; publish→Redis p50 {calm['redis'][0]:.3f} s "
          f"p95 {calm['redis'][1]:.3f} s")
    print(f"collector peak memory:   {peak_mb:.0f} MB (VmHWM)")
    print(f"collector log: {log_path}")


if __name__ == "__main__":
    main()
