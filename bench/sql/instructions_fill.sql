-- spreadedge bench: one fill, counted in instructions by bench/instructions.py
-- Fills 0.01 of one of the large orders fill_only_orders.sql placed (all at their limit price
-- 60000: the counted fills are on live1's BTCUSDT at binance, its buy and its sell, so the
-- position moves both ways); the trade id is unique per call.
select trading.record_fill(
    order_id => %(order_id)s,
    exchange_trade_id => %(trade_id)s,
    quantity => 0.01,
    price => 60000,
    fee => 0.6
);
