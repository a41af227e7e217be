-- Accounts and access: users, groups within a company, memberships and site grants.
-- Composite foreign keys carry company_id so that a membership or a grant can
-- never join a user, group or site of two different companies.

ALTER TABLE sites ADD CONSTRAINT sites_id_company_key UNIQUE (id, company_id);

CREATE TABLE users (
    id                   serial PRIMARY KEY,
    email                text NOT NULL
                         CHECK (email = lower(email) AND length(email) <= 254
                                AND email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
    display_name         text NOT NULL CHECK (length(trim(display_name)) BETWEEN 1 AND 120),
    company_id           integer REFERENCES companies (id),
    role                 text NOT NULL
                         CHECK (role IN ('viewer', 'operator', 'admin', 'support', 'superadmin')),
    password_hash        text,
    must_change_password boolean NOT NULL DEFAULT false,
    active               boolean NOT NULL DEFAULT true,
    language             text NOT NULL DEFAULT 'en' CHECK (language ~ '^[a-z]{2}(-[A-Z]{2})?$'),
    created_at           timestamptz NOT NULL DEFAULT now(),
    last_login_at        timestamptz,
    password_changed_at  timestamptz,
    -- company roles need a company; platform staff (support, superadmin) have none
    CONSTRAINT users_role_company_check CHECK (
        (role IN ('viewer', 'operator', 'admin')) = (company_id IS NOT NULL)
    ),
    CONSTRAINT users_id_company_key UNIQUE (id, company_id)
);
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
CREATE INDEX users_company_idx ON users (company_id);

CREATE TABLE groups (
    id         serial PRIMARY KEY,
    company_id integer NOT NULL REFERENCES companies (id),
    name       text NOT NULL CHECK (length(trim(name)) BETWEEN 1 AND 120),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT groups_company_name_key UNIQUE (company_id, name),
    CONSTRAINT groups_id_company_key UNIQUE (id, company_id)
);

CREATE TABLE group_members (
    group_id   integer NOT NULL,
    user_id    integer NOT NULL,
    company_id integer NOT NULL,
    added_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id),
    FOREIGN KEY (group_id, company_id) REFERENCES groups (id, company_id) ON DELETE CASCADE,
    FOREIGN KEY (user_id, company_id) REFERENCES users (id, company_id)
);
CREATE INDEX group_members_user_idx ON group_members (user_id);

CREATE TABLE group_sites (
    group_id   integer NOT NULL,
    site_id    integer NOT NULL,
    company_id integer NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, site_id),
    FOREIGN KEY (group_id, company_id) REFERENCES groups (id, company_id) ON DELETE CASCADE,
    FOREIGN KEY (site_id, company_id) REFERENCES sites (id, company_id)
);
CREATE INDEX group_sites_site_idx ON group_sites (site_id);
