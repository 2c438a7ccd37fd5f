-- spreadedge functions: trade history (GET /api/v1/historical/trades and /trades/summary)
-- Pages are read like order pages (merged from (strategy, instrument) pairs, strategies or
-- instruments through their (…, executed_at, trade_id) indexes); the summary groups trades by
-- strategy, exchange, symbol or UTC day.

create or replace function internal.trade_item(
    p_trade      trading.trades,
    p_strategy   text,
    p_exchange   text,
    p_instrument ref.instruments
)
    returns json
    stable
    language sql
as $$
    -- One trade as the history API shows it: names, decimals as strings, times in UTC; the keys
    -- are internal.trade_json's (why a typed row: see the type's definition)
    select to_json(row(p_trade.trade_id,
                       internal.iso_utc(p_trade.executed_at),
                       p_trade.order_id,
                       p_strategy,
                       p_exchange,
                       p_instrument.symbol,
                       p_trade.side,
                       trim_scale(p_trade.quantity)::text,
                       trim_scale(p_trade.price)::text,
                       trim_scale(p_trade.fee)::text,
                       p_trade.fee_currency,
                       trim_scale(p_trade.fee_quote)::text,
                       trim_scale(p_trade.realized_pnl_gross)::text,
                       trim_scale(p_trade.realized_pnl)::text,
                       p_trade.exchange_trade_id,
                       p_trade.is_late,
                       internal.iso_utc(p_trade.recorded_at))::internal.trade_json)
$$;
comment on function internal.trade_item(trading.trades, text, text, ref.instruments) is
    'A trade as a history API item (json).';

