-- Commissioning reports: numbered versions per site, never changed once issued,
-- and attachments for the durable e-mail outbox (a report goes to the company's admins).

CREATE TABLE commissioning_reports (
    id                serial PRIMARY KEY,
    site_id           integer NOT NULL,
    company_id        integer NOT NULL,
    version           integer NOT NULL CHECK (version > 0),
    comment           text NOT NULL DEFAULT '' CHECK (length(comment) <= 4000),
    content           jsonb NOT NULL,   -- what the report was made from, as issued
    html              text NOT NULL,
    pdf               bytea NOT NULL,
    issued_by         text NOT NULL,
    issued_by_user_id integer REFERENCES users (id) ON DELETE SET NULL,
    issued_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, version),
    FOREIGN KEY (site_id, company_id) REFERENCES sites (id, company_id)
);
CREATE INDEX commissioning_reports_company_idx ON commissioning_reports (company_id);

CREATE FUNCTION commissioning_reports_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'commissioning reports are never changed once issued; issue a new version';
END;
$$;

CREATE TRIGGER commissioning_reports_no_change BEFORE UPDATE OR DELETE ON commissioning_reports
    FOR EACH ROW EXECUTE FUNCTION commissioning_reports_immutable();

-- Files sent with an outbox e-mail (kept with it: the e-mail is sent as it was written).
CREATE TABLE email_attachments (
    id           bigserial PRIMARY KEY,
    outbox_id    bigint NOT NULL REFERENCES email_outbox (id) ON DELETE CASCADE,
    filename     text NOT NULL CHECK (filename ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$'),
    content_type text NOT NULL CHECK (content_type ~ '^[a-z]+/[a-z0-9.+-]+$'),
    content      bytea NOT NULL
);
CREATE INDEX email_attachments_outbox_idx ON email_attachments (outbox_id);
