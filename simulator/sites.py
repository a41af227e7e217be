"""The simulated fleet: sites, their places and their storage systems, derived from a seed."""

from __future__ import annotations

import dataclasses
import random

# Storage models: rated AC power (kW), usable capacity (kWh), cells in series.
MODELS: dict[str, tuple[float, float, int]] = {
    "HES-L": (50.0, 100.0, 240),
    "HES-XL": (125.0, 250.0, 240),
    "HES-XXL": (250.0, 500.0, 288),
}
_MODEL_WEIGHTS = (("HES-L", 5), ("HES-XL", 3), ("HES-XXL", 2))

# City, latitude, longitude, IANA time zone: a few European and US places.
CITIES = (
    ("Paris", 48.857, 2.352, "Europe/Paris"),
    ("Lyon", 45.764, 4.836, "Europe/Paris"),
    ("Berlin", 52.520, 13.405, "Europe/Berlin"),
    ("Madrid", 40.417, -3.704, "Europe/Madrid"),
    ("Amsterdam", 52.368, 4.904, "Europe/Amsterdam"),
    ("Milan", 45.464, 9.190, "Europe/Rome"),
    ("London", 51.507, -0.128, "Europe/London"),
    ("Boston", 42.360, -71.059, "America/New_York"),
    ("Austin", 30.267, -97.743, "America/Chicago"),
    ("Denver", 39.739, -104.990, "America/Denver"),
    ("Phoenix", 33.448, -112.074, "America/Phoenix"),
    ("San Diego", 32.716, -117.161, "America/Los_Angeles"),
)
BUSINESSES = ("Warehouse", "Cold Store", "Factory", "Office Park", "Supermarket",
              "Hospital", "Depot", "School")
FIRMWARE = ("2.4.1", "2.4.3", "2.5.0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SiteSpec:
    """Everything fixed about one simulated site and its storage device."""

    index: int
    seed: int
    serial: str
    name: str
    city: str
    latitude: float
    longitude: float
    timezone: str
    model: str
    rated_power_kw: float
    capacity_kwh: float
    cells_in_series: int
    pv_peak_kw: float
    load_peak_kw: float
    load_base_share: float
    weekend_share: float
    opens_h: float
    closes_h: float
    firmware: str
    initial_soc: float
    soh: float
    initial_counters_kwh: dict[str, float]

    @property
    def address(self) -> str:
        """A readable address line for the site."""
        return f"{self.index} Energy Way, {self.city}"


def make_sites(count: int, seed: int, serial_prefix: str = "SIM") -> list[SiteSpec]:
    """Return ``count`` sites, always the same for the same seed and prefix."""
    return [make_site(index, seed, serial_prefix) for index in range(1, count + 1)]


def make_site(index: int, seed: int, serial_prefix: str = "SIM") -> SiteSpec:
    """Return site number ``index`` (from 1) of the fleet of ``seed``."""
    rng = random.Random(f"kilowatch-sim:{seed}:{index}")
    city, latitude, longitude, timezone = rng.choice(CITIES)
    model = rng.choices([m for m, _ in _MODEL_WEIGHTS], [w for _, w in _MODEL_WEIGHTS])[0]
    rated_power_kw, capacity_kwh, cells = MODELS[model]
    serial = f"{serial_prefix}-{index:04d}"
    load_peak_kw = round(rated_power_kw * rng.uniform(0.8, 1.6), 1)
    counters = {
        "meter.grid.e_import": rng.uniform(20_000, 400_000),
        "meter.grid.e_export": rng.uniform(1_000, 50_000),
        "meter.load.e": rng.uniform(50_000, 600_000),
        "meter.pv.e": rng.uniform(10_000, 200_000),
        "pcs.e_charge": rng.uniform(5_000, 80_000),
        "pcs.e_discharge": rng.uniform(5_000, 70_000),
    }
    return SiteSpec(
        index=index, seed=seed, serial=serial,
        name=f"{city} {rng.choice(BUSINESSES)} ({serial})", city=city,
        latitude=round(latitude + rng.uniform(-0.1, 0.1), 4),
        longitude=round(longitude + rng.uniform(-0.1, 0.1), 4),
        timezone=timezone, model=model, rated_power_kw=rated_power_kw,
        capacity_kwh=capacity_kwh, cells_in_series=cells,
        pv_peak_kw=round(load_peak_kw * rng.uniform(1.5, 3.0), 1), load_peak_kw=load_peak_kw,
        load_base_share=rng.uniform(0.2, 0.45), weekend_share=rng.uniform(0.3, 0.9),
        opens_h=rng.uniform(6.0, 8.5), closes_h=rng.uniform(17.0, 20.5),
        firmware=rng.choice(FIRMWARE), initial_soc=rng.uniform(30, 70),
        soh=round(rng.uniform(93.0, 99.5), 1), initial_counters_kwh=counters,
    )
