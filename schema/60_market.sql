-- spreadedge schema: market
-- Market data: top-of-book quotes and public trades (ticks), partitioned by day, and OHLCV candles,
-- partitioned by month (see 61_market_partitioning.sql.j2). Tables are private: data arrives through
-- `spreadedge ingest` (market.load_staged_*) and is read through the market.* functions and views.
--
-- why no foreign key to ref.instruments on these tables: a foreign key costs a lookup per row, and
-- these tables take thousands of rows a second; the loaders only store rows whose instrument
-- exists, and instruments are never deleted (delisting sets ref.instruments.is_active false).

create type market.candle_interval as enum (
    '1m',   -- one minute, built from ticks
    '5m',   -- five minutes, built from 1m candles
    '15m',  -- fifteen minutes, built from 5m candles
    '1h',   -- one hour, built from 15m candles
    '4h',   -- four hours, built from 1h candles
    '1d'    -- one UTC day, built from 4h candles
);
comment on type market.candle_interval is 'Length of a candle: 1m, 5m, 15m, 1h, 4h or 1d.';

-- Project SQLSTATEs of market data and spread trades (the table is in 00_foundation.sql).
insert into ops.error_codes (sqlstate, name, description) values
    ('23S20', 'unknown_pair', 'No instrument trades this BASE/QUOTE asset pair.');

-- ============================================================================
-- Quotes (top of book)
-- ============================================================================
create table market.quotes (
    instrument_id integer not null,
    quoted_at     timestamptz not null,
    bid           numeric not null check (bid > 0 and bid < 'Infinity'),
    bid_size      numeric not null check (bid_size >= 0 and bid_size < 'Infinity'),
    ask           numeric not null check (ask > 0 and ask < 'Infinity'),
    ask_size      numeric not null check (ask_size >= 0 and ask_size < 'Infinity'),
    received_at   timestamptz not null default now(),
    -- why: a crossed book is bad data (the loaders reject it before it gets here)
    check (bid <= ask),
    -- why: the same book state delivered twice (a file loaded again) is stored once; the key also
    -- serves "latest quotes of an instrument" and history by instrument and time
    primary key (instrument_id, quoted_at)
) partition by range (quoted_at);
comment on table market.quotes is
    'Top of book per instrument over time, partitioned by day of quoted_at. Load with `spreadedge ingest quotes`.';
comment on column market.quotes.instrument_id is 'Instrument quoted (ref.instruments).';
comment on column market.quotes.quoted_at is 'Exchange time of the book state; the partition key. One quote per instrument and time.';
comment on column market.quotes.bid is 'Best bid price.';
comment on column market.quotes.bid_size is 'Quantity at the best bid.';
comment on column market.quotes.ask is 'Best ask price.';
comment on column market.quotes.ask_size is 'Quantity at the best ask.';
comment on column market.quotes.received_at is 'When spreadedge received the quote.';
-- why BRIN: periods across all instruments (spread history) read by time; quotes arrive in time order
create index quotes_quoted_brin_idx on market.quotes using brin (quoted_at);

-- ============================================================================
-- Ticks (public trades)
-- ============================================================================
create table market.ticks (
    instrument_id     integer not null,
    traded_at         timestamptz not null,
    exchange_trade_id text not null check (exchange_trade_id <> ''),
    price             numeric not null check (price > 0 and price < 'Infinity'),
    quantity          numeric not null check (quantity > 0 and quantity < 'Infinity'),
    side              trading.order_side,
    received_at       timestamptz not null default now(),
    -- why: a trade reported twice (websocket and REST, or a file loaded again) is stored once. A
    -- unique key of a partitioned table must hold the partition key: an exchange reports one trade
    -- id with one time, so (instrument, time, trade id) is the trade's identity, and its index also
    -- serves the reads by instrument and time (rollups, last price)
    primary key (instrument_id, traded_at, exchange_trade_id)
) partition by range (traded_at);
comment on table market.ticks is
    'Public trades per instrument, partitioned by day of traded_at. Load with `spreadedge ingest ticks`.';
