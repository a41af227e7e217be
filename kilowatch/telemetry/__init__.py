"""Telemetry: raw storage and rollups, ingest bookkeeping, live values, energy, history."""