create or replace function internal.trade_page_rows(
    p_instrument_ids integer[],
    p_strategy_ids   integer[],
    p_start_date     timestamptz,
    p_end_date       timestamptz,
    p_after_at       timestamptz,
    p_after_id       bigint,
    p_rows           integer
)
    returns setof trading.trades
    stable
    -- why rows 100: a page is page_size + 1 rows (101 by default); with the default estimate of
    -- 1,000 the page's statement built hash tables of every instrument and strategy to join their
    -- names to the page (1,212 instruments in the bench), where it now hashes the page's rows
    rows 100
    -- why security definer: row-level security would compute the caller's strategies again in
    -- every statement of every round (a third of the page's time); internal.page_drivers intersects
    -- the strategies asked for with internal.visible_strategy_ids() once, which is what the policies do
    security definer
    set search_path = ''
    -- why generic: planning this lateral over every partition costs several times what running it
    -- does. The time bounds are plain variables with infinite sentinels (not "is null or", and no
    -- expression, which row-level security would treat as leaky and keep out of the index scan),
    -- so the one cached plan still starts each index scan at its driver's position and prunes
    -- partitions at run time. Its cost estimate for the unbounded case is high, and JIT would cost
    -- 100 times the query.
    set plan_cache_mode = force_generic_plan
    set jit = off
    language plpgsql
as $$
-- Up to p_rows trades, newest first, after the keyset position (p_after_at, p_after_id), of the
-- strategies the session may see (internal.visible_strategy_ids). Null p_strategy_ids means any
-- visible strategy, null p_instrument_ids any instrument. The rows are read per
-- driver, each through the index that holds exactly its rows in time order: a (strategy,
-- instrument) pair when both are given, else a strategy or an instrument. Drivers are read a few
-- rows at a time and only those whose rows could still reach the page are read on (k-way merge
-- in rounds), so a page reads about p_rows rows however many drivers there are and however the
-- trades are spread over them. The merge runs over time slices, newest first: the month of the
-- newest row the page can hold, the month before, then everything older. A page of recent rows
-- then reads one monthly partition: over the whole range, each driver's read would start an
-- index scan in every partition, because the default partition keeps PostgreSQL from reading
-- the partitions one after the other (ordered Append) and it merges them all instead.
-- why written twice: internal.order_page_rows (56_trading_history_orders.sql)
-- is the same merge over the other table (the drivers come from internal.page_drivers for both);
-- a generic version would need dynamic SQL, planned on every call. Change both.
declare
    v_from       timestamptz := coalesce(p_start_date, '-infinity');
    -- why the bound: record_fill refuses a time more than a day ahead (internal.check_time), and every
    -- row this snapshot sees was written before now, so the partitions past it are skipped unread
    -- (clock_timestamp, not now(): a read-committed statement sees rows written after its
    -- transaction began)
    -- why 24 hours, not '1 day': a day added in the session's TimeZone is 23 hours on the eve of a
    -- spring-forward (New York), and a row dated 23.5 hours ahead was missing from the page there
    v_until      timestamptz := least(coalesce(p_end_date, 'infinity'), clock_timestamp() + interval '24 hours');
    -- the open drivers and, for each, the position to read on from
    v_strategy   integer[];
    v_instrument integer[];
    v_at         timestamptz[];
    v_id         bigint[];
    v_limit      integer;
    v_page       trading.trades[] := '{}';
    v_fetched    trading.trades[];
    v_cut_at     timestamptz;
    v_cut_id     bigint;
    -- the drivers of the page, and the time slice being merged: [v_slice_from, v_slice_until)
    v_drivers    record;
    v_slice_from timestamptz;
    v_slice_until timestamptz;
    v_slices     integer := 1;
begin
    select d.strategy_ids, d.instrument_ids into v_drivers
    from internal.page_drivers(p_instrument_ids, p_strategy_ids) d;
    if v_drivers.strategy_ids is null then
        return;
    end if;
    -- the first slice ends just after the keyset position (timestamptz counts microseconds)
    v_slice_until := least(v_until, p_after_at + interval '1 microsecond');
    -- why: no trade is executed before 2009-01-03 (internal.check_time refuses it), so a page that
    -- ends by then, or at its start, is empty; read on, an end in PostgreSQL's first month
    -- (4714 BC) took the month arithmetic of the slices out of the timestamptz range, and the page
    -- raised a raw 22008 (timestamp out of range) instead of answering that there is nothing
    if v_slice_until <= greatest(v_from, timestamptz '2009-01-03 00:00:00+00') then
        return;
    end if;
    v_slice_from := greatest(v_from, date_trunc('month', v_slice_until - interval '1 microsecond', 'UTC'));
    <<slices>>
    loop
        v_strategy := v_drivers.strategy_ids;
        v_instrument := v_drivers.instrument_ids;
        v_at := array_fill(coalesce(p_after_at, 'infinity'), array[cardinality(v_strategy)]);
        v_id := array_fill(coalesce(p_after_id, 0), array[cardinality(v_strategy)]);
        -- why twice the even share of the rows still missing: drivers rarely hold equal shares of the
        -- newest rows, and a second round costs an index descent per driver again
        v_limit := least(p_rows,
                         greatest(4, 2 * (p_rows - cardinality(v_page)) / cardinality(v_strategy) + 1));
        loop
            -- the next v_limit rows of each open driver, and where each driver that filled its
            -- limit stopped
            select coalesce(array_agg(f.t), '{}'),
                   array_agg(f.strategy_id) filter (where f.k = v_limit),
                   array_agg(f.instrument_id) filter (where f.k = v_limit),
                   array_agg((f.t).executed_at) filter (where f.k = v_limit),
                   array_agg((f.t).trade_id) filter (where f.k = v_limit)
            into v_fetched, v_strategy, v_instrument, v_at, v_id
            from (select d.strategy_id, d.instrument_id, r.t,
                         row_number() over (partition by d.n
                                            order by (r.t).executed_at desc, (r.t).trade_id desc) as k
                  from unnest(v_strategy, v_instrument, v_at, v_id)
                       with ordinality as d(strategy_id, instrument_id, after_at, after_id, n)
                  cross join lateral (
                      -- why each driver kind's test outside its subquery: there it skips the
                      -- whole branch of another kind; inside, PostgreSQL pushed it down to each
                      -- partition and still pruned and merged the two branches that read nothing
                      -- for every driver (1.1 M instructions of an orders page's 25.7 M)
                      (select b.t
                       from (select t
                             from trading.trades t
                             where t.strategy_id = d.strategy_id
                               and t.instrument_id = d.instrument_id
                               and t.executed_at >= v_slice_from
                               and t.executed_at < v_slice_until
                               and t.executed_at <= d.after_at
                               and (t.executed_at, t.trade_id) < (d.after_at, d.after_id)
                             order by t.executed_at desc, t.trade_id desc
                             limit v_limit) b
                       where d.instrument_id is not null and d.strategy_id is not null)
                      union all
                      (select b.t
                       from (select t
                             from trading.trades t
                             where t.strategy_id = d.strategy_id
                               and t.executed_at >= v_slice_from
                               and t.executed_at < v_slice_until
                               and t.executed_at <= d.after_at
                               and (t.executed_at, t.trade_id) < (d.after_at, d.after_id)
                             order by t.executed_at desc, t.trade_id desc
                             limit v_limit) b
                       where d.instrument_id is null)
                      union all
                      (select b.t
                       from (select t
                             from trading.trades t
                             where t.instrument_id = d.instrument_id
                               and t.executed_at >= v_slice_from
                               and t.executed_at < v_slice_until
                               and t.executed_at <= d.after_at
                               and (t.executed_at, t.trade_id) < (d.after_at, d.after_id)
                             order by t.executed_at desc, t.trade_id desc
                             limit v_limit) b
                       where d.strategy_id is null)) r) f;
            -- the page so far: the newest p_rows of everything read; v_cut is its last row
            v_page := array(select p
                            from unnest(v_page || v_fetched) as p
                            order by p.executed_at desc, p.trade_id desc
                            limit p_rows);
            if cardinality(v_page) = p_rows then
                v_cut_at := v_page[p_rows].executed_at;
                v_cut_id := v_page[p_rows].trade_id;
            end if;
            -- read on only the drivers that filled their limit with rows newer than the cut: their
            -- next rows may belong on the page; every other driver's next rows are older than the cut
            select array_agg(d.strategy_id), array_agg(d.instrument_id), array_agg(d.at), array_agg(d.id)
            into v_strategy, v_instrument, v_at, v_id
            from unnest(v_strategy, v_instrument, v_at, v_id) as d(strategy_id, instrument_id, at, id)
            where v_cut_at is null or (d.at, d.id) > (v_cut_at, v_cut_id);
            exit when v_strategy is null;
            v_limit := least(2 * v_limit, p_rows);
        end loop;
        -- every row of a newer slice is newer than every row of an older one: a full page is final
        exit slices when cardinality(v_page) = p_rows or v_slice_from <= v_from;
        v_slice_until := v_slice_from;
        v_slice_from := case when v_slices < 2 then greatest(v_from, v_slice_from - interval '1 month')
                             else v_from end;
        v_slices := v_slices + 1;
    end loop slices;
    return query select * from unnest(v_page);
end;
$$;
comment on function internal.trade_page_rows(integer[], integer[], timestamptz, timestamptz, timestamptz, bigint, integer) is
    'Up to p_rows trades newest first after a keyset position, merged from the strategies, instruments or (strategy, instrument) pairs asked for (null: any), of the strategies the session may see.';

create or replace function trading.trade_history_page(
    symbol     text default null,
    exchange   text default null,
    strategy   text default null,
    start_date timestamptz default null,
    end_date   timestamptz default null,
    page_size  integer default 100,
    cursor     text default null
)
    returns json
    stable
    -- why security definer: the page's rows come from internal.trade_page_rows, which applies the
    -- session's scope itself; as the invoker, row-level security on the strategies joined for
    -- their names computed the caller's strategies twice more in every page (0.3 ms)
    security definer
    set search_path = ''
    language plpgsql
as $$
-- One page of trades, newest first: {"items": [trade…], "next_cursor": text or null}. start_date
-- is inclusive and end_date exclusive (executed_at). A cursor is refused (22S09) unless it came
-- with the same filters (page_size may change). Needs orders:read.
#variable_conflict use_variable
declare
    -- the filters a cursor carries (internal.page_cursor): page_size is not one, it may change
    v_filters text := internal.page_filters(symbol, exchange, strategy,
                                            internal.iso_utc(start_date), internal.iso_utc(end_date));
    v_after   record;
begin
    perform internal.require_permission('orders:read');
    -- why after the permission check: see trading.order_history_page
    v_after := internal.read_page_cursor('trades', cursor, v_filters);
    perform internal.check_page_request(page_size, start_date, end_date);
    return (
        select json_build_object(
                   'items', coalesce(json_agg(internal.trade_item(p.t, s.name, e.code, i)
                                               order by p.n) filter (where p.n <= page_size), '[]'),
                   'next_cursor', case when count(*) > page_size
                                       then min(internal.page_cursor('trades', (p.t).executed_at, (p.t).trade_id, v_filters))
                                                filter (where p.n = page_size) end)
        from (select t as t, row_number() over (order by t.executed_at desc, t.trade_id desc) as n
              from internal.trade_page_rows(internal.instrument_ids_matching(symbol, exchange),
                                            case when strategy is not null then internal.strategy_ids_named(strategy) end,
                                            start_date, end_date, v_after.at, v_after.id, page_size + 1) t
             ) p
        join trading.strategies s on s.strategy_id = (p.t).strategy_id
        join ref.instruments i on i.instrument_id = (p.t).instrument_id
        join ref.exchanges e on e.exchange_id = i.exchange_id);
end;
$$;
comment on function trading.trade_history_page(text, text, text, timestamptz, timestamptz, integer, text) is
    'A page of trades newest first, as json {items, next_cursor}; filters by symbol, exchange, strategy and executed_at range. Keyset-paged: pass next_cursor back as cursor with the same filters (a cursor of another list or of other filters raises 22S09). Needs orders:read.';

create or replace function trading.trade_summary(
    start_date timestamptz default null,
    end_date   timestamptz default null,
    strategy   text default null,
    group_by   text default 'strategy'
)
    returns json
    stable
    language plpgsql
as $$
-- Trades grouped by strategy, exchange, symbol or UTC day and by quote asset, in
-- [start_date, end_date) (a strategy trading BTC/USDT and ETH/BTC has a USDT group and a BTC one:
-- amounts in different assets are never added up, as in trading.pnl_summary): count, volume
-- (filled quantity as pnl_summary counts it: base units on spot, contracts on derivatives),
-- notional (the group's quote asset, with the multiplier), fees and realized PnL (net of fees; in
-- the group's quote asset), and the win rate: of the trades that closed something (closed_quantity > 0, a close
-- at the entry price included), the share whose realized_pnl is positive; null when none closed
-- anything. An opening trade counts in everything but the closing and winning trades (its
-- realized PnL is minus its fee); a trade crossing zero is a closing trade, its whole fee against
-- what it closed. group_by symbol keys by the symbol alone: a symbol on several exchanges (a spot
-- BTCUSDT and a BTCUSDT perpetual) is one group per quote asset, its volume their quantities added
-- as they are (trading.pnl_summary's 'instrument' keeps the exchanges apart). Funding is not a
-- trade and is left out (trading.pnl_summary includes it). Needs pnl:read.
#variable_conflict use_variable
begin
    perform internal.require_permission('pnl:read');
    perform internal.check_time_range(start_date, end_date);
    -- why: check_enum_value lets null through (a filter left out), and a null group_by fell to the
    -- day grouping below and answered {"group_by": null} grouped by day
    if group_by is null then
        raise exception 'group_by must be one of strategy, exchange, symbol, day, got null'
            using errcode = '22S09', column = 'group_by',
                  hint = 'Leave group_by out for the default, strategy.';
    end if;
    perform internal.check_enum_value(group_by, array['strategy', 'exchange', 'symbol', 'day'], 'group_by');
    return json_build_object(
        'group_by', group_by,
        'start_date', internal.iso_utc(start_date),
        'end_date', internal.iso_utc(end_date),
        'groups', (
            select coalesce(json_agg(json_build_object(
                       'key', g.key,
                       'quote_asset', g.quote_asset,
                       'trades', g.trades,
                       'volume', trim_scale(g.volume)::text,
                       'notional', trim_scale(g.notional)::text,
                       'fees', trim_scale(g.fees)::text,
                       'realized_pnl', trim_scale(g.realized_pnl)::text,
                       'closing_trades', g.closing,
                       'winning_trades', g.winning,
                       'win_rate', case when g.closing > 0 then trim_scale(round(g.winning::numeric / g.closing, 6))::text end)
                       order by g.key, g.quote_asset), '[]')
            from (select case group_by
                             when 'strategy' then s.name
                             when 'exchange' then e.code
                             when 'symbol' then i.symbol
                             else to_char(t.executed_at at time zone 'UTC', 'YYYY-MM-DD')
                         end as key,
                         i.quote_asset,
                         count(*) as trades,
                         sum(t.quantity) as volume,
                         sum(t.quantity * t.price * t.multiplier) as notional,
                         sum(t.fee_quote) as fees,
                         sum(t.realized_pnl) as realized_pnl,
                         count(*) filter (where t.closed_quantity > 0) as closing,
                         count(*) filter (where t.closed_quantity > 0 and t.realized_pnl > 0) as winning
                  from trading.trades t
                  join trading.strategies s on s.strategy_id = t.strategy_id
                  join ref.instruments i on i.instrument_id = t.instrument_id
                  join ref.exchanges e on e.exchange_id = i.exchange_id
                  where t.strategy_id = any (internal.strategy_ids_named(strategy))
                    and (start_date is null or t.executed_at >= start_date)
                    and (end_date is null or t.executed_at < end_date)
                  group by 1, 2) g));
end;
$$;
comment on function trading.trade_summary(timestamptz, timestamptz, text, text) is
    'Trades grouped by strategy (the default), exchange, symbol (on every exchange) or UTC day, and by quote asset: count, volume, notional, fees, realized PnL and win rate, as json; any other group_by, null too, raises 22S09. Needs pnl:read.';