comment on column market.ticks.instrument_id is 'Instrument traded (ref.instruments; it names the exchange).';
comment on column market.ticks.traded_at is 'Exchange time of the trade; the partition key.';
comment on column market.ticks.exchange_trade_id is 'The exchange''s id of the trade, unique per instrument.';
comment on column market.ticks.price is 'Trade price in the quote asset.';
comment on column market.ticks.quantity is 'Traded quantity in base units (contracts for derivatives).';
comment on column market.ticks.side is 'Side of the taker (the aggressor), when the exchange reports it.';
comment on column market.ticks.received_at is 'When spreadedge received the trade.';
create index ticks_traded_brin_idx on market.ticks using brin (traded_at);

-- ============================================================================
-- Candles (OHLCV)
-- ============================================================================
create table market.candles (
    instrument_id integer not null,
    interval      market.candle_interval not null,
    open_time     timestamptz not null,
    open          numeric not null check (open > 0 and open < 'Infinity'),
    high          numeric not null check (high < 'Infinity'),
    low           numeric not null check (low > 0),
    close         numeric not null check (close > 0 and close < 'Infinity'),
    volume        numeric not null check (volume >= 0 and volume < 'Infinity'),
    quote_volume  numeric not null check (quote_volume >= 0 and quote_volume < 'Infinity'),
    trade_count   integer not null check (trade_count >= 0),
    updated_at    timestamptz not null default now(),
    -- why: a loaded candle (an exchange's own) is complete; built again from the trades spreadedge
    -- received, it lost those it missed, so the rollups leave it as it is
    loaded        boolean not null default false,
    -- why: the high and low bound every price of the candle
    check (high >= open and high >= close and low <= open and low <= close),
    -- why: one candle per instrument, interval and open time (a second copy is not stored)
    primary key (instrument_id, interval, open_time)
) partition by range (open_time);
comment on table market.candles is
    'OHLCV candles per instrument and interval, partitioned by month of open_time. Built by market.rollup_candles or loaded with `spreadedge ingest candles`.';
comment on column market.candles.instrument_id is 'Instrument (ref.instruments).';
comment on column market.candles.interval is 'Candle length: 1m, 5m, 15m, 1h, 4h or 1d.';
comment on column market.candles.open_time is 'Start of the candle (UTC, aligned to the interval); the partition key.';
comment on column market.candles.open is 'Price of the first trade.';
comment on column market.candles.high is 'Highest trade price.';
comment on column market.candles.low is 'Lowest trade price.';
comment on column market.candles.close is 'Price of the last trade.';
comment on column market.candles.volume is 'Traded quantity in base units.';
comment on column market.candles.quote_volume is 'Traded value: sum of price x quantity, in the quote asset.';
comment on column market.candles.trade_count is 'Number of trades.';
comment on column market.candles.updated_at is 'When the candle was last written (a late trade rewrites a built candle).';
comment on column market.candles.loaded is
    'True for a candle loaded from a file (spreadedge ingest candles): market.rollup_candles never rewrites it. False for one built by the rollups.';
create index candles_open_brin_idx on market.candles using brin (open_time);

-- ============================================================================
-- Latest prices (what marks positions)
-- ============================================================================
-- why a table: the latest quote of an instrument is read for every position mark and every row of
-- market.current_spreads; one row per instrument, kept current by statement triggers on quotes and
-- ticks (functions/41_market_latest_prices.sql), makes that a primary-key lookup instead of a
-- search through the day partitions
create table market.latest_prices (
    instrument_id integer primary key references ref.instruments,
    bid           numeric,
    bid_size      numeric,
    ask           numeric,
    ask_size      numeric,
    quoted_at     timestamptz,
    last_price    numeric,
    traded_at     timestamptz,
    -- why: a quote is either all there or not there at all; likewise the last trade
    check ((quoted_at is null) = (bid is null) and (bid is null) = (ask is null)
           and (ask is null) = (bid_size is null) and (bid_size is null) = (ask_size is null)),
    check ((traded_at is null) = (last_price is null))
)
-- why: every loaded batch updates the rows of its instruments; free space keeps the updates HOT
with (fillfactor = 70);
comment on table market.latest_prices is
    'The newest quote and trade of each instrument, kept by triggers on market.quotes and market.ticks; read by trading.mark_price and market.current_spreads.';
comment on column market.latest_prices.instrument_id is 'Instrument.';
comment on column market.latest_prices.bid is 'Best bid of the newest quote (null before the first quote).';
comment on column market.latest_prices.bid_size is 'Quantity at the best bid of the newest quote.';
comment on column market.latest_prices.ask is 'Best ask of the newest quote.';
comment on column market.latest_prices.ask_size is 'Quantity at the best ask of the newest quote.';
comment on column market.latest_prices.quoted_at is 'Exchange time of the newest quote.';
comment on column market.latest_prices.last_price is 'Price of the newest trade (null before the first tick).';
comment on column market.latest_prices.traded_at is 'Exchange time of the newest trade.';

-- ============================================================================
-- Candle rollup watermark
-- ============================================================================
create table market.rollup_watermarks (
    rollup      text primary key check (rollup in ('candles')),
    built_until timestamptz not null,
    updated_at  timestamptz not null default now()
);
comment on table market.rollup_watermarks is
    'How far each incremental rollup has built (one row, candles); market.rollup_candles starts its next run an open window before it.';
comment on column market.rollup_watermarks.rollup is 'Which rollup: candles.';
comment on column market.rollup_watermarks.built_until is 'End (exclusive) of the trade times the last run built candles for.';
comment on column market.rollup_watermarks.updated_at is 'When the last run finished.';

-- ============================================================================
-- Technical indicators
-- ============================================================================
create table market.technical_indicators (
    instrument_id  integer not null,
    interval       market.candle_interval not null,
    open_time      timestamptz not null,
    sma_20         numeric,
    ema_20         numeric,
    rsi_14         numeric,
    macd           numeric,
    macd_signal    numeric,
    macd_histogram numeric,
    bb_middle      numeric,
    bb_upper       numeric,
    bb_lower       numeric,
    vwap           numeric,
    atr_14         numeric,
    computed_at    timestamptz not null default now(),
    primary key (instrument_id, interval, open_time)
) partition by range (open_time);
comment on table market.technical_indicators is
    'Standard indicators per candle, partitioned by month of open_time; written by market.compute_indicators (null during warm-up).';
comment on column market.technical_indicators.instrument_id is 'Instrument (ref.instruments).';
comment on column market.technical_indicators.interval is 'Candle interval the indicators are computed on.';
comment on column market.technical_indicators.open_time is 'Open time of the candle; the partition key.';
comment on column market.technical_indicators.sma_20 is 'Simple moving average of 20 closes.';
comment on column market.technical_indicators.ema_20 is 'Exponential moving average of closes, 20 periods (alpha 2/21, seeded with the SMA).';
comment on column market.technical_indicators.rsi_14 is 'Relative strength index, 14 periods, Wilder smoothing.';
comment on column market.technical_indicators.macd is 'MACD line: EMA 12 - EMA 26 of closes.';
comment on column market.technical_indicators.macd_signal is 'Signal line: EMA 9 of the MACD line.';
comment on column market.technical_indicators.macd_histogram is 'MACD line - signal line.';
comment on column market.technical_indicators.bb_middle is 'Bollinger middle band: SMA 20 of closes.';
comment on column market.technical_indicators.bb_upper is 'Bollinger upper band: middle + 2 population standard deviations of 20 closes.';
comment on column market.technical_indicators.bb_lower is 'Bollinger lower band: middle - 2 population standard deviations of 20 closes.';
comment on column market.technical_indicators.vwap is 'Volume-weighted average price since the start of the UTC day: sum(quote_volume) / sum(volume).';
comment on column market.technical_indicators.atr_14 is 'Average true range, 14 periods, Wilder smoothing.';
comment on column market.technical_indicators.computed_at is 'When the row was computed.';
create index technical_indicators_open_brin_idx on market.technical_indicators using brin (open_time);
