-- Every row of a campaign goes pending → sending → sent, so each index whose entries
-- depend on the state collects an entry per row, live or dead (until a vacuum; this
-- project's development Postgres runs none). Two plans read them all, each statement a
-- little slower than the one before, over a 100,000-recipient campaign:
--
-- * Claims took a b-tree on account_id alone in order, filtering on the state, so they
--   walked every row already sent (5 ms a claim at the start, 35 ms near the end). That
--   index only serves erasure's lookups of one account's rows, which a hash index answers
--   and which offers no order: claims take the partial index of pending rows (2 to 4 ms).
-- * Writing outcomes combined the index of `sending` rows (one entry per row ever sent)
--   with the primary key's range of the whole campaign: 15 to 35 ms for 20 rows. Outcomes
--   now go by primary key; the reconciler, the index's other user, runs once a minute and
--   reads the campaigns not yet done.
DROP INDEX breach_recipients_account_idx;
CREATE INDEX breach_recipients_account_idx ON breach_recipients USING hash (account_id);
DROP INDEX breach_recipients_sending_idx;
