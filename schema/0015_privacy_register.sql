-- The register of data-subject requests (tasks/privacy/): every request a customer makes
-- of their data (export, erasure, rectification, objection, other), with the legal clock
-- of GDPR Art. 12(3): an answer within one month of receipt, extendable by two more with
-- a reason. Ids, dates and our own words: the note is the privacy contact's, and an
-- erasure empties it with the rest of the account's data.

CREATE TABLE privacy_requests (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL
                       CHECK (kind IN ('export', 'erasure', 'rectification', 'objection', 'other')),
    -- No foreign key: the register outlives an erased account, as the record of its request.
    account_id         bigint NOT NULL,
    received_at        timestamptz NOT NULL DEFAULT now(),
    received_by        text NOT NULL,            -- 'cli', 'token:<id>'
    due_at             timestamptz NOT NULL,     -- one month after receipt (Art. 12(3))
    extended_until     timestamptz,
    extension_reason   text,
    state              text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    closed_at          timestamptz,
    outcome            text,
    note               text,
    erasure_request_id bigint UNIQUE REFERENCES erasure_requests ON DELETE SET NULL,
    CHECK ((extended_until IS NULL) = (extension_reason IS NULL)),
    CHECK ((state = 'closed') = (closed_at IS NOT NULL))
);

CREATE INDEX privacy_requests_open_idx ON privacy_requests (due_at) WHERE state = 'open';
CREATE INDEX privacy_requests_account_idx ON privacy_requests (account_id);
