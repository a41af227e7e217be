-- The dispatch optimiser: the forecasts and plans the worker makes every 15 minutes.

-- A site's load or PV forecast made at ``made_at``: average kW per 15-minute step from
-- ``start`` (48 h), kept so its error can be measured against what happened.
CREATE TABLE dispatch_forecasts (
    site_id   integer NOT NULL REFERENCES sites (id),
    kind      text NOT NULL CHECK (kind IN ('load', 'pv')),
    made_at   timestamptz NOT NULL,
    start     timestamptz NOT NULL,
    values_kw double precision[] NOT NULL,
    PRIMARY KEY (site_id, kind, made_at)
);

-- A plan (``planned``: kilowatch.dispatch.plan.Plan.to_json) or why none could be
-- made (``failed``: the site falls back to its weekly schedule).
CREATE TABLE dispatch_plans (
    id                   bigserial PRIMARY KEY,
    site_id              integer NOT NULL REFERENCES sites (id),
    made_at              timestamptz NOT NULL,
    start                timestamptz NOT NULL,
    status               text NOT NULL CHECK (status IN ('planned', 'failed')),
    error                text,
    expected_cost        double precision,
    cost_without_battery double precision,
    solve_ms             double precision,
    plan                 jsonb,
    UNIQUE (site_id, made_at),
    CHECK ((status = 'planned') = (plan IS NOT NULL))
);
CREATE INDEX dispatch_plans_made_idx ON dispatch_plans (made_at);
