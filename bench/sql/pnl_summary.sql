-- spreadedge bench: the timed query
-- A strategy's realized PnL over the last 30 days, as a dashboard asks for it.

select *
from trading.pnl_summary(strategy => %(strategy)s, since => now() - interval '30 days', until => now());
