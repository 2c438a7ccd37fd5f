-- spreadedge bench: what pnl_summary must return for the timed query, summed from the trades
-- Used once after the load to prove the history, its rollup and pnl_summary agree.

select count(*) as trades,
       sum(t.quantity) as volume,
       sum(t.quantity * t.price * i.multiplier) as notional,
       sum(t.fee_quote) as fees,
       sum(t.realized_pnl_gross) as realized_pnl_gross
from trading.trades t
join ref.instruments i on i.instrument_id = t.instrument_id
where t.strategy_id = (select s.strategy_id from trading.strategies s where s.name = %(strategy)s)
  and t.executed_at >= %(since)s
  and t.executed_at < %(until)s;
