-- spreadedge functions: order history (GET /api/v1/historical/orders and /orders/{order_id})
-- A page is read per instrument (symbol or exchange filter) or per strategy, each through its
-- (…, created_at) index newest first and at most page_size + 1 rows deep, then merged: a page
-- costs the same on ten thousand orders as on ten million.

create or replace function internal.order_item(
    p_order      trading.orders,
    p_strategy   text,
    p_exchange   text,
    p_instrument ref.instruments
)
    returns json
    stable
    language sql
as $$
    -- One order as the history API shows it: names, decimals as strings, times in UTC.
    select json_build_object(
        'order_id', p_order.order_id,
        'created_at', internal.iso_utc(p_order.created_at),
        'strategy', p_strategy,
        'exchange', p_exchange,
        'symbol', p_instrument.symbol,
        'side', p_order.side,
        'order_type', p_order.order_type,
        'quantity', trim_scale(p_order.quantity)::text,
        'price', trim_scale(p_order.price)::text,
        'stop_price', trim_scale(p_order.stop_price)::text,
        'status', p_order.status,
        'filled_quantity', trim_scale(p_order.filled_quantity)::text,
        'avg_fill_price', trim_scale(p_order.avg_fill_price)::text,
        'client_order_id', p_order.client_order_id,
        'exchange_order_id', p_order.exchange_order_id,
        'status_reason', p_order.status_reason,
        'updated_at', internal.iso_utc(p_order.updated_at))
$$;
comment on function internal.order_item(trading.orders, text, text, ref.instruments) is
    'An order as a history API item (json).';

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
    -- why generic: planning this lateral over every partition costs several times what running it
    -- does. The time bounds are plain variables with infinite sentinels (not "is null or", and no
    -- expression, which row-level security would treat as leaky and keep out of the index scan),
    -- so the one cached plan still starts each index scan at the cursor and prunes partitions at
    -- run time. Its cost estimate for the unbounded case is high, and JIT would cost 100 times the query.
    set plan_cache_mode = force_generic_plan
    set jit = off
    language plpgsql
as $$
-- Up to p_rows orders, newest first, after the keyset position (p_after_at, p_after_id): driven by
-- the instruments when p_instrument_ids is given, else by the strategies.
declare
    v_from     timestamptz := coalesce(p_start_date, '-infinity');
    v_until    timestamptz := coalesce(p_end_date, 'infinity');
    v_after_at timestamptz := coalesce(p_after_at, 'infinity');
    v_after_id bigint := coalesce(p_after_id, 0);
begin
    if p_instrument_ids is not null then
        return query
        select o.*
        from unnest(p_instrument_ids) as i(instrument_id)
        cross join lateral (
            select o.*
            from trading.orders o
            where o.instrument_id = i.instrument_id
              and o.strategy_id = any (p_strategy_ids)
              and (p_status is null or o.status = p_status)
              and (p_side is null or o.side = p_side)
              and o.created_at >= v_from
              and o.created_at < v_until
              and o.created_at <= v_after_at
              and (o.created_at, o.order_id) < (v_after_at, v_after_id)
            order by o.created_at desc, o.order_id desc
            limit p_rows) o
        order by o.created_at desc, o.order_id desc
        limit p_rows;
    else
        return query
        select o.*
        from unnest(p_strategy_ids) as s(strategy_id)
        cross join lateral (
            select o.*
            from trading.orders o
            where o.strategy_id = s.strategy_id
              and (p_status is null or o.status = p_status)
              and (p_side is null or o.side = p_side)
              and o.created_at >= v_from
              and o.created_at < v_until
              and o.created_at <= v_after_at
              and (o.created_at, o.order_id) < (v_after_at, v_after_id)
            order by o.created_at desc, o.order_id desc
            limit p_rows) o
        order by o.created_at desc, o.order_id desc
        limit p_rows;
    end if;
end;
$$;
comment on function internal.order_page_rows(integer[], integer[], trading.order_status, trading.order_side,
                                             timestamptz, timestamptz, timestamptz, bigint, integer) is
    'Up to p_rows orders newest first after a keyset position, by instrument or by strategy.';

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
    language plpgsql
as $$
-- One page of orders, newest first: {"items": [order…], "next_cursor": text or null}. Filters are
-- exact matches; start_date is inclusive and end_date exclusive (created_at). A filter naming
-- something that does not exist or is not visible matches nothing. Needs orders:read.
#variable_conflict use_variable
declare
    v_after record := internal.read_page_cursor(cursor);
begin
    perform internal.require_permission('orders:read');
    perform internal.check_page_request(page_size, start_date, end_date);
    perform internal.check_enum_value(status, enum_range(null::trading.order_status)::text[], 'status');
    perform internal.check_enum_value(side, enum_range(null::trading.order_side)::text[], 'side');
    return (
        select json_build_object(
                   'items', coalesce(json_agg(internal.order_item(p.o, s.name, e.code, i)
                                               order by p.n) filter (where p.n <= page_size), '[]'),
                   'next_cursor', case when count(*) > page_size
                                       then min(internal.page_cursor((p.o).created_at, (p.o).order_id))
                                                filter (where p.n = page_size) end)
        from (select o as o, row_number() over (order by o.created_at desc, o.order_id desc) as n
              from internal.order_page_rows(internal.instrument_ids_matching(symbol, exchange),
                                            internal.strategy_ids_named(strategy),
                                            status::trading.order_status, side::trading.order_side,
                                            start_date, end_date, v_after.at, v_after.id, page_size + 1) o
             ) p
        join trading.strategies s on s.strategy_id = (p.o).strategy_id
        join ref.instruments i on i.instrument_id = (p.o).instrument_id
        join ref.exchanges e on e.exchange_id = i.exchange_id);
end;
$$;
comment on function trading.order_history_page(text, text, text, text, text, timestamptz, timestamptz, integer, text) is
    'A page of orders newest first, as json {items, next_cursor}; filters by symbol, exchange, strategy, status, side and created_at range. Keyset-paged: pass next_cursor back as cursor. Needs orders:read.';

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
               'order', internal.order_item(o, s.name, e.code, i),
               'events', (select coalesce(json_agg(json_build_object(
                                      'occurred_at', internal.iso_utc(ev.occurred_at),
                                      'from_status', ev.from_status,
                                      'to_status', ev.to_status,
                                      'trade_id', ev.trade_id,
                                      'reason', ev.reason) order by ev.event_id), '[]')
                          from trading.order_events ev
                          where ev.order_id = o.order_id and ev.occurred_at >= o.created_at),
               'trades', (select coalesce(json_agg(internal.trade_item(t, s.name, e.code, i)
                                                   order by t.trade_id), '[]')
                          from trading.trades t
                          where t.order_id = o.order_id))
    into v_item
    from trading.orders o
    join trading.strategies s on s.strategy_id = o.strategy_id
    join ref.instruments i on i.instrument_id = o.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id
    where o.order_id = order_detail.order_id;
    if v_item is null then
        raise exception 'unknown order %', order_detail.order_id using errcode = '23S04';
    end if;
    return v_item;
end;
$$;
comment on function trading.order_detail(bigint) is
    'One order with its events and trades as json {order, events, trades}; raises 23S04 unknown_order when it does not exist or is not visible. Needs orders:read.';
