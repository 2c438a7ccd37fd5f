-- spreadedge functions: trading views
-- Readable views for people in psql and pgcli and for dashboards: names instead of ids.

create or replace view trading.position_summary
    with (security_invoker = true)
as
    select s.name as strategy,
           e.code as exchange,
           i.symbol,
           i.market_type,
           p.quantity,
           p.avg_entry_price,
           m.price as mark_price,
           -- why trim_scale: rounded to 12 places, a position marked at its entry price had an
           -- unrealized PnL of 0.000000000000, which Python (the managers) holds as Decimal('0E-12')
           -- and prints in exponent form; the value is the same, its needless zeros are gone
           case when p.quantity = 0 then 0
                else trim_scale(round(p.quantity * i.multiplier * (m.price - p.avg_entry_price), 12))
           end as unrealized_pnl,
           p.realized_pnl_gross,
           p.fees_paid,
           p.funding,
           p.realized_pnl,
           p.trade_count,
           p.opened_at,
           p.updated_at
    from trading.positions p
    join trading.strategies s on s.strategy_id = p.strategy_id
    join ref.instruments i on i.instrument_id = p.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id
    cross join lateral (select trading.mark_price(p.instrument_id) as price) m;
comment on view trading.position_summary is
    'Every position with names, mark price (trading.mark_price: newest quote mid or newest tick, whichever is newer, else latest fill the session may see) and realized and unrealized PnL.';

create or replace view trading.open_positions
    with (security_invoker = true)
as
    select p.*
    from trading.position_summary p
    where p.quantity <> 0;
comment on view trading.open_positions is 'Positions with a non-zero quantity, with mark price and PnL (trading.position_summary).';

create or replace view trading.order_history
    with (security_invoker = true)
as
    select o.order_id,
           o.created_at,
           s.name as strategy,
           e.code as exchange,
           i.symbol,
           o.side,
           o.order_type,
           o.quantity,
           o.price,
           o.stop_price,
           o.status,
           o.filled_quantity,
           o.avg_fill_price,
           o.client_order_id,
           o.exchange_order_id,
           o.status_reason,
           o.updated_at,
           -- why last: CREATE OR REPLACE VIEW adds columns only at the end (migration 0075)
           x.kind as exchange_initiated
    from trading.orders o
    left join trading.exchange_initiated_orders x on x.order_id = o.order_id
    join trading.strategies s on s.strategy_id = o.strategy_id
    join ref.instruments i on i.instrument_id = o.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id;
comment on view trading.order_history is
    'Orders with strategy, exchange and symbol names; exchange_initiated names the kind of an order the exchange made (liquidation, adl, settlement, delisting).';

create or replace view trading.active_orders
    with (security_invoker = true)
as
    select h.*
    from trading.order_history h
    where h.status in ('new', 'open', 'partially_filled');
comment on view trading.active_orders is 'Orders still working: new, open or partially filled.';

create or replace view trading.trade_history
    with (security_invoker = true)
as
    select t.trade_id,
           t.executed_at,
           s.name as strategy,
           e.code as exchange,
           i.symbol,
           t.side,
           t.quantity,
           t.price,
           t.fee,
           t.fee_currency,
           t.fee_quote,
           t.realized_pnl_gross,
           t.realized_pnl,
           t.order_id,
           t.exchange_trade_id,
           t.is_late,
           t.recorded_at
    from trading.trades t
    join trading.strategies s on s.strategy_id = t.strategy_id
    join ref.instruments i on i.instrument_id = t.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id;
comment on view trading.trade_history is 'Trades (fills) with strategy, exchange and symbol names and the PnL each realized.';
