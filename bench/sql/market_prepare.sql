-- spreadedge bench: market data baselines
-- Unlogged, unindexed tables of the same rows as market.ticks and market.quotes: raw COPY into
-- these is the baseline the ingest path (staging, validation, partitioned and indexed tables) is
-- measured against.

create unlogged table public.bench_raw_ticks (
    instrument_id integer, traded_at timestamptz, exchange_trade_id text, price numeric, quantity numeric,
    side text
);

create unlogged table public.bench_raw_quotes (
    instrument_id integer, quoted_at timestamptz, bid numeric, bid_size numeric, ask numeric, ask_size numeric
);
