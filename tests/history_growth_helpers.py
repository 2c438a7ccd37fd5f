"""Months of history, bulk-loaded in seconds, and the work (shared buffers) a statement does on it.

The history ends at a fixed time and is spread evenly, the same rows per day, over the days loaded:
loading the days [0, N) and then [N, 4N) gives 4 times the history with the same last hour and day.
Rows go straight into the tables with the triggers off (session_replication_role = replica): the
loader is about the shape of a long history, not about how the stored functions write it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

# Rows per day of orders (and so of order events, trades and audit rows).
PER_DAY = 1000
STRATEGIES = 8


def history_end(conn: psycopg.Connection) -> datetime:
    """Where the loaded history ends: the 2nd of the previous month, 12:00 UTC. Its month's orders
    partition then holds two days whatever today is, and 40 days before it are still inside the
    months partitioned behind (partition_history_months, 3)."""
    return conn.execute(
        "select date_trunc('month', now(), 'UTC') - interval '1 month' + interval '1 day 12 hours'"
    ).fetchone()[0]


def prepare_history(conn: psycopg.Connection) -> None:
    """The strategies (STRATEGIES in all, with the seeded two) and an alert rule the history needs."""
    conn.execute(
        "select trading.create_strategy(name => 'bulk-' || g) from generate_series(1, %s::integer) g",
        [STRATEGIES - 2],
    )
    conn.execute(
        "select monitor.add_alert_rule(name => 'bulk-rule', kind => 'system', metric => 'db.size_bytes',"
        " operator => '>', threshold => 1e15)"
    )


def load_history(
    conn: psycopg.Connection, until: datetime, from_day: int, to_day: int, per_day: int = PER_DAY
) -> None:
    """Load the days [from_day, to_day) before ``until`` of orders, order events, trades, hourly and
    daily rollups, audit rows, risk events, alerts, alert events and delivered notifications
    (per_day orders a day, one alert and one risk event for every 20 orders, and 3 notifications
    for each alert's firing and resolution)."""
    params = {"until": until, "from_day": from_day, "to_day": to_day, "per_day": per_day}
    with conn.transaction():
        conn.execute("set local session_replication_role = replica")
        for statement in _LOAD.split(";\n\n"):
            conn.execute(statement, params)
    conn.execute("analyze")


_LOAD = """
create temporary table bulk_times on commit drop as
select g as n, %(until)s::timestamptz - (g::float8 / %(per_day)s::integer) * interval '1 day' as at
from generate_series(%(from_day)s::integer * %(per_day)s::integer,
                     %(to_day)s::integer * %(per_day)s::integer - 1) g;

create temporary table bulk_pairs on commit drop as
select row_number() over (order by s.strategy_id, i.instrument_id) - 1 as k, s.strategy_id, i.instrument_id,
       i.exchange_id, i.multiplier, i.quote_asset
from trading.strategies s cross join ref.instruments i;

create temporary table bulk_orders on commit drop as
select t.n + 1 as order_id, t.at as created_at, p.strategy_id, p.instrument_id, p.exchange_id, p.multiplier,
       p.quote_asset, case when t.n %% 2 = 0 then 'buy' else 'sell' end::trading.order_side as side,
       case when t.n %% 10 = 0 then 'cancelled' else 'filled' end::trading.order_status as status
from bulk_times t join bulk_pairs p on p.k = t.n %% (select count(*) from bulk_pairs);

insert into trading.order_keys (order_id, created_at, exchange_id, client_order_id, strategy_id, instrument_id)
select o.order_id, o.created_at, o.exchange_id, 'bulk-' || o.order_id, o.strategy_id, o.instrument_id
from bulk_orders o;

insert into trading.orders (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price,
                            status, filled_quantity, avg_fill_price, client_order_id, updated_at)
select o.order_id, o.created_at, o.strategy_id, o.instrument_id, o.side, 'limit', 1, 100, o.status,
       case when o.status = 'filled' then 1 else 0 end, case when o.status = 'filled' then 100 end,
       'bulk-' || o.order_id, o.created_at
from bulk_orders o;

insert into trading.order_events (occurred_at, order_id, from_status, to_status)
select o.created_at, o.order_id, x.from_status, x.to_status
from bulk_orders o
cross join lateral (values (null::trading.order_status, 'open'::trading.order_status), ('open', o.status))
    x(from_status, to_status);

insert into trading.trade_keys (exchange_trade_id, trade_id, executed_at, instrument_id, side)
select 'x' || o.order_id, o.order_id, o.created_at, o.instrument_id, o.side
from bulk_orders o where o.status = 'filled';

insert into trading.trades (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
                            fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id,
                            recorded_at, multiplier, closed_quantity)
select o.order_id, o.created_at, o.order_id, o.strategy_id, o.instrument_id, o.side, 1, 100, 0.01, o.quote_asset,
       0.01, case when o.side = 'buy' then 1 else -1 end, case when o.side = 'sell' then 1 else 0 end,
       'x' || o.order_id, o.created_at, o.multiplier, case when o.side = 'sell' then 1 else 0 end
from bulk_orders o where o.status = 'filled';

insert into trading.hourly_pnl as h (strategy_id, hour, instrument_id, trades, volume, notional, fees,
                                     realized_pnl_gross)
select o.strategy_id, date_trunc('hour', o.created_at, 'UTC'), o.instrument_id, count(*), count(*),
       count(*) * 100 * min(o.multiplier), count(*) * 0.01, count(*) filter (where o.side = 'sell')
from bulk_orders o where o.status = 'filled' group by 1, 2, 3
on conflict (strategy_id, hour, instrument_id) do update
set trades = h.trades + excluded.trades, volume = h.volume + excluded.volume,
    notional = h.notional + excluded.notional, fees = h.fees + excluded.fees,
    realized_pnl_gross = h.realized_pnl_gross + excluded.realized_pnl_gross;

insert into trading.daily_pnl as d (strategy_id, day, instrument_id, trades, volume, notional, fees,
                                    realized_pnl_gross, quote_asset)
select o.strategy_id, (o.created_at at time zone 'UTC')::date, o.instrument_id, count(*), count(*),
       count(*) * 100 * min(o.multiplier), count(*) * 0.01, count(*) filter (where o.side = 'sell'),
       min(o.quote_asset)
from bulk_orders o where o.status = 'filled' group by 1, 2, 3
on conflict (strategy_id, day, instrument_id) do update
set trades = d.trades + excluded.trades, volume = d.volume + excluded.volume,
    notional = d.notional + excluded.notional, fees = d.fees + excluded.fees,
    realized_pnl_gross = d.realized_pnl_gross + excluded.realized_pnl_gross;

insert into audit.log (logged_at, table_name, operation, row_key, new_row, db_role, txid)
select o.created_at, 'trading.orders', 'INSERT', jsonb_build_object('order_id', o.order_id)::text,
       jsonb_build_object('order_id', o.order_id, 'status', o.status), 'spreadedge', o.order_id
from bulk_orders o;

insert into monitor.risk_events (occurred_at, strategy_id, limit_kind, reason)
select t.at, (select min(strategy_id) from trading.strategies), 'max_order_notional', 'bulk'
from bulk_times t where t.n %% 20 = 0;

insert into monitor.alerts (rule_id, status, severity, opened_value, threshold, opened_at, notified, resolved_at,
                            resolved_value)
select (select min(rule_id) from monitor.alert_rules), 'resolved', 'warning', 2, 1, t.at, true,
       t.at + interval '5 minutes', 0
from bulk_times t where t.n %% 20 = 0;

insert into monitor.alert_events (alert_id, rule_id, transition, value, notified, occurred_at)
select a.alert_id, a.rule_id, x.transition, 1, true, x.at
from monitor.alerts a
cross join lateral (values ('fired'::monitor.alert_transition, a.opened_at), ('resolved', a.resolved_at))
    x(transition, at)
where not exists (select from monitor.alert_events e where e.alert_id = a.alert_id);

insert into monitor.notifications (channel, status, subject, payload, alert_event_id, attempts, next_attempt_at,
                                   created_at, delivered_at)
select c.channel, 'delivered', 'bulk-rule fired', jsonb_build_object('rule', 'bulk-rule', 'text', repeat('x', 400)),
       e.event_id, 1, e.occurred_at, e.occurred_at, e.occurred_at
from monitor.alert_events e
cross join unnest(array['email', 'slack', 'discord']::monitor.notification_channel[]) c(channel)
where not exists (select from monitor.notifications n where n.alert_event_id = e.event_id)
"""


def work(conn: psycopg.Connection, statement: str, params: Any = None) -> int:
    """Shared buffers (hit + read) the statement touched, functions it calls included, from EXPLAIN
    (ANALYZE, BUFFERS, FORMAT JSON); run once before, so plans and catalog caches are warm."""
    explain = "explain (analyze, buffers, format json) " + statement
    conn.execute(explain, params)
    plan = conn.execute(explain, params).fetchone()[0]
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])
