-- Device identity: a device is registered -> activated -> (revoked).
-- The activation code is stored only as a SHA-256 hash; the MQTT password is never
-- stored: it is derived from KILOWATCH_DEVICE_KEY and the per-activation nonce.
ALTER TABLE devices
    ADD COLUMN activation_code_hash       bytea,
    ADD COLUMN activation_code_expires_at timestamptz,
    ADD COLUMN activated_at               timestamptz,
    ADD COLUMN revoked_at                 timestamptz,
    ADD COLUMN credential_nonce           bytea,
    ADD CONSTRAINT devices_code_with_expiry
        CHECK ((activation_code_hash IS NULL) = (activation_code_expires_at IS NULL)),
    ADD CONSTRAINT devices_nonce_when_active
        CHECK (credential_nonce IS NULL OR (activated_at IS NOT NULL AND revoked_at IS NULL));

-- Devices that were sending data before identities existed keep their place in the
-- fleet but must be activated (a new code) before the locked-down broker lets them in.

-- When the identity last changed, and which change the broker has received: the
-- worker pushes devices whose two times differ (activation, new code, revocation).
ALTER TABLE devices
    ADD COLUMN identity_changed_at timestamptz,
    ADD COLUMN broker_synced_at    timestamptz;
CREATE INDEX devices_broker_pending_idx ON devices (identity_changed_at)
    WHERE identity_changed_at IS NOT NULL;
