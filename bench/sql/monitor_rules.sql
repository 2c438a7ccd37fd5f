-- spreadedge bench: %(rules)s alert rules over collected metrics and market data, and an hour of it
-- A quarter each: system and trading metrics, risk metrics per strategy (labels), price rules
-- (last = mark price, or avg / change_pct over ticks) and volume rules on the 12 bench instruments.
-- Thresholds are out of reach, so evaluations after the first measure reading, not writing.
insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity)
select i.instrument_id, now() - make_interval(secs => s * 10), 'bench-' || s, 1000 + s %% 50, 0.01
from ref.instruments i
cross join generate_series(1, 360) as s;

select monitor.collect_metrics(now() - make_interval(mins => m))
from generate_series(0, 14) as m;

select monitor.add_alert_rule(
    name => 'bench-' || n,
    kind => k.kind,
    operator => '>',
    threshold => 1e15,
    metric => k.metric,
    labels => k.labels,
    exchange => k.exchange,
    symbol => k.symbol,
    aggregate => k.aggregate,
    evaluation_window => '5 minutes',
    channels => '{webhook}'
)
from generate_series(1, %(rules)s) as n
cross join lateral (
    select case n %% 4 when 0 then (array['system', 'trading'])[1 + n %% 8 / 4]
                      when 1 then 'risk'
                      when 2 then 'price'
                      else 'volume' end as kind,
           case n %% 4 when 0 then (array['db.size_bytes', 'orders.working'])[1 + n %% 8 / 4]
                      when 1 then (array['exposure.gross', 'pnl.realized', 'pnl.unrealized'])[1 + n %% 3] end as metric,
           case when n %% 4 = 1 then jsonb_build_object('strategy', 's' || 1 + n %% 20, 'quote_asset', 'USDT') else '{}' end as labels,
           case when n %% 4 >= 2 then (array['binance', 'coinbase', 'kraken', 'bybit', 'gateio', 'okx'])[1 + n %% 6] end as exchange,
           case when n %% 4 >= 2 then (array['BTCUSDT', 'ETHUSDT'])[1 + n %% 12 / 6] end as symbol,
           case n %% 4 when 2 then (array['last', 'avg', 'change_pct'])[1 + n %% 3]
                      when 3 then 'sum'
                      else (array['last', 'avg', 'max'])[1 + n %% 3] end as aggregate
) as k;

-- why analyze: the rules, metrics and ticks above are new to the planner; autovacuum analyzed them
-- at some point of the timed runs or not at all, and the evaluation planned over 1,000 rules of
-- unknown size took about four times as long as over analyzed ones (a run's median 110 ms, another's
-- 16 ms, as autovacuum came early or late), where a desk's rules have long had their statistics
analyze monitor.alert_rules, monitor.metrics, market.ticks;
