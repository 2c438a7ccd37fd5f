-- spreadedge bench: orders of the live strategies their risk limits rejected (the bench's limits
-- are out of reach, so any is a limit that did not measure what the row says)
select count(*)
from trading.orders o
join trading.strategies s on s.strategy_id = o.strategy_id
where s.name like 'live%%' and o.status = 'rejected';
