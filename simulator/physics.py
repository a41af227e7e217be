"""Weather and consumption of a simulated site: sun, clouds, PV output and load.

Every function here is a pure function of the site, the seed and the time, so
that history and live data agree and a run is repeatable: random-looking
signals come from hashed "value noise" rather than from a stateful generator.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from simulator.sites import SiteSpec

_J2000_EPOCH_S = 946_728_000.0  # 2000-01-01T12:00:00Z


def unit_hash(*parts: object) -> float:
    """Return a number in [0, 1) fixed by ``parts`` (the same in every process)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def value_noise(t: float, period_s: float, *key: object) -> float:
    """Return a smooth pseudo-random signal in [0, 1) with features about ``period_s`` long."""
    position = t / period_s
    knot = math.floor(position)
    blend = (1 - math.cos((position - knot) * math.pi)) / 2
    before = unit_hash(*key, period_s, knot)
    after = unit_hash(*key, period_s, knot + 1)
    return before + (after - before) * blend


def solar_elevation_deg(t: float, latitude: float, longitude: float) -> float:
    """Return the sun's elevation above the horizon in degrees at epoch ``t``."""
    days = (t - _J2000_EPOCH_S) / 86400.0
    anomaly = math.radians(357.529 + 0.98560028 * days)
    mean_longitude = 280.459 + 0.98564736 * days
    ecliptic_longitude = math.radians(
        mean_longitude + 1.915 * math.sin(anomaly) + 0.020 * math.sin(2 * anomaly))
    obliquity = math.radians(23.439 - 0.00000036 * days)
    right_ascension = math.atan2(math.cos(obliquity) * math.sin(ecliptic_longitude),
                                 math.cos(ecliptic_longitude))
    declination = math.asin(math.sin(obliquity) * math.sin(ecliptic_longitude))
    sidereal_h = (18.697374558 + 24.06570982441908 * days) % 24
    hour_angle = math.radians(sidereal_h * 15 + longitude) - right_ascension
    lat = math.radians(latitude)
    sin_elevation = (math.sin(lat) * math.sin(declination)
                     + math.cos(lat) * math.cos(declination) * math.cos(hour_angle))
    return math.degrees(math.asin(max(-1.0, min(1.0, sin_elevation))))


def clear_sky_irradiance(elevation_deg: float) -> float:
    """Return global horizontal irradiance (W/m²) under a clear sky (Haurwitz model)."""
    if elevation_deg <= 0:
        return 0.0
    sin_e = math.sin(math.radians(elevation_deg))
    return 1098.0 * sin_e * math.exp(-0.057 / sin_e)


def cloud_transmittance(site: SiteSpec, t: float) -> float:
    """Return the share of sunlight that passes the clouds (1 clear, ~0.1 overcast)."""
    cover = value_noise(t, 86_400.0, site.seed, site.index, "cover") ** 1.6
    passing = value_noise(t, 900.0, site.seed, site.index, "passing")
    flicker = value_noise(t, 120.0, site.seed, site.index, "flicker")
    transmittance = 1.0 - cover * (0.2 + 0.65 * passing) - 0.1 * cover * flicker
    return max(0.08, min(1.0, transmittance))


def pv_power_kw(site: SiteSpec, t: float) -> float:
    """Return the site's PV output in kW at epoch ``t`` (zero when the sun is down)."""
    irradiance = clear_sky_irradiance(solar_elevation_deg(t, site.latitude, site.longitude))
    if irradiance == 0.0:
        return 0.0
    return site.pv_peak_kw * irradiance / 1000.0 * 0.9 * cloud_transmittance(site, t)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_time(site: SiteSpec, t: float) -> datetime:
    """Return epoch ``t`` as a time in the site's own time zone."""
    return datetime.fromtimestamp(t, _zone(site.timezone))


def _ramp(x: float, start: float, end: float) -> float:
    """0 before ``start``, 1 after ``end``, smooth in between."""
    if x <= start:
        return 0.0
    if x >= end:
        return 1.0
    share = (x - start) / (end - start)
    return share * share * (3 - 2 * share)


def occupancy(site: SiteSpec, local: datetime) -> float:
    """Return how busy the site is (0 closed .. ~1 full activity) at a local time."""
    hour = local.hour + local.minute / 60 + local.second / 3600
    busy = _ramp(hour, site.opens_h - 1, site.opens_h + 1) * (
        1 - _ramp(hour, site.closes_h - 1, site.closes_h + 1))
    busy += 0.08 * math.exp(-((hour - 12.5) ** 2) / 0.8) * busy
    if local.weekday() >= 5:
        busy *= site.weekend_share
    return busy


def load_power_kw(site: SiteSpec, t: float) -> float:
    """Return the site's consumption in kW at epoch ``t``, with weekday shape and noise."""
    busy = occupancy(site, local_time(site, t))
    shape = site.load_base_share + (1 - site.load_base_share) * busy
    slow = value_noise(t, 900.0, site.seed, site.index, "load") * 2 - 1
    fast = value_noise(t, 60.0, site.seed, site.index, "load-fast") * 2 - 1
    return site.load_peak_kw * shape * (1 + 0.08 * slow + 0.03 * fast)


def ambient_temperature_c(site: SiteSpec, t: float) -> float:
    """Return the outdoor temperature in °C: season by latitude plus a daily swing."""
    local = local_time(site, t)
    season = math.cos(2 * math.pi * (local.timetuple().tm_yday - 200) / 365.25)
    hemisphere = 1 if site.latitude >= 0 else -1
    daily = math.sin(2 * math.pi * (local.hour + local.minute / 60 - 9) / 24)
    base = 28 - abs(site.latitude) * 0.3
    return base + 9 * season * hemisphere + 5 * daily
