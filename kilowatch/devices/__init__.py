"""Device identity: activation codes, activation over HTTPS, MQTT credentials, revocation."""
