-- spreadedge functions: monitor views
-- The seeds' monitoring section for psql, pgcli and dashboards: orders per status, open positions,
-- trades per period, query performance and disk usage (security invoker: row-level security and the
-- reader's statistics privileges apply), and the state of alerts, rules, risk limits, risk events,
-- the outbox and the latest metrics (read with the owner's rights; the tables stay private).
--
-- Who sees which monitor rows: the owner-rights views apply the session's scope themselves, as
-- row-level security does for the trading tables, so a trader learns nothing about strategies
-- they cannot see. An unscoped session (psql as the owner, the CLI, dashboards as readonly) and a
-- user with strategies:all (internal.visible_strategy_ids() is null) see every row. A scoped user
-- otherwise sees
--   - risk limits and risk events of their visible strategies (by strategy_id);
--   - metrics whose "strategy" label names a visible strategy; metrics without one (platform
--     totals, database, alert and outbox figures, custom metrics) are not per strategy and sum
--     over every strategy, so only the sessions that see every strategy get them;
--   - alert rules, and their alerts, tied to a visible strategy (a "strategy" label naming it);
--     a rule tied to no strategy (price and volume rules, metric rules without a strategy label)
--     is shown to users with alerts:manage, who run the alerting;
--   - notifications of those risk events and of those alerts' rules.
-- why security_barrier: a scoped reader's own conditions (a cast that fails on a value, a
-- function that prints its argument) must not run on rows the view's scope filters out.

create or replace view monitor.orders_per_status
    with (security_invoker = true)
as
    select o.status,
           count(*) as orders,
           count(*) filter (where o.created_at > now() - interval '24 hours') as placed_last_24h,
           max(o.updated_at) as last_change_at
    from trading.orders o
    group by o.status;
comment on view monitor.orders_per_status is 'Orders per status: all of them, those placed in the last 24 hours, and the latest change.';

create or replace view monitor.open_positions
    with (security_invoker = true)
as
    select p.strategy,
           count(*) as open_positions,
           round(sum(abs(p.quantity) * i.multiplier * p.mark_price), 12) as gross_exposure,
           round(sum(p.quantity * i.multiplier * p.mark_price), 12) as net_exposure,
           sum(p.unrealized_pnl) as unrealized_pnl,
           sum(p.realized_pnl) as realized_pnl,
           -- why per quote asset: the BTC exposure of ETH/BTC positions was added to the USDT of
           -- BTC/USDT ones at par (last: a view keeps its columns' order)
           i.quote_asset
    from trading.open_positions p
    join ref.exchanges e on e.code = p.exchange
    join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = p.symbol
    group by p.strategy, i.quote_asset;
comment on view monitor.open_positions is
    'Per strategy and quote asset: open positions, gross and net exposure at the mark price, unrealized and realized PnL, in that quote asset.';

-- why per quote asset, without volume: it summed every instrument's notional and fees of an hour
-- or day into one number (100 USDT and 0.05 BTC read 100.05) and their contracts into one volume
-- (1 BTC and 1 ETH read 2); base units of different assets do not add up (migration 0041 dropped
-- the old view: a view cannot lose a column in place)
create or replace view monitor.trades_per_period
    with (security_invoker = true)
as
    select 'hour' as period, h.hour as period_start, i.quote_asset, sum(h.trades)::bigint as trades,
           sum(h.notional) as notional, sum(h.fees) as fees, sum(h.realized_pnl_gross) as realized_pnl_gross
    from trading.hourly_pnl h
    join ref.instruments i on i.instrument_id = h.instrument_id
    where h.hour >= date_trunc('hour', now(), 'UTC') - interval '47 hours'
    group by h.hour, i.quote_asset
    union all
    select 'day', d.day::timestamp at time zone 'UTC', d.quote_asset, sum(d.trades), sum(d.notional), sum(d.fees),
           sum(d.realized_pnl_gross)
    from trading.daily_pnl d
    where d.day >= (now() at time zone 'UTC')::date - 29
    group by d.day, d.quote_asset;
comment on view monitor.trades_per_period is
    'Fills per UTC hour (last 48 hours) and per UTC day (last 30 days) and quote asset: trades, notional, fees and gross realized PnL in that quote asset.';

create or replace view monitor.query_performance
    with (security_invoker = true)
as
    select left(regexp_replace(s.query, E'\\s+', ' ', 'g'), 200) as query,
           s.calls,
           round(s.total_exec_time::numeric, 3) as total_ms,
           round(s.mean_exec_time::numeric, 3) as mean_ms,
           round(s.max_exec_time::numeric, 3) as max_ms,
           s.rows,
           round(s.shared_blks_hit::numeric / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 4) as cache_hit_ratio
    from public.pg_stat_statements s
    where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
    order by s.total_exec_time desc
    limit 50;
comment on view monitor.query_performance is
    'The 50 statements of this database with the most execution time (pg_stat_statements; query text needs pg_read_all_stats for other users'' statements).';

create or replace view monitor.disk_usage
    with (security_invoker = true)
as
    select c.relnamespace::regnamespace::text as schema_name,
           c.relname as table_name,
           sum(pg_total_relation_size(t.relid)) as total_bytes,
           pg_size_pretty(sum(pg_total_relation_size(t.relid))) as total_size,
           count(*) filter (where t.isleaf and t.level > 0) as partitions
    from pg_catalog.pg_class c
    cross join lateral pg_partition_tree(c.oid) t
    where c.relnamespace::regnamespace::text in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops')
      and c.relkind in ('r', 'p') and not c.relispartition
    group by c.relnamespace, c.relname
    order by total_bytes desc;
comment on view monitor.disk_usage is
    'Size of every project table with its indexes and TOAST, partitions summed into their table, largest first.';

create or replace view monitor.latest_metrics
    with (security_barrier = true)
as
    -- scope: a series labelled with a visible strategy's name; unlabelled series only for sessions
    -- that see every strategy (they are platform-wide)
    select distinct on (m.name, m.labels)
           m.name, m.labels, m.value, c.unit, m.recorded_at
    from monitor.metrics m
    join monitor.metric_catalog c on c.name = m.name
    -- why not after now: a value may be dated up to a day ahead (a skewed clock, a mistyped
    -- hour), and as the newest it hid every value recorded since, for up to a day; alert rules
    -- too read only values up to the time they evaluate at
    where m.recorded_at > now() - interval '1 hour' and m.recorded_at <= now()
      and ((select internal.visible_strategy_ids()) is null
           or m.labels ->> 'strategy' in (select s.name from trading.strategies s
                                          where s.strategy_id = any ((select internal.visible_strategy_ids())::integer[])))
    -- why value desc: a series recorded twice at one time showed whichever value was inserted
    -- first, while an alert rule reads the larger (internal.alert_rule_values): the dashboard
    -- read 50 beside an alert that fired at 150
    order by m.name, m.labels, m.recorded_at desc, m.value desc;
comment on view monitor.latest_metrics is
    'The newest value of every metric series recorded in the last hour (none dated after now; of two at one time, the larger, as alert rules read it). A session scoped to a user without strategies:all sees only series whose strategy label names one of its strategies.';

create or replace view monitor.alert_rule_list
    with (security_barrier = true)
as
    select r.rule_id,
           r.name,
           r.kind,
           coalesce(r.metric, e.code || '/' || i.symbol) as watching,
           r.labels,
           r.aggregate,
           r.operator,
           r.threshold,
           r.evaluation_window,
           r.severity,
           r.cooldown,
           r.channels,
           r.is_enabled,
           r.last_notified_at,
           r.description
    from monitor.alert_rules r
    left join ref.instruments i on i.instrument_id = r.instrument_id
    left join ref.exchanges e on e.exchange_id = i.exchange_id
    -- scope: a rule whose strategy label names a visible strategy; a rule tied to no strategy only
    -- with alerts:manage (or for a session that sees every strategy)
    where (select internal.visible_strategy_ids()) is null
       or case when r.labels ? 'strategy'
                then r.labels ->> 'strategy' in (select s.name from trading.strategies s
                                                  where s.strategy_id = any ((select internal.visible_strategy_ids())::integer[]))
                else 'alerts:manage' = any ((select internal.session_permissions())::text[])
           end;
comment on view monitor.alert_rule_list is
    'Alert rules with what each watches (metric, or exchange/symbol). A session scoped to a user without strategies:all sees the rules whose strategy label names one of its strategies, and the rules tied to no strategy only with alerts:manage.';

create or replace view monitor.alert_list
    with (security_barrier = true)
as
    select a.alert_id,
           r.name as rule,
           r.kind,
           a.severity,
           a.status,
           a.opened_value,
           r.operator,
           a.threshold,
           a.opened_at,
           a.notified,
           a.acknowledged_at,
           a.acknowledged_by,
           a.resolved_at,
           a.resolved_value
    from monitor.alerts a
    join monitor.alert_rules r on r.rule_id = a.rule_id
    -- scope: the alerts of the rules monitor.alert_rule_list shows the session
    where (select internal.visible_strategy_ids()) is null
       or case when r.labels ? 'strategy'
                then r.labels ->> 'strategy' in (select s.name from trading.strategies s
                                                  where s.strategy_id = any ((select internal.visible_strategy_ids())::integer[]))
                else 'alerts:manage' = any ((select internal.session_permissions())::text[])
           end;
comment on view monitor.alert_list is
    'Alerts with their rule''s name: open (firing, acknowledged) and resolved. A scoped session sees the alerts of the rules monitor.alert_rule_list shows it.';

create or replace view monitor.risk_limit_list
    with (security_barrier = true)
as
    select l.limit_id,
           s.name as strategy,
           e.code as exchange,
           i.symbol,
           l.max_order_notional,
           l.max_position_notional,
           l.max_open_orders,
           l.max_daily_loss,
           l.kill_switch,
           l.channels,
           l.updated_at,
           l.updated_by,
           l.limit_asset
    from monitor.risk_limits l
    join trading.strategies s on s.strategy_id = l.strategy_id
    left join ref.exchanges e on e.exchange_id = l.exchange_id
    left join ref.instruments i on i.instrument_id = l.instrument_id
    -- scope: the session's visible strategies, as row-level security has it for their orders
    where (select internal.visible_strategy_ids()) is null
       or l.strategy_id = any ((select internal.visible_strategy_ids())::integer[]);
comment on view monitor.risk_limit_list is
    'Risk limits with strategy, exchange and symbol names (null exchange or symbol: every one) and the asset their amounts are in (null: each instrument''s quote asset). A scoped session sees its visible strategies'' limits.';

create or replace view monitor.risk_event_list
    with (security_barrier = true)
as
    select r.risk_event_id,
           r.occurred_at,
           s.name as strategy,
           e.code as exchange,
           i.symbol,
           r.order_id,
           r.limit_kind,
           r.limit_value,
           r.observed_value,
           r.reason
    from monitor.risk_events r
    join trading.strategies s on s.strategy_id = r.strategy_id
    left join ref.instruments i on i.instrument_id = r.instrument_id
    -- why the limit's exchange too: a kill switch of a whole exchange has no instrument
    left join monitor.risk_limits l on l.limit_id = r.limit_id
    left join ref.exchanges e on e.exchange_id = coalesce(i.exchange_id, l.exchange_id)
    -- scope: the session's visible strategies
    where (select internal.visible_strategy_ids()) is null
       or r.strategy_id = any ((select internal.visible_strategy_ids())::integer[]);
comment on view monitor.risk_event_list is
    'Risk events (rejected orders, refused amendments of working orders, kill switch changes, fills the exchange made: limit_kind exchange_fill) with names. A scoped session sees its visible strategies'' events.';

create or replace view monitor.notification_list
    with (security_barrier = true)
as
    select n.notification_id,
           n.channel,
           n.status,
           n.subject,
           n.attempts,
           n.next_attempt_at,
           n.last_error,
           n.created_at,
           n.delivered_at,
           n.dead_at,
           n.delivered_to,
           n.undeliverable_to,
           n.delivery_id
    from monitor.notifications n
    -- scope: notifications of the risk events and of the alerts' rules the session sees (the two
    -- views above); every notification comes from exactly one of them
    where (select internal.visible_strategy_ids()) is null
       or exists (select from monitor.risk_events re
                  where re.risk_event_id = n.risk_event_id
                    and re.strategy_id = any ((select internal.visible_strategy_ids())::integer[]))
       or exists (select from monitor.alert_events ae
                  join monitor.alert_rules r on r.rule_id = ae.rule_id
                  where ae.event_id = n.alert_event_id
                    and case when r.labels ? 'strategy'
                             then r.labels ->> 'strategy' in (select s.name from trading.strategies s
                                                               where s.strategy_id = any ((select internal.visible_strategy_ids())::integer[]))
                             else 'alerts:manage' = any ((select internal.session_permissions())::text[])
                        end);
comment on view monitor.notification_list is
    'The outbox: every notification with its delivery state (status dead: the dead letter; last_error says why, and a receiver''s refusal for good sends it there at its first attempt) and delivery_id (the email''s Message-ID, the webhook''s delivery_id). A scoped session sees the notifications of the risk events and alert rules monitor.risk_event_list and monitor.alert_rule_list show it.';
