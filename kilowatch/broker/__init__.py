"""Everything specific to the MQTT broker: its configuration, accounts, topic rights and sync.

Mosquitto 2 with its dynamic-security plugin today; docs/devices.md says how a
clustered broker (EMQX) would take the same accounts and rules.
"""
