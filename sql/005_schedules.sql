-- Operating schedules: immutable revisions per site and their delivery to each storage device.

-- Whether the site runs the platform's dispatch optimiser (enables the `optimized` mode).
ALTER TABLE sites ADD COLUMN has_optimizer boolean NOT NULL DEFAULT false;

-- Every save is a new revision; a revision is never changed afterwards.
CREATE TABLE schedule_revisions (
    id             serial PRIMARY KEY,
    site_id        integer NOT NULL REFERENCES sites (id),
    revision       integer NOT NULL CHECK (revision > 0),
    body           jsonb NOT NULL,
    comment        text NOT NULL DEFAULT '',
    author         text NOT NULL,
    author_user_id integer,  -- no FK: the users table lives in another migration
    restored_from  integer,  -- revision number this one restores, if any
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, revision)
);

CREATE FUNCTION schedule_revisions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'schedule revisions are immutable; save a new revision instead';
END;
$$;

CREATE TRIGGER schedule_revisions_no_update BEFORE UPDATE ON schedule_revisions
    FOR EACH ROW EXECUTE FUNCTION schedule_revisions_immutable();

-- One row per (revision, storage device): was it published, and what did the device answer.
CREATE TABLE schedule_deliveries (
    revision_id      integer NOT NULL REFERENCES schedule_revisions (id) ON DELETE CASCADE,
    device_id        integer NOT NULL REFERENCES devices (id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    publish_attempts integer NOT NULL DEFAULT 0,
    last_attempt_at  timestamptz,
    publish_error    text,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'applied', 'rejected')),
    reason           text,
    acked_at         timestamptz,
    PRIMARY KEY (revision_id, device_id)
);
CREATE INDEX schedule_deliveries_device_idx ON schedule_deliveries (device_id);
CREATE INDEX schedule_deliveries_unpublished_idx ON schedule_deliveries (revision_id)
    WHERE published_at IS NULL;
CREATE INDEX schedule_deliveries_pending_idx ON schedule_deliveries (created_at)
    WHERE status = 'pending';
