-- Accounts by e-mail: single-use links (an invitation to choose a password, a
-- password reset), each user's set of login sessions, one-time passwords that
-- expire, and outbox e-mails that carry a secret only until they are sent.

-- A link's token is in the e-mail alone; only its SHA-256 is stored. A link is
-- bound to the password it was issued for (password_changed_at at issue time):
-- once the password changes, by this link, another one, the user or an
-- administrator, the link no longer works.
CREATE TABLE account_tokens (
    id                  bigserial PRIMARY KEY,
    user_id             integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose             text NOT NULL CHECK (purpose IN ('invitation', 'reset')),
    token_hash          bytea NOT NULL CHECK (length(token_hash) = 32),
    password_changed_at timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    used_at             timestamptz,
    CONSTRAINT account_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id);

-- Every live login session of every user (SHA-256 of its random id; the id is
-- in the signed cookie alone). Signing out, a password change or reset and a
-- deactivation delete all rows of the user, in the same transaction as the
-- change; a session without its row is refused at its next request.
CREATE TABLE login_sessions (
    id_hash    bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    user_id    integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX login_sessions_user_idx ON login_sessions (user_id);

-- A one-time password (must_change_password) stops working at this time; those
-- handed out before this migration get 24 hours from now.
ALTER TABLE users ADD COLUMN password_expires_at timestamptz;
UPDATE users SET password_expires_at = now() + interval '24 hours' WHERE must_change_password;

-- The token of a link e-mail: substituted into the bodies when the e-mail is
-- sent, then erased, so that a sent e-mail kept in the outbox opens nothing.
ALTER TABLE email_outbox ADD COLUMN secret text;
