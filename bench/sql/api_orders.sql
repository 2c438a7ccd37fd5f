-- spreadedge bench: more orders, for the history read bench (orders?symbol=...&limit=100)
-- Brings trading.orders up to %(target)s rows with cancelled limit orders of the s* strategies on
-- every instrument (in `make bench` the 12 bench instruments and the 1,200 of the spread
-- measurement, which runs before: about one in a hundred is BTCUSDT or ETHUSDT), spread
-- evenly over the last 30 days, as trading.place_order and trading.cancel_order would have left
-- them (order_keys row, status cancelled). Bulk-loaded like the history: the session runs with
-- session_replication_role = replica, so neither audit nor foreign-key triggers fire.
-- Parameters: %(target)s total orders wanted.

create temporary table bench_api_orders on commit drop as
select nextval('trading.order_id_seq') as order_id,
       now() - interval '30 days' + g * (interval '30 days' / greatest(x.missing, 1)) as created_at,
       s.strategy_id,
       i.instrument_id,
       i.exchange_id,
       case when g %% 2 = 0 then 'buy' else 'sell' end::trading.order_side as side
from (select greatest(%(target)s - (select count(*) from trading.orders), 0) as missing) x
cross join lateral generate_series(1::bigint, x.missing) as g
join (select row_number() over (order by strategy_id) - 1 as k, strategy_id
      from trading.strategies where name ~ '^s[0-9]+$') s
  on s.k = g %% (select count(*) from trading.strategies where name ~ '^s[0-9]+$')
join (select row_number() over (order by instrument_id) - 1 as k, instrument_id, exchange_id
      from ref.instruments) i
  on i.k = (g * 7) %% (select count(*) from ref.instruments);

insert into trading.order_keys (order_id, created_at, exchange_id, strategy_id, instrument_id)
select order_id, created_at, exchange_id, strategy_id, instrument_id from bench_api_orders;

insert into trading.orders
    (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price, status,
     status_reason, updated_at)
select order_id, created_at, strategy_id, instrument_id, side, 'limit', 0.01, 50000, 'cancelled',
       'bench', created_at
from bench_api_orders;
