-- What bindery keeps of Stripe's objects: allow-listed columns only, nothing else from
-- the payloads. Of a card, the brand, the last 4 digits and the expiry; of SEPA, the
-- bank code, the country, the last 4 digits and the mandate reference.

-- Per Stripe object, the newest event applied: an older event changes nothing.
CREATE TABLE stripe_objects (
    object_id          text PRIMARY KEY,
    last_event_id      text NOT NULL,
    last_event_created timestamptz NOT NULL
);

CREATE TABLE subscriptions (
    id                   text PRIMARY KEY CHECK (id ~ '^sub_[A-Za-z0-9_]+$'),
    customer_id          text NOT NULL,
    account_id           bigint REFERENCES accounts ON DELETE SET NULL,
    status               text NOT NULL CHECK (status IN ('incomplete', 'incomplete_expired', 'trialing',
                             'active', 'past_due', 'canceled', 'unpaid', 'paused')),
    price_id             text,
    current_period_start timestamptz,
    current_period_end   timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_account_idx ON subscriptions (account_id);
CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id);

CREATE TABLE payment_methods (
    id                text PRIMARY KEY CHECK (id ~ '^(pm|card|src|ba)_[A-Za-z0-9_]+$'),
    customer_id       text,
    account_id        bigint REFERENCES accounts ON DELETE SET NULL,
    type              text NOT NULL CHECK (type IN ('card', 'sepa_debit')),
    card_brand        text CHECK (card_brand ~ '^[a-z_]{1,20}$'),
    last4             text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month         smallint CHECK (exp_month BETWEEN 1 AND 12),
    exp_year          smallint CHECK (exp_year BETWEEN 2000 AND 2200),
    sepa_bank_code    text CHECK (sepa_bank_code ~ '^[A-Za-z0-9]{1,11}$'),
    sepa_country      text CHECK (sepa_country ~ '^[A-Z]{2}$'),
    mandate_reference text CHECK (length(mandate_reference) <= 64),
    detached          boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((type = 'card') = (card_brand IS NOT NULL)),
    CHECK (type = 'sepa_debit' OR (sepa_bank_code IS NULL AND sepa_country IS NULL AND mandate_reference IS NULL))
);
CREATE INDEX payment_methods_account_idx ON payment_methods (account_id);

CREATE TABLE mandates (
    id                text PRIMARY KEY CHECK (id ~ '^mandate_[A-Za-z0-9_]+$'),
    payment_method_id text NOT NULL,
    status            text NOT NULL CHECK (status IN ('active', 'inactive', 'pending')),
    type              text NOT NULL CHECK (type IN ('multi_use', 'single_use')),
    reference         text CHECK (length(reference) <= 64),
    accepted_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mandates_payment_method_idx ON mandates (payment_method_id);

CREATE TABLE invoices (
    id                 text PRIMARY KEY CHECK (id ~ '^in_[A-Za-z0-9_]+$'),
    customer_id        text NOT NULL,
    account_id         bigint REFERENCES accounts ON DELETE SET NULL,
    number             text,
    currency           text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    total              bigint NOT NULL,
    amount_due         bigint NOT NULL,
    amount_paid        bigint NOT NULL,
    status             text CHECK (status IN ('draft', 'open', 'paid', 'uncollectible', 'void')),
    created            timestamptz NOT NULL,
    due_date           timestamptz,
    paid_at            timestamptz,
    hosted_invoice_url text CHECK (hosted_invoice_url ~ '^https://'),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invoices_account_idx ON invoices (account_id);

-- Who pays (DESIGN.md): an account with a subscription active, trialing or past due.
CREATE VIEW paid_accounts AS
    SELECT DISTINCT account_id FROM subscriptions
     WHERE account_id IS NOT NULL AND status IN ('active', 'trialing', 'past_due');
