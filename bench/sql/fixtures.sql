-- spreadedge bench: fixtures
-- Twelve instruments (BTC and ETH spot on each of the six exchanges) and the strategies the bench
-- trades, all created through the public API. Parameters: %(strategies)s strategies named
-- s1..sN (the bulk-loaded history that pnl_summary reads) and live1..liveN (written by pgbench,
-- so live fills never land in the history pnl_summary is timed on).

select ref.upsert_instrument(
    exchange => e.code,
    symbol => a.base || 'USDT',
    base_asset => a.base,
    quote_asset => 'USDT',
    market_type => 'spot',
    tick_size => 0.01,
    lot_size => 0.0001,
    min_notional => 5
)
from ref.exchanges e
cross join (values ('BTC'), ('ETH')) as a (base)
order by a.base, e.exchange_id;

select trading.create_strategy(name => p.prefix || n, description => 'spreadedge bench', capital => 1000000)
from generate_series(1, %(strategies)s) as n
cross join (values ('s'), ('live')) as p (prefix);
