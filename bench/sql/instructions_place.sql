-- spreadedge bench: one placement, counted in instructions by bench/instructions.py
-- The same order as bench/place_order.sql, with the strategy, instrument, side and price drawn in
-- Python (a fixed seed, so every run places the same orders).
select trading.place_order(
    strategy => 'live' || %(strategy)s,
    exchange => (array['binance', 'coinbase', 'kraken', 'bybit', 'gateio', 'okx'])[1 + (%(instrument)s - 1) %% 6],
    symbol => case when %(instrument)s <= 6 then 'BTCUSDT' else 'ETHUSDT' end,
    side => %(side)s,
    quantity => 0.01,
    price => (case when %(instrument)s <= 6 then 6000000 else 300000 end + %(cents)s) * 0.01
);
