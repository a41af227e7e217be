"""MQTT → TimescaleDB ingest: the ``kilowatch collector`` service and its ``deadletter`` command."""
