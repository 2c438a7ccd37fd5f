-- spreadedge functions: order history (GET /api/v1/historical/orders and /orders/{order_id})
-- A page is merged from (strategy, instrument) pairs (a scoped caller filtering by symbol or
-- exchange), instruments (a caller who sees every strategy) or strategies (no symbol or exchange),
-- each read newest first through its (…, created_at) index a few rows at a time: a page reads
-- about page_size rows, the same on ten thousand orders as on ten million.

-- why the drop: order_item gained the order's exchange-initiated kind (migration 0075)
drop function if exists internal.order_item(trading.orders, text, text, ref.instruments);

create or replace function internal.order_item(
    p_order      trading.orders,
    p_strategy   text,
    p_exchange   text,
    p_instrument ref.instruments,
    p_kind       trading.exchange_fill_kind
)
    returns json
    stable
    language sql
as $$
    -- One order as the history API shows it: names, decimals as strings, times in UTC; the keys
    -- are internal.order_json's (why a typed row: see the type's definition)
    select to_json(row(p_order.order_id,
                       internal.iso_utc(p_order.created_at),
                       p_strategy,
                       p_exchange,
                       p_instrument.symbol,
                       p_order.side,
                       p_order.order_type,
                       trim_scale(p_order.quantity)::text,
                       trim_scale(p_order.price)::text,
                       trim_scale(p_order.stop_price)::text,
                       p_order.status,
                       trim_scale(p_order.filled_quantity)::text,
                       trim_scale(p_order.avg_fill_price)::text,
                       p_order.client_order_id,
                       p_order.exchange_order_id,
                       p_order.status_reason,
                       internal.iso_utc(p_order.updated_at),
                       p_kind)::internal.order_json)
$$;
comment on function internal.order_item(trading.orders, text, text, ref.instruments, trading.exchange_fill_kind) is
    'An order as a history API item (json), with the kind of fill the exchange made when it made it (trading.exchange_initiated_orders).';

