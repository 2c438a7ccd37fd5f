-- spreadedge bench: bulk load, one batch
-- Trades n in [%(lo)s, %(hi)s) of the synthetic history and everything that goes with them, written
-- set-based with the session in replica mode (no audit triggers, no foreign-key triggers: the rows
-- are consistent by construction). Parameters: lo, hi, t0 (time of trade 0), step_us (microseconds
-- between trades), pairs, fills (fills per order), first_trade_id, first_order_id.
--
-- Trade n belongs to pair n % pairs and is that pair's j-th trade, j = n / pairs. Every `fills`
-- consecutive trades of a pair fill one order; orders alternate buy, sell, buy, ... so a pair's
-- position goes 0 -> fills x quantity -> 0 once per round trip r: buys at the entry price, sells
-- at the exit price. Average-cost accounting then gives exactly: entry price while open, and each
-- selling fill realizes quantity x multiplier x (exit - entry). A batch holds whole round trips of
-- every pair, so positions are flat between batches (load_finish.sql writes them once at the end).

truncate bench_batch;

insert into bench_batch
select g.n,
       %(first_trade_id)s + g.n,
       %(t0)s::timestamptz + (g.n * %(step_us)s::bigint) * interval '1 microsecond',
       %(first_order_id)s + (x.j / %(fills)s) * %(pairs)s + x.pair,
       (x.j %% %(fills)s)::integer,
       p.strategy_id,
       p.instrument_id,
       p.exchange_id,
       case when x.is_sell then 'sell' else 'buy' end::trading.order_side,
       p.quantity,
       v.price,
       round(p.quantity * v.price * p.fee_rate, 8),
       p.quote_asset,
       case when x.is_sell then -p.quantity else p.quantity end,
       case when x.is_sell then round(p.quantity * p.multiplier * (v.exit_price - v.entry_price), 12) else 0 end,
       p.quantity * v.price * p.multiplier,
       p.multiplier
from generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) as g (n)
cross join lateral (
    select (g.n %% %(pairs)s)::integer as pair,
           g.n / %(pairs)s as j,
           (g.n / %(pairs)s / %(fills)s) %% 2 = 1 as is_sell,
           g.n / %(pairs)s / %(fills)s / 2 as round_trip
) x
join bench_pairs p on p.pair = x.pair
cross join lateral (
    select e.entry_price,
           e.exit_price,
           case when x.is_sell then e.exit_price else e.entry_price end as price
    from (
        select p.base_price + ((x.round_trip * 7919 + x.pair * 31) %% 2000) * p.tick_size as entry_price,
               p.base_price + ((x.round_trip * 7919 + x.pair * 31) %% 2000) * p.tick_size
                   + ((x.round_trip * 104729 + x.pair * 17) %% 201 - 100) * p.tick_size as exit_price
    ) e
) v;

insert into trading.order_keys (order_id, created_at, exchange_id, strategy_id, instrument_id)
select b.order_id, b.executed_at - interval '1 millisecond', b.exchange_id, b.strategy_id, b.instrument_id
from bench_batch b
where b.fill_no = 0;

insert into trading.orders
    (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price, status,
     filled_quantity, avg_fill_price, updated_at)
select b.order_id, b.executed_at - interval '1 millisecond', b.strategy_id, b.instrument_id, b.side, 'limit',
       b.quantity * %(fills)s, b.price, 'filled', b.quantity * %(fills)s, b.price,
       b.executed_at + ((%(fills)s::bigint - 1) * %(pairs)s * %(step_us)s) * interval '1 microsecond'
from bench_batch b
where b.fill_no = 0;

insert into trading.order_events (occurred_at, order_id, from_status, to_status, trade_id)
select b.executed_at - interval '1 millisecond', b.order_id, null::trading.order_status,
       'new'::trading.order_status, null::bigint
from bench_batch b
where b.fill_no = 0
union all
select b.executed_at, b.order_id, 'new', 'partially_filled', b.trade_id
from bench_batch b
where b.fill_no = 0 and %(fills)s > 1
union all
select b.executed_at, b.order_id, case when %(fills)s > 1 then 'partially_filled' else 'new' end::trading.order_status,
       'filled', b.trade_id
from bench_batch b
where b.fill_no = %(fills)s - 1;

insert into trading.trade_keys (instrument_id, exchange_trade_id, side, trade_id, executed_at)
select b.instrument_id, 'bench-' || lpad(b.n::text, 12, '0'), b.side, b.trade_id, b.executed_at
from bench_batch b;

insert into trading.trades
    (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
     fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, multiplier, closed_quantity)
select b.trade_id, b.executed_at, b.order_id, b.strategy_id, b.instrument_id, b.side, b.quantity, b.price,
       b.fee, b.fee_currency, b.fee, b.position_delta, b.realized_pnl_gross,
       'bench-' || lpad(b.n::text, 12, '0'), b.multiplier,
       -- a round trip's buys open the position and its sells close it
       case when b.side = 'sell' then b.quantity else 0 end
from bench_batch b;

insert into trading.daily_pnl as d
    (strategy_id, day, instrument_id, trades, volume, notional, fees, realized_pnl_gross, quote_asset)
select b.strategy_id, (b.executed_at at time zone 'UTC')::date, b.instrument_id, count(*), sum(b.quantity),
       sum(b.notional), sum(b.fee), sum(b.realized_pnl_gross),
       (select i.quote_asset from ref.instruments i where i.instrument_id = b.instrument_id)
from bench_batch b
group by 1, 2, 3
-- why the order: two loaders may upsert the same day's rows; one lock order means no deadlock
order by 1, 2, 3
on conflict (strategy_id, day, instrument_id) do update
set trades = d.trades + excluded.trades,
    volume = d.volume + excluded.volume,
    notional = d.notional + excluded.notional,
    fees = d.fees + excluded.fees,
    realized_pnl_gross = d.realized_pnl_gross + excluded.realized_pnl_gross;

insert into trading.hourly_pnl as h
    (strategy_id, hour, instrument_id, trades, volume, notional, fees, realized_pnl_gross)
select b.strategy_id, date_trunc('hour', b.executed_at, 'UTC'), b.instrument_id, count(*), sum(b.quantity),
       sum(b.notional), sum(b.fee), sum(b.realized_pnl_gross)
from bench_batch b
group by 1, 2, 3
-- why the order: as for daily_pnl, one lock order between the loaders
order by 1, 2, 3
on conflict (strategy_id, hour, instrument_id) do update
set trades = h.trades + excluded.trades,
    volume = h.volume + excluded.volume,
    notional = h.notional + excluded.notional,
    fees = h.fees + excluded.fees,
    realized_pnl_gross = h.realized_pnl_gross + excluded.realized_pnl_gross;
