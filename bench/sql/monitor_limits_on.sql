-- spreadedge bench: risk limits on every live strategy, none of which the bench's orders break
-- (every check runs to the end: order notional, position notional, daily loss). Working orders are
-- counted by bench/sql/monitor_limits_open.sql, measured apart (see bench/monitor.py).
select monitor.set_risk_limit(
    strategy => 'live' || n,
    max_order_notional => 1000000,
    max_position_notional => 1000000000,
    max_daily_loss => 1000000
)
from generate_series(1, %(strategies)s) as n;
