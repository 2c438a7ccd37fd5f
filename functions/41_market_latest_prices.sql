-- spreadedge functions: latest prices
-- Statement triggers on market.quotes and market.ticks that keep market.latest_prices at the newest
-- quote and trade of each instrument. A late row (older than what is kept) changes nothing; a trade
-- of the kept time replaces the last price when it is the later trade of that time (by exchange
-- trade id, as candles close), whichever batch it came in, concurrent batches too. A row more than
-- a minute ahead of the server's clock (the start of the loading statement) is stored but is not
-- taken as the latest: see internal.latest_price_horizon.

create or replace function internal.latest_price_horizon()
    returns timestamptz
    stable
    language sql
as $$
    -- The newest market data time that may become an instrument's latest price: a minute past the
    -- start of the current statement.
    -- why: ingestion stores times up to a day ahead (internal.time_problem), and a kept quote or
    -- trade is replaced only by a newer one. A file whose local times were read as UTC (eight
    -- hours ahead from Singapore) or one bad exchange clock froze the instrument's mark price
    -- (unrealized PnL, pre-trade risk, fee valuation) and its spreads for those hours. A minute
    -- covers the skew of synchronized clocks.
    select statement_timestamp() + interval '1 minute'
$$;
comment on function internal.latest_price_horizon() is
    'The newest market data time that may become an instrument''s latest price (market.latest_prices): a minute past the start of the statement.';

create or replace function internal.note_latest_quotes()
    returns trigger
    volatile
    language plpgsql
as $$
-- After an insert into market.quotes: the newest inserted quote of each instrument (up to
-- internal.latest_price_horizon) replaces the kept one when it is newer. Rows are taken in
-- instrument order, so concurrent loads lock the latest_prices rows in one order and never
-- deadlock one another.
begin
    insert into market.latest_prices as l (instrument_id, bid, bid_size, ask, ask_size, quoted_at)
    select distinct on (n.instrument_id) n.instrument_id, n.bid, n.bid_size, n.ask, n.ask_size, n.quoted_at
    from new_rows n
    where n.quoted_at <= internal.latest_price_horizon()
    order by n.instrument_id, n.quoted_at desc
    on conflict (instrument_id) do update
        set bid = excluded.bid, bid_size = excluded.bid_size, ask = excluded.ask,
            ask_size = excluded.ask_size, quoted_at = excluded.quoted_at
        where l.quoted_at is null or excluded.quoted_at > l.quoted_at;
    return null;
end;
$$;
comment on function internal.note_latest_quotes() is
    'Trigger function: keeps market.latest_prices at the newest quote of each instrument.';

create or replace function internal.note_latest_ticks()
    returns trigger
    volatile
    language plpgsql
as $$
-- After an insert into market.ticks: for each instrument, the last stored trade at the newest time
-- inserted (up to internal.latest_price_horizon) replaces the kept one when that time is the kept
-- time or later. Trades of one time are ordered as market.rollup_candles orders them:
-- octet_length(exchange_trade_id), then
-- exchange_trade_id (numeric ids numerically). Rows are taken in instrument order (see
-- note_latest_quotes).
-- why the last trade is looked up in market.ticks, not among the inserted rows: a trade of the
-- kept time may come in a later batch and be the later one; market.latest_prices keeps no trade id
-- to compare with, but market.ticks holds every trade of that time (this batch's too, the trigger
-- runs after the insert), one primary-key range scan per instrument of the batch.
-- why the rows are locked first, in a statement of their own: the look-up sees the trades
-- committed when its statement starts. A concurrent batch holding a later trade of the kept time,
-- not yet committed, was invisible to it; this batch then waited for that batch's row and, once
-- it committed, overwrote its price with this batch's earlier trade. Locked first (or inserted
-- empty, when the instrument has no row yet), the look-up starts after the other batch committed.
begin
    insert into market.latest_prices as l (instrument_id)
    select distinct n.instrument_id from new_rows n
    where n.traded_at <= internal.latest_price_horizon()
    order by n.instrument_id
    on conflict (instrument_id) do update
        set instrument_id = excluded.instrument_id
        where false;  -- the row is locked even though it is not updated

    insert into market.latest_prices as l (instrument_id, last_price, traded_at)
    select n.instrument_id, t.price, n.traded_at
    from (select n.instrument_id, max(n.traded_at) as traded_at
          from new_rows n
          where n.traded_at <= internal.latest_price_horizon()
          group by n.instrument_id) n
    cross join lateral (
        select t.price
        from market.ticks t
        where t.instrument_id = n.instrument_id and t.traded_at = n.traded_at
        order by octet_length(t.exchange_trade_id) desc, t.exchange_trade_id desc
        limit 1
    ) t
    order by n.instrument_id
    on conflict (instrument_id) do update
        set last_price = excluded.last_price, traded_at = excluded.traded_at
        where l.traded_at is null or excluded.traded_at > l.traded_at
           or (excluded.traded_at = l.traded_at and excluded.last_price <> l.last_price);
    return null;
end;
$$;
comment on function internal.note_latest_ticks() is
    'Trigger function: keeps market.latest_prices at the newest trade of each instrument (within one time, the greatest exchange trade id, numeric ids numerically).';

-- Triggers on the partitioned parents fire for rows routed to any partition.
create or replace trigger _500_latest_prices
    after insert on market.quotes
    referencing new table as new_rows
    for each statement execute function internal.note_latest_quotes();
create or replace trigger _500_latest_prices
    after insert on market.ticks
    referencing new table as new_rows
    for each statement execute function internal.note_latest_ticks();
