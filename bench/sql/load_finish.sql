-- spreadedge bench: bulk load, finishing
-- Positions of the loaded history, from the daily rollup it already has. Every pair ends its
-- history flat (whole round trips only), so quantity is 0 and there is no entry price; the last
-- trade of pair k is trade N - pairs + k. Parameters: trades (N), pairs, t0, step_us.

insert into trading.positions
    (strategy_id, instrument_id, quantity, realized_pnl_gross, fees_paid, trade_count, updated_at, multiplier,
     quote_asset)
select p.strategy_id, p.instrument_id, 0, sum(d.realized_pnl_gross), sum(d.fees), sum(d.trades),
       %(t0)s::timestamptz + ((%(trades)s::bigint - %(pairs)s + p.pair) * %(step_us)s::bigint)
           * interval '1 microsecond',
       i.multiplier, i.quote_asset
from bench_pairs p
join trading.daily_pnl d on d.strategy_id = p.strategy_id and d.instrument_id = p.instrument_id
join ref.instruments i on i.instrument_id = p.instrument_id
group by p.pair, p.strategy_id, p.instrument_id, i.multiplier, i.quote_asset;
