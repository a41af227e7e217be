-- Dispatch plans sent to storage devices: one row per (plan revision, device), like
-- schedule_deliveries. A plan made again in the same 15-minute step replaces its row in
-- dispatch_plans, so the revision devices see comes from a sequence, not from the id.

CREATE SEQUENCE dispatch_plan_revisions;
ALTER TABLE dispatch_plans ADD COLUMN revision bigint NOT NULL
    DEFAULT nextval('dispatch_plan_revisions');
ALTER SEQUENCE dispatch_plan_revisions OWNED BY dispatch_plans.revision;

CREATE TABLE dispatch_plan_deliveries (
    revision      bigint NOT NULL,
    plan_id       bigint NOT NULL REFERENCES dispatch_plans (id) ON DELETE CASCADE,
    device_id     integer NOT NULL REFERENCES devices (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    publish_error text,
    status        text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'applied', 'rejected')),
    reason        text,
    acked_at      timestamptz,
    PRIMARY KEY (revision, device_id)
);
CREATE INDEX dispatch_plan_deliveries_device_idx ON dispatch_plan_deliveries (device_id, revision);
CREATE INDEX dispatch_plan_deliveries_plan_idx ON dispatch_plan_deliveries (plan_id);
CREATE INDEX dispatch_forecasts_made_idx ON dispatch_forecasts (made_at);
