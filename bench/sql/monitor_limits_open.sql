-- spreadedge bench: the limits of monitor_limits_on.sql plus max_open_orders (never reached)
select monitor.set_risk_limit(
    strategy => 'live' || n,
    max_order_notional => 1000000,
    max_position_notional => 1000000000,
    max_open_orders => 100000000,
    max_daily_loss => 1000000
)
from generate_series(1, %(strategies)s) as n;
