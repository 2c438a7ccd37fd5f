-- spreadedge bench: place one limit order per transaction (pgbench script)
-- A random strategy of :strategies (live1..liveN) and one of the 12 bench instruments (BTC and
-- ETH spot on six exchanges). The bench runs it with the strategies' risk limits off and on
-- (bench/sql/monitor_limits_on.sql): the price of the pre-trade check.
\set s random(1, :strategies)
\set i random(1, 12)
\set buy random(0, 1)
\set px random(0, 100000)
select trading.place_order(
    strategy => 'live' || :s,
    exchange => (array['binance', 'coinbase', 'kraken', 'bybit', 'gateio', 'okx'])[1 + (:i - 1) % 6],
    symbol => case when :i <= 6 then 'BTCUSDT' else 'ETHUSDT' end,
    side => case when :buy = 1 then 'buy' else 'sell' end,
    quantity => 0.01,
    price => (case when :i <= 6 then 6000000 else 300000 end + :px) * 0.01
);
