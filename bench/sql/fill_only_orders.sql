-- spreadedge bench: the orders fill_only.sql fills
-- Two orders (a buy, then a sell) per live strategy and bench instrument, placed through the API in
-- (strategy, instrument, side) order so their ids are consecutive; each is large enough for every
-- fill of a run. Instrument k (1..12) is BTCUSDT (k <= 6) or ETHUSDT on exchange (k - 1) % 6 + 1,
-- as in record_fill.sql. Returns the ids in placement order (the caller checks they are consecutive).

select trading.place_order(
    strategy => 'live' || p.n,
    exchange => (array['binance', 'coinbase', 'kraken', 'bybit', 'gateio', 'okx'])[1 + (p.k - 1) %% 6],
    symbol => case when p.k <= 6 then 'BTCUSDT' else 'ETHUSDT' end,
    side => p.side,
    quantity => 1000000,
    price => case when p.k <= 6 then 60000 else 3000 end
) as order_id
from (
    select s.n, i.k, d.side
    from generate_series(1, %(strategies)s) as s (n)
    cross join generate_series(1, 12) as i (k)
    cross join (values (1, 'buy'), (2, 'sell')) as d (ord, side)
    order by s.n, i.k, d.ord
    offset 0  -- why: keeps the sort below the placements, so ids follow this order
) p;
