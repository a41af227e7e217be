-- Alarms and notifications: alert rules and their per-device state, who wants which
-- e-mails, the per-user notification queue, and a durable e-mail outbox.
-- Comments on alarms are alarm_events of kind 'commented' (text in details).

-- The alarm list and history read alarms newest first across many sites.
CREATE INDEX alarms_raised_idx ON alarms (raised_at DESC);

-- Threshold rules defined by a company's administrators, e.g.
-- "bms.t_max > 45 for 300 s, clear below 40".
CREATE TABLE alert_rules (
    id              serial PRIMARY KEY,
    company_id      integer NOT NULL REFERENCES companies (id),
    name            text NOT NULL CHECK (length(trim(name)) BETWEEN 1 AND 120),
    code            text NOT NULL CHECK (code ~ '^[A-Z][A-Z0-9_]{1,63}$' AND code <> 'COMM_LOST'),
    point           text NOT NULL
                    CHECK (point ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$' AND length(point) <= 64),
    comparison      text NOT NULL CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold       double precision NOT NULL,
    clear_threshold double precision NOT NULL,
    duration_s      integer NOT NULL DEFAULT 0 CHECK (duration_s BETWEEN 0 AND 86400),
    severity        text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    all_sites       boolean NOT NULL DEFAULT true,
    enabled         boolean NOT NULL DEFAULT true,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- the clear threshold lies on the safe side of the threshold (hysteresis)
    CONSTRAINT alert_rules_hysteresis_check CHECK (
        (comparison IN ('>', '>=') AND clear_threshold <= threshold)
        OR (comparison IN ('<', '<=') AND clear_threshold >= threshold)),
    CONSTRAINT alert_rules_company_code_key UNIQUE (company_id, code),
    CONSTRAINT alert_rules_id_company_key UNIQUE (id, company_id)
);

-- The sites a rule applies to when it is not for all of its company's sites.
CREATE TABLE alert_rule_sites (
    rule_id    integer NOT NULL,
    site_id    integer NOT NULL,
    company_id integer NOT NULL,
    PRIMARY KEY (rule_id, site_id),
    FOREIGN KEY (rule_id, company_id) REFERENCES alert_rules (id, company_id) ON DELETE CASCADE,
    FOREIGN KEY (site_id, company_id) REFERENCES sites (id, company_id)
);

-- Where each rule stands on each device: the newest sample evaluated (the
-- watermark) and the phase of the hysteresis/duration state machine.
CREATE TABLE alert_rule_state (
    rule_id        integer NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    device_id      integer NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    last_sample_at timestamptz NOT NULL,
    phase          text NOT NULL CHECK (phase IN ('normal', 'pending', 'active')),
    pending_since  timestamptz,
    last_value     double precision,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, device_id)
);

-- Rule alarms remember their rule (the alarm page shows it).
ALTER TABLE alarms ADD COLUMN rule_id integer REFERENCES alert_rules (id) ON DELETE SET NULL;

-- Each user's own choice of e-mails. No row: no e-mail, except that company
-- administrators always get COMM_LOST and its recovery.
CREATE TABLE notification_preferences (
    user_id        integer PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    enabled        boolean NOT NULL DEFAULT true,
    severities     text[] NOT NULL DEFAULT '{critical,major}'
                   CHECK (severities <@ ARRAY['critical', 'major', 'minor', 'warning']),
    all_sites      boolean NOT NULL DEFAULT true,
    on_raise       boolean NOT NULL DEFAULT true,
    on_clear       boolean NOT NULL DEFAULT false,
    delay_s        integer NOT NULL DEFAULT 0 CHECK (delay_s BETWEEN 0 AND 86400),
    reminder_hours integer CHECK (reminder_hours BETWEEN 1 AND 168),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE notification_sites (
    user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    site_id integer NOT NULL REFERENCES sites (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, site_id)
);

-- Alarm events not yet turned into notifications (written with the event).
CREATE TABLE notification_inbox (
    event_id bigint PRIMARY KEY REFERENCES alarm_events (id) ON DELETE CASCADE
);

-- Which e-mail, about which alarm, each user should get and when. A pending
-- 'raised' item whose alarm clears before it is due is dropped with its clear.
CREATE TABLE notification_items (
    id         bigserial PRIMARY KEY,
    user_id    integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    alarm_id   bigint NOT NULL REFERENCES alarms (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('raised', 'cleared', 'reminder')),
    mandatory  boolean NOT NULL DEFAULT false,
    event_at   timestamptz NOT NULL,
    due_at     timestamptz NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'queued', 'dropped')),
    reason     text,
    outbox_id  bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    done_at    timestamptz
);
CREATE INDEX notification_items_due_idx ON notification_items (due_at) WHERE status = 'pending';
CREATE INDEX notification_items_alarm_user_idx ON notification_items (alarm_id, user_id);
CREATE INDEX notification_items_outbox_idx ON notification_items (outbox_id);
CREATE UNIQUE INDEX notification_items_once_idx ON notification_items (user_id, alarm_id, kind)
    WHERE kind IN ('raised', 'cleared');

-- Durable outbox: every e-mail is written here first and sent by the worker,
-- retried with backoff until the SMTP server takes it.
CREATE TABLE email_outbox (
    id              bigserial PRIMARY KEY,
    user_id         integer REFERENCES users (id) ON DELETE SET NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    text_body       text NOT NULL,
    html_body       text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_outbox_user_created_idx ON email_outbox (user_id, created_at DESC);
