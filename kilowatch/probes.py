"""Read a running collector's /metrics over HTTP, from outside its process.

The core may not import the collector (see the import contracts in pyproject.toml),
so the name of the gauge that says it is ready lives here and both sides use it.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

SUBSCRIBED_GAUGE = "kilowatch_collector_broker_connected"


def collector_metric(metrics_port: int | str, name: str) -> float | None:
    """Return the unlabelled sample ``name`` of the collector on this local port, if any."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return next((sample.value for family in text_string_to_metric_families(text)
                 for sample in family.samples if sample.name == name and not sample.labels),
                None)


def collector_is_subscribed(metrics_port: int | str) -> bool:
    """Tell whether the collector serving /metrics on this local port is subscribed."""
    return collector_metric(metrics_port, SUBSCRIBED_GAUGE) == 1
