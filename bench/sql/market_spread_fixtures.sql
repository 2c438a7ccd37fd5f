-- spreadedge bench: 200 asset pairs on each of the six exchanges (1,200 instruments), each with a
-- current quote around 100 that differs a little per exchange, for market.current_spreads.

select ref.upsert_instrument(
    exchange => e.code,
    symbol => 'A' || lpad(n::text, 3, '0') || 'USDT',
    base_asset => 'A' || lpad(n::text, 3, '0'),
    quote_asset => 'USDT',
    market_type => 'spot',
    tick_size => 0.0001,
    lot_size => 0.01
)
from ref.exchanges e
cross join generate_series(1, 200) n
order by n, e.exchange_id;

insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)
select i.instrument_id, now() - interval '1 second', round(mid - 0.01, 4), 10, round(mid + 0.01, 4), 12
from ref.instruments i
cross join lateral (select (100 + random() * 0.2)::numeric as mid) m
where i.base_asset like 'A%' and i.quote_asset = 'USDT';
