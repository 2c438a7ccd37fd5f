-- spreadedge bench: a quote now for each bench instrument (BTC and ETH against USDT on the six
-- exchanges), so market.latest_prices holds a mark for every position bench/instructions.py makes
insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size)
select i.instrument_id, now(),
       case i.base_asset when 'BTC' then 59999.5 else 2999.5 end, 1,
       case i.base_asset when 'BTC' then 60000.5 else 3000.5 end, 1
from ref.instruments i
where i.quote_asset = 'USDT' and i.base_asset in ('BTC', 'ETH') and i.market_type = 'spot';
