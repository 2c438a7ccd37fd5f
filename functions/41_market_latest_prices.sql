-- spreadedge functions: latest prices
-- Statement triggers on market.quotes and market.ticks that keep market.latest_prices at the newest
-- quote and trade of each instrument. A late row (older than what is kept) changes nothing.

create or replace function internal.note_latest_quotes()
    returns trigger
    volatile
    language plpgsql
as $$
-- After an insert into market.quotes: the newest inserted quote of each instrument replaces the kept
-- one when it is newer. Rows are taken in instrument order, so concurrent loads lock the
-- latest_prices rows in one order and never deadlock one another.
begin
    insert into market.latest_prices as l (instrument_id, bid, bid_size, ask, ask_size, quoted_at)
    select distinct on (n.instrument_id) n.instrument_id, n.bid, n.bid_size, n.ask, n.ask_size, n.quoted_at
    from new_rows n
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
-- After an insert into market.ticks: the newest inserted trade of each instrument replaces the kept
-- one when it is newer (ties on time: the greater exchange trade id, so the result is deterministic).
begin
    insert into market.latest_prices as l (instrument_id, last_price, traded_at)
    select distinct on (n.instrument_id) n.instrument_id, n.price, n.traded_at
    from new_rows n
    order by n.instrument_id, n.traded_at desc, n.exchange_trade_id desc
    on conflict (instrument_id) do update
        set last_price = excluded.last_price, traded_at = excluded.traded_at
        where l.traded_at is null or excluded.traded_at > l.traded_at;
    return null;
end;
$$;
comment on function internal.note_latest_ticks() is
    'Trigger function: keeps market.latest_prices at the newest trade of each instrument.';

-- Triggers on the partitioned parents fire for rows routed to any partition.
create or replace trigger _500_latest_prices
    after insert on market.quotes
    referencing new table as new_rows
    for each statement execute function internal.note_latest_quotes();
create or replace trigger _500_latest_prices
    after insert on market.ticks
    referencing new table as new_rows
    for each statement execute function internal.note_latest_ticks();
