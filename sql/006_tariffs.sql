-- Tariffs, their assignment to sites over time, and the stored monthly bills.
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- A company's tariff: the normalised structure (kilowatch.tariffs) and, when it
-- was imported, the URDB document it came from.
CREATE TABLE tariffs (
    id         serial PRIMARY KEY,
    company_id integer NOT NULL REFERENCES companies (id),
    name       text NOT NULL CHECK (length(trim(name)) > 0),
    currency   text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    structure  jsonb NOT NULL,
    source     jsonb,
    created_by text NOT NULL DEFAULT 'system',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, name)
);

-- Which tariff a site has, from which local date (inclusive) to which (exclusive;
-- NULL: until further notice). Rows are never deleted or edited: a replaced
-- assignment gets superseded_at and the history stays readable. The live rows of
-- a site never overlap.
CREATE TABLE site_tariffs (
    id            serial PRIMARY KEY,
    site_id       integer NOT NULL REFERENCES sites (id),
    tariff_id     integer NOT NULL REFERENCES tariffs (id),
    valid_from    date NOT NULL,
    valid_to      date CHECK (valid_to IS NULL OR valid_to > valid_from),
    created_by    text NOT NULL DEFAULT 'system',
    created_at    timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    EXCLUDE USING gist (site_id WITH =, daterange(valid_from, valid_to) WITH &&)
        WHERE (superseded_at IS NULL)
);
CREATE INDEX site_tariffs_tariff_idx ON site_tariffs (tariff_id);

-- One bill per site, billing period (calendar month in the site's time zone) and
-- scenario. Amounts in the tariff's currency; details and data quality as computed
-- by kilowatch.bills. ``final``: the month was over when computed. ``stale``: the
-- tariff or assignment changed since; the worker recomputes it.
CREATE TABLE bills (
    site_id       integer NOT NULL REFERENCES sites (id),
    period_start  date NOT NULL CHECK (extract(day FROM period_start) = 1),
    scenario      text NOT NULL CHECK (scenario IN ('without_system', 'pv_only', 'actual')),
    tariff_id     integer NOT NULL REFERENCES tariffs (id),
    currency      text NOT NULL,
    energy        numeric(14, 2) NOT NULL,
    demand        numeric(14, 2) NOT NULL,
    fixed         numeric(14, 2) NOT NULL,
    export_credit numeric(14, 2) NOT NULL,
    total         numeric(14, 2) NOT NULL,
    details       jsonb NOT NULL,
    quality       jsonb NOT NULL,
    complete      boolean NOT NULL,
    final         boolean NOT NULL,
    stale         boolean NOT NULL DEFAULT false,
    data_until    timestamptz NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, period_start, scenario)
);
CREATE INDEX bills_tariff_idx ON bills (tariff_id);
CREATE INDEX bills_stale_idx ON bills (site_id) WHERE stale;
