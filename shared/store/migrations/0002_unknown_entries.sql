-- An entry whose outcome is not known yet (a timeout, a 5xx, a failed look-up): `unknown`, asked
-- again until the exchange settles it as filled or rejected (issue 13, hole 7). Rank for the
-- monotone upsert: intent < sent < unknown < filled < rejected.
ALTER TABLE order_intents DROP CONSTRAINT order_intents_status_check;
ALTER TABLE order_intents ADD CONSTRAINT order_intents_status_check
    CHECK (status IN ('intent', 'sent', 'unknown', 'filled', 'rejected'));
CREATE INDEX order_intents_unsettled ON order_intents (created_ms)
    WHERE status IN ('intent', 'sent', 'unknown');
CREATE INDEX trades_real_symbol_entry ON trades (symbol, entry_ms) WHERE NOT is_virtual;
