-- spreadedge bench: place an order and record its fill, one transaction each (pgbench script)
-- Each transaction places a limit order AND records one fill that fills it, so it does twice the
-- work of a bare fill: validation, order_keys + order + order event, then trade_keys + trade,
-- order update + event, position and daily rollup, and the audit rows of both.
-- A random strategy of :strategies (live1..liveN) and one of the 12 bench instruments (BTC and
-- ETH spot on six exchanges), so clients share positions and rollup rows. Exchange trade ids are
-- unique: client id plus a random 63-bit number.
\set s random(1, :strategies)
\set i random(1, 12)
\set buy random(0, 1)
\set px random(0, 100000)
\set r random(1, 9000000000000000000)
begin;
select trading.place_order(
    strategy => 'live' || :s,
    exchange => (array['binance', 'coinbase', 'kraken', 'bybit', 'gateio', 'okx'])[1 + (:i - 1) % 6],
    symbol => case when :i <= 6 then 'BTCUSDT' else 'ETHUSDT' end,
    side => case when :buy = 1 then 'buy' else 'sell' end,
    quantity => 0.01,
    price => (case when :i <= 6 then 6000000 else 300000 end + :px) * 0.01
) as order_id \gset
select trading.record_fill(
    order_id => :order_id,
    exchange_trade_id => 'live-' || :client_id || '-' || :r,
    quantity => 0.01,
    price => (case when :i <= 6 then 6000000 else 300000 end + :px) * 0.01,
    fee => round(0.01 * (case when :i <= 6 then 6000000 else 300000 end + :px) * 0.01 * 0.001, 8)
);
end;
