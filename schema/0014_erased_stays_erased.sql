-- What keeps an erasure erased while the outside world goes on talking about the customer.

-- The Stripe ids of erased customers and of every object they owned, as sha256 digests.
-- The inbox stores an event about one of them without its payload, marked ignored, and
-- no writer of the billing tables applies such an object again (tasks/billing/tombstones.py).
-- Stripe ids are random tokens: the digest tells nothing to whoever does not hold the id
-- already, and every writer can check it in SQL without a key. Kept for good: Stripe
-- retries for 3 days, and its list APIs return a deleted customer's canceled objects forever.
CREATE TABLE stripe_tombstones (
    digest    bytea PRIMARY KEY CHECK (length(digest) = 32),
    buried_at timestamptz NOT NULL DEFAULT now()
);

-- The identity an erasure works with, captured once when its request first runs: every
-- later run and step reads it here, never the rows that webhooks may change meanwhile.
-- It is personal data for as long as the erasure runs, and is deleted with the account
-- row, in the same transaction (tasks/erasure/steps.py, delete_account).
CREATE TABLE erasure_subjects (
    request_id         bigint PRIMARY KEY REFERENCES erasure_requests ON DELETE CASCADE,
    email              text,
    names              text[] NOT NULL DEFAULT '{}',
    customer_id        text,
    object_ids         text[] NOT NULL DEFAULT '{}',  -- the Stripe objects it owned
    account_created_at timestamptz,
    captured_at        timestamptz NOT NULL DEFAULT now()
);

-- An entry of the ledger belongs to one erased account, known by its creation time: a
-- restored copy of that account has the same, a new sign-up with the same address a later
-- one, so `reapply` erases the first and leaves the second alone. The same address erased
-- twice (two accounts, one after the other) is two entries.
ALTER TABLE erasure_ledger ADD COLUMN account_created_at timestamptz;
ALTER TABLE erasure_ledger DROP CONSTRAINT erasure_ledger_pkey;
ALTER TABLE erasure_ledger ADD CONSTRAINT erasure_ledger_entry_key
    UNIQUE NULLS NOT DISTINCT (kind, digest, account_created_at);

-- A detached payment method's events name its former customer only here.
CREATE INDEX stripe_events_previous_customer_idx ON stripe_events ((payload #>> '{data,previous_attributes,customer}'))
    WHERE payload #>> '{data,previous_attributes,customer}' IS NOT NULL;

-- Who pays no longer depends on the order Stripe's events arrived in: a subscription
-- applied before its customer was linked to the account counts through the customer.
CREATE OR REPLACE VIEW paid_accounts AS
    SELECT DISTINCT coalesce(s.account_id, a.id) AS account_id
      FROM subscriptions s LEFT JOIN accounts a ON a.stripe_customer_id = s.customer_id
     WHERE coalesce(s.account_id, a.id) IS NOT NULL AND s.status IN ('active', 'trialing', 'past_due');
