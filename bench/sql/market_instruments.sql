-- spreadedge bench: the instruments market data is generated for (id, exchange code, symbol)
select i.instrument_id, e.code, i.symbol
from ref.instruments i join ref.exchanges e using (exchange_id)
where i.quote_asset = 'USDT' and i.base_asset in ('BTC', 'ETH')
order by i.instrument_id;
