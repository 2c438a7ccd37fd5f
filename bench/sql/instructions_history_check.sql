-- spreadedge bench: the orders page bench/instructions.py counts, once, and how many orders its
-- trader could page through (bench/instructions.py checks that the page is a full one).
-- Parameters: %(user_id)s.
select p.page,
       (select count(*)
        from trading.orders o
        join ref.instruments i using (instrument_id)
        where i.symbol = 'BTCUSDT' and o.strategy_id = any (internal.visible_strategy_ids())) as visible
from (select set_config('spreadedge.user_id', %(user_id)s, true)) as scope
cross join lateral (select trading.order_history_page(symbol => 'BTCUSDT', page_size => 100) as page) as p;
