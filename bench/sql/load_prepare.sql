-- spreadedge bench: bulk load, session set-up
-- The (strategy, instrument) pairs the history is spread over and the per-batch scratch table,
-- both temporary (this session only). Pair k trades strategy k / instruments, instrument
-- k % instruments; numbers are chosen so every value is a multiple of the instrument's tick and lot.

create temp table bench_pairs as
select (row_number() over (order by s.strategy_id, i.instrument_id) - 1)::integer as pair,
       s.strategy_id,
       i.instrument_id,
       i.exchange_id,
       i.tick_size,
       i.multiplier,
       i.taker_fee as fee_rate,
       i.quote_asset,
       case i.base_asset when 'BTC' then 60000 else 3000 end::numeric as base_price,
       case i.base_asset when 'BTC' then 0.01 else 0.1 end::numeric as quantity
from trading.strategies s
cross join ref.instruments i
where s.name ~ '^s[0-9]+$'
  and i.symbol in ('BTCUSDT', 'ETHUSDT');
create unique index on bench_pairs (pair);
analyze bench_pairs;

create temp table bench_batch (
    n                  bigint not null,
    trade_id           bigint not null,
    executed_at        timestamptz not null,
    order_id           bigint not null,
    fill_no            integer not null,
    strategy_id        integer not null,
    instrument_id      integer not null,
    exchange_id        smallint not null,
    side               trading.order_side not null,
    quantity           numeric not null,
    price              numeric not null,
    fee                numeric not null,
    fee_currency       text not null,
    position_delta     numeric not null,
    realized_pnl_gross numeric not null,
    notional           numeric not null,
    multiplier         numeric not null
);
