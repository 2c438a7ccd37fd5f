-- spreadedge bench: the timed query over a fixed window, for the check against the trades
select trades, volume, notional, fees, realized_pnl_gross
from trading.pnl_summary(strategy => %(strategy)s, since => %(since)s, until => %(until)s);
