"""A BESS site simulator that talks to the platform only as real equipment does (MQTT)."""
