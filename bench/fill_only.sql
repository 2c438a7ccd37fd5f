-- spreadedge bench: record one fill per transaction against pre-placed orders (pgbench script)
-- The bench places two large orders (a buy and a sell) per live strategy and instrument, with
-- consecutive ids from :first_order, in (strategy, instrument, side) order, at 60000 (BTC) and
-- 3000 (ETH); each transaction fills 0.01 of a random one. The fill price equals the order's limit
-- price. Exchange trade ids are unique: client id plus a random 63-bit number.
\set o random(:first_order, :last_order)
\set i ((:o - :first_order) / 2) % 12 + 1
\set r random(1, 9000000000000000000)
select trading.record_fill(
    order_id => :o,
    exchange_trade_id => 'live-' || :client_id || '-' || :r,
    quantity => 0.01,
    price => case when :i <= 6 then 60000 else 3000 end,
    fee => case when :i <= 6 then 0.6 else 0.03 end
);
