"""MQTT → TimescaleDB ingest service, device status and communication-loss detection."""
