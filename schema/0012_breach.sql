-- Breach notification campaigns (tasks/breach/): the notice, and one row per (campaign,
-- account) that says whether that customer was told. The address is the only personal
-- data here; it is scrubbed BREACH_RECIPIENT_RETENTION after the campaign ends, and at
-- once when the account is erased. Counts stay.

CREATE TABLE breach_campaigns (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_fr     text NOT NULL CHECK (subject_fr !~ '[\r\n]'),
    subject_en     text NOT NULL CHECK (subject_en !~ '[\r\n]'),
    body_fr        text NOT NULL,                 -- string.Template text: ${first_name} …
    body_en        text NOT NULL,
    state          text NOT NULL DEFAULT 'draft'
                   CHECK (state IN ('draft', 'sending', 'paused', 'cancelled', 'done')),
    pause_reason   text,                          -- counts and reply codes, never an address
    created_by     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_by     text,
    started_at     timestamptz,
    finished_at    timestamptz,
    recipients_scrubbed_at timestamptz,
    -- Kept by the senders as they go, so that the failure threshold costs no scan.
    sent_count     integer NOT NULL DEFAULT 0,
    failed_count   integer NOT NULL DEFAULT 0,
    -- The last claim of rows: the reconciler restarts the lanes of a campaign gone quiet.
    active_at      timestamptz,
    -- Set when the SMTP server could not be reached; the first success after it makes the
    -- rows that waited for it due at once, instead of each waiting out its backoff.
    unreachable_at timestamptz
);

CREATE TABLE breach_recipients (
    campaign_id     bigint NOT NULL REFERENCES breach_campaigns,
    -- No foreign key: an account erased during the campaign leaves its (scrubbed) row.
    account_id      bigint NOT NULL,
    email           text,                         -- NULL once scrubbed
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0,
    reply_code      integer,                      -- the SMTP server's last reply code
    error           text,                         -- a reason of ours or an exception type
    lease_until     timestamptz,                  -- while `sending`
    next_attempt_at timestamptz,                  -- after a 4xx or a connection error
    sent_at         timestamptz,
    PRIMARY KEY (campaign_id, account_id)
);

CREATE INDEX breach_recipients_pending_idx ON breach_recipients (campaign_id, account_id) WHERE state = 'pending';
CREATE INDEX breach_recipients_sending_idx ON breach_recipients (lease_until) WHERE state = 'sending';
CREATE INDEX breach_recipients_account_idx ON breach_recipients (account_id);
