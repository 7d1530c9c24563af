-- Trading records, model versions and reports. Money and exchange amounts are numeric (exact);
-- times are UTC milliseconds (bigint); features are float8[] in FEATURE_NAMES order.

CREATE TABLE order_intents (
    client_id      text PRIMARY KEY,             -- slt-<signal_id>-<purpose>-<attempt>
    signal_id      text NOT NULL,
    symbol         text NOT NULL,
    side           text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity       numeric NOT NULL,
    leverage       integer NOT NULL,
    confidence     double precision NOT NULL,
    model_version  integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('intent', 'sent', 'filled', 'rejected')),
    detail         text NOT NULL DEFAULT '',
    created_ms     bigint NOT NULL,
    updated_ms     bigint NOT NULL
);
CREATE INDEX order_intents_signal_id ON order_intents (signal_id);

CREATE TABLE trades (
    trade_id        text PRIMARY KEY,            -- the entry's signal id
    is_virtual      boolean NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        numeric NOT NULL,
    entry_price     numeric NOT NULL,
    entry_ms        bigint NOT NULL,
    exit_price      numeric,                     -- NULL until closed (all exit columns)
    exit_ms         bigint,
    exit_reason     text,
    gross_pnl_usdt  numeric,
    fees_usdt       numeric,
    funding_usdt    numeric,
    net_pnl_usdt    numeric,
    is_win          boolean,
    confidence      double precision NOT NULL,
    model_version   integer NOT NULL,
    feature_schema  text NOT NULL,
    features        double precision[] NOT NULL
);
CREATE INDEX trades_is_win ON trades (is_win);
CREATE INDEX trades_entry_ms ON trades (entry_ms);
CREATE INDEX trades_exit_ms ON trades (exit_ms);
CREATE INDEX trades_symbol ON trades (symbol);
CREATE INDEX trades_net_pnl_usdt ON trades (net_pnl_usdt);
CREATE INDEX trades_stats ON trades (is_virtual, exit_ms) WHERE exit_ms IS NOT NULL;

CREATE TABLE position_entries (
    signal_id  text PRIMARY KEY,
    symbol     text NOT NULL,
    entry_ms   bigint NOT NULL
);
CREATE INDEX position_entries_symbol ON position_entries (symbol, entry_ms);

CREATE TABLE model_versions (
    version         serial PRIMARY KEY,
    created_ms      bigint NOT NULL,
    feature_schema  text NOT NULL,
    sample_count    integer NOT NULL,
    auc             double precision NOT NULL,
    log_loss        double precision NOT NULL,
    hit_rate        double precision NOT NULL,
    params          jsonb NOT NULL,
    label           jsonb NOT NULL,              -- {take_profit_pct, stop_loss_pct, horizon_bars}
    status          text NOT NULL
                    CHECK (status IN ('candidate', 'champion', 'retired', 'rejected')),
    promoted_ms     bigint,                      -- last time it became the champion
    retired_ms      bigint,                      -- last time it stopped being the champion
    is_rolled_back  boolean NOT NULL DEFAULT false,  -- demoted by a rollback: never restored
    blob            bytea NOT NULL
);
-- At most one champion, whatever the code does.
CREATE UNIQUE INDEX model_versions_one_champion ON model_versions ((true))
    WHERE status = 'champion';

CREATE TABLE promotion_decisions (
    id                  bigserial PRIMARY KEY,
    decided_ms          bigint NOT NULL,
    challenger_version  integer NOT NULL,
    champion_version    integer,                 -- NULL when there was no champion
    is_promoted         boolean NOT NULL,
    is_rollback         boolean NOT NULL DEFAULT false,
    detail              text NOT NULL DEFAULT '',
    UNIQUE (challenger_version, decided_ms)      -- the natural key: a rewrite is idempotent
);

CREATE TABLE daily_reports (
    day         date PRIMARY KEY,
    created_ms  bigint NOT NULL,
    text        text NOT NULL,
    body        jsonb NOT NULL
);
