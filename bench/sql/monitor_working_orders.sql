-- spreadedge bench: working orders per live strategy, on average
select count(*) / %(strategies)s
from trading.orders o
join trading.strategies s on s.strategy_id = o.strategy_id
where s.name like 'live%%' and o.status in ('new', 'open', 'partially_filled');