create or replace function internal.order_page_rows(
    p_instrument_ids integer[],
    p_strategy_ids   integer[],
    p_status         trading.order_status,
    p_side           trading.order_side,
    p_start_date     timestamptz,
    p_end_date       timestamptz,
    p_after_at       timestamptz,
    p_after_id       bigint,
    p_rows           integer
)
    returns setof trading.orders
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
-- Up to p_rows orders, newest first, after the keyset position (p_after_at, p_after_id), of the
-- strategies the session may see (internal.visible_strategy_ids). Null p_strategy_ids means any
-- visible strategy, null p_instrument_ids any instrument. The rows are read per
-- driver, each through the index that holds exactly its rows in time order: a (strategy,
-- instrument) pair when both are given, else a strategy or an instrument. Drivers are read a few
-- rows at a time and only those whose rows could still reach the page are read on (k-way merge
-- in rounds), so a page reads about p_rows rows however many drivers there are and however the
-- orders are spread over them. The merge runs over time slices, newest first: the month of the
-- newest row the page can hold, the month before, then everything older. A page of recent rows
-- then reads one monthly partition: over the whole range, each driver's read would start an
-- index scan in every partition, because the default partition keeps PostgreSQL from reading
-- the partitions one after the other (ordered Append) and it merges them all instead.
-- why written twice: internal.trade_page_rows (57_trading_history_trades.sql)
-- is the same merge over the other table (the drivers come from internal.page_drivers for both);
-- a generic version would need dynamic SQL, planned on every call. Change both.
declare
    v_from       timestamptz := coalesce(p_start_date, '-infinity');
    -- why the bound: place_order refuses a time more than a day ahead (internal.check_time), and every
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
    v_page       trading.orders[] := '{}';
    v_fetched    trading.orders[];
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
    -- why: no order is placed before 2009-01-03 (internal.check_time refuses it), so a page that
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
            select coalesce(array_agg(f.o), '{}'),
                   array_agg(f.strategy_id) filter (where f.k = v_limit),
                   array_agg(f.instrument_id) filter (where f.k = v_limit),
                   array_agg((f.o).created_at) filter (where f.k = v_limit),
                   array_agg((f.o).order_id) filter (where f.k = v_limit)
            into v_fetched, v_strategy, v_instrument, v_at, v_id
            from (select d.strategy_id, d.instrument_id, r.o,
                         row_number() over (partition by d.n
                                            order by (r.o).created_at desc, (r.o).order_id desc) as k
                  from unnest(v_strategy, v_instrument, v_at, v_id)
                       with ordinality as d(strategy_id, instrument_id, after_at, after_id, n)
                  cross join lateral (
                      -- why each driver kind's test outside its subquery: there it skips the
                      -- whole branch of another kind; inside, PostgreSQL pushed it down to each
                      -- partition and still pruned and merged the two branches that read nothing
                      -- for every driver (1.1 M instructions of an orders page's 25.7 M)
                      (select b.o
                       from (select o
                             from trading.orders o
                             where o.strategy_id = d.strategy_id
                               and o.instrument_id = d.instrument_id
                               and (p_status is null or o.status = p_status)
                               and (p_side is null or o.side = p_side)
                               and o.created_at >= v_slice_from
                               and o.created_at < v_slice_until
                               and o.created_at <= d.after_at
                               and (o.created_at, o.order_id) < (d.after_at, d.after_id)
                             order by o.created_at desc, o.order_id desc
                             limit v_limit) b
                       where d.instrument_id is not null and d.strategy_id is not null)
                      union all
                      (select b.o
                       from (select o
                             from trading.orders o
                             where o.strategy_id = d.strategy_id
                               and (p_status is null or o.status = p_status)
                               and (p_side is null or o.side = p_side)
                               and o.created_at >= v_slice_from
                               and o.created_at < v_slice_until
                               and o.created_at <= d.after_at
                               and (o.created_at, o.order_id) < (d.after_at, d.after_id)
                             order by o.created_at desc, o.order_id desc
                             limit v_limit) b
                       where d.instrument_id is null)
                      union all
                      (select b.o
                       from (select o
                             from trading.orders o
                             where o.instrument_id = d.instrument_id
                               and (p_status is null or o.status = p_status)
                               and (p_side is null or o.side = p_side)
                               and o.created_at >= v_slice_from
                               and o.created_at < v_slice_until
                               and o.created_at <= d.after_at
                               and (o.created_at, o.order_id) < (d.after_at, d.after_id)
                             order by o.created_at desc, o.order_id desc
                             limit v_limit) b
                       where d.strategy_id is null)) r) f;
            -- the page so far: the newest p_rows of everything read; v_cut is its last row
            v_page := array(select p
                            from unnest(v_page || v_fetched) as p
                            order by p.created_at desc, p.order_id desc
                            limit p_rows);
            if cardinality(v_page) = p_rows then
                v_cut_at := v_page[p_rows].created_at;
                v_cut_id := v_page[p_rows].order_id;
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
comment on function internal.order_page_rows(integer[], integer[], trading.order_status, trading.order_side,
                                             timestamptz, timestamptz, timestamptz, bigint, integer) is
    'Up to p_rows orders newest first after a keyset position, merged from the strategies, instruments or (strategy, instrument) pairs asked for (null: any), of the strategies the session may see.';

create or replace function trading.order_history_page(
    symbol     text default null,
    exchange   text default null,
    strategy   text default null,
    status     text default null,
    side       text default null,
    start_date timestamptz default null,
    end_date   timestamptz default null,
    page_size  integer default 100,
    cursor     text default null
)
    returns json
    stable
    -- why security definer: the page's rows come from internal.order_page_rows, which applies the
    -- session's scope itself; as the invoker, row-level security on the strategies joined for
    -- their names computed the caller's strategies twice more in every page (0.3 ms)
    security definer
    set search_path = ''
    language plpgsql
as $$
-- One page of orders, newest first: {"items": [order…], "next_cursor": text or null}. Filters are
-- exact matches; start_date is inclusive and end_date exclusive (created_at). A filter naming
-- something that does not exist or is not visible matches nothing. A cursor is refused (22S09)
-- unless it came with the same filters (page_size may change). Needs orders:read.
#variable_conflict use_variable
declare
    -- the filters a cursor carries (internal.page_cursor): page_size is not one, it may change
    v_filters text := internal.page_filters(symbol, exchange, strategy, status, side,
                                            internal.iso_utc(start_date), internal.iso_utc(end_date));
    v_after   record;
begin
    perform internal.require_permission('orders:read');
    -- why after the permission check: read in the declarations, a cursor was judged before the
    -- caller's right to the list, and a user without orders:read got a 400 naming the cursor
    -- instead of the 403 every other request of theirs gets
    v_after := internal.read_page_cursor('orders', cursor, v_filters);
    perform internal.check_page_request(page_size, start_date, end_date);
    perform internal.check_enum_value(status, enum_range(null::trading.order_status)::text[], 'status');
    perform internal.check_enum_value(side, enum_range(null::trading.order_side)::text[], 'side');
    return (
        select json_build_object(
                   'items', coalesce(json_agg(internal.order_item(p.o, s.name, e.code, i, x.kind)
                                               order by p.n) filter (where p.n <= page_size), '[]'),
                   'next_cursor', case when count(*) > page_size
                                       then min(internal.page_cursor('orders', (p.o).created_at, (p.o).order_id, v_filters))
                                                filter (where p.n = page_size) end)
        from (select o as o, row_number() over (order by o.created_at desc, o.order_id desc) as n
              from internal.order_page_rows(internal.instrument_ids_matching(symbol, exchange),
                                            case when strategy is not null then internal.strategy_ids_named(strategy) end,
                                            status::trading.order_status, side::trading.order_side,
                                            start_date, end_date, v_after.at, v_after.id, page_size + 1) o
             ) p
        join trading.strategies s on s.strategy_id = (p.o).strategy_id
        join ref.instruments i on i.instrument_id = (p.o).instrument_id
        join ref.exchanges e on e.exchange_id = i.exchange_id
        -- why a join, not a look-up in order_item: a subquery there ran as a plan of its own for
        -- every item (a third more instructions a page)
        left join trading.exchange_initiated_orders x on x.order_id = (p.o).order_id);
end;
$$;
comment on function trading.order_history_page(text, text, text, text, text, timestamptz, timestamptz, integer, text) is
    'A page of orders newest first, as json {items, next_cursor}; filters by symbol, exchange, strategy, status, side and created_at range. Keyset-paged: pass next_cursor back as cursor with the same filters (a cursor of another list or of other filters raises 22S09). Needs orders:read.';

create or replace function trading.order_detail(order_id bigint)
    returns json
    stable
    language plpgsql
as $$
-- One order as {"order": {...}, "events": [...], "trades": [...]}: its status changes and its
-- fills, oldest first. An order that does not exist or is not visible raises unknown_order
-- (23S04). Needs orders:read.
#variable_conflict use_column
declare
    v_item json;
begin
    perform internal.require_permission('orders:read');
    select json_build_object(
               'order', internal.order_item(o, s.name, e.code, i, x.kind),
               'events', (select coalesce(json_agg(json_build_object(
                                      'occurred_at', internal.iso_utc(ev.occurred_at),
                                      'from_status', ev.from_status,
                                      'to_status', ev.to_status,
                                      'trade_id', ev.trade_id,
                                      'reason', ev.reason) order by ev.event_id), '[]')
                          from trading.order_events ev
                          -- why no bound on occurred_at: an order may be placed up to a day ahead
                          -- (placed_at, internal.check_time) and its later events are written at
                          -- now(), which can come before created_at
                          where ev.order_id = o.order_id),
               -- why by execution time: a fill delivered late (REST after the websocket missed it)
               -- has a larger trade id than a later one and was listed after it
               'trades', (select coalesce(json_agg(internal.trade_item(t, s.name, e.code, i)
                                                   order by t.executed_at, t.trade_id), '[]')
                          from trading.trades t
                          where t.order_id = o.order_id))
    into v_item
    from trading.orders o
    join trading.strategies s on s.strategy_id = o.strategy_id
    join ref.instruments i on i.instrument_id = o.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id
    left join trading.exchange_initiated_orders x on x.order_id = o.order_id
    where o.order_id = order_detail.order_id;
    if v_item is null then
        raise exception 'unknown order %', order_detail.order_id using errcode = '23S04';
    end if;
    return v_item;
end;
$$;
comment on function trading.order_detail(bigint) is
    'One order with its events and trades as json {order, events, trades}; raises 23S04 unknown_order when it does not exist or is not visible. Needs orders:read.';
