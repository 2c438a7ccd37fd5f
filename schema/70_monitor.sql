-- spreadedge schema: monitor
-- Metrics (partitioned by day, see 71_monitor_partitioning.sql.j2), alert rules and the alerts they
-- open, the notification outbox that `spreadedge notify worker` delivers, and pre-trade risk limits
-- with the risk events their breaches record. Tables are private: applications and people call the
-- monitor.* functions (functions/65_monitor_* .. 69_monitor_*) and read the monitor views.

-- Project SQLSTATEs of monitoring and risk (the table is in 00_foundation.sql).
insert into ops.error_codes (sqlstate, name, description) values
    ('22S12', 'invalid_alert_rule',   'An alert rule is malformed: its metric or instrument does not fit its kind, or its operator, aggregate, threshold, window, cooldown, severity or channels are invalid.'),
    ('22S13', 'invalid_risk_limit',   'A risk limit is not positive and finite, names an instrument without its exchange, names a limit_asset no instrument trades, or a new scope is given nothing to set.'),
    ('22S14', 'invalid_metric',       'A metric name is not dotted snake_case, its value is not finite or not below 10^100000 in magnitude, its labels are not a JSON object, or a session scoped to a user records a metric collect_metrics owns.'),
    ('23S12', 'unknown_metric',       'No metric has this name (see monitor.metric_catalog).'),
    ('23S13', 'unknown_alert_rule',   'No alert rule has this name.'),
    ('23S14', 'unknown_alert',        'No alert has this id.'),
    ('23S15', 'alert_rule_exists',    'An alert rule with this name already exists.'),
    ('55S05', 'alert_resolved',       'The alert is resolved: it can no longer be acknowledged.'),
    ('55S06', 'notification_state',   'The notification''s state does not allow this: a delivery result for one this worker has not claimed, or a requeue of one not in the dead letter.');

-- Who may manage alert rules and risk limits when a session is scoped to an application user.
insert into auth.permissions (permission, description) values
    ('alerts:manage', 'Add alert rules, acknowledge alerts, record custom metrics and run the notification worker''s functions.'),
    ('risk:manage',   'Set pre-trade risk limits and turn kill switches on and off.');
insert into auth.role_permissions (role_name, permission) values
    ('admin', 'alerts:manage'),
    ('admin', 'risk:manage');

create type monitor.alert_kind as enum (
    'price',    -- the market price of an instrument (market data, else fills)
    'volume',   -- the public traded volume of an instrument (market.ticks)
    'risk',     -- a risk metric: exposure, PnL, risk events
    'system',   -- a database metric: size, connections, cache, slow queries, transactions
    'trading'   -- a trading metric: orders, positions, trades
);
comment on type monitor.alert_kind is 'What an alert rule watches: price, volume, risk, system or trading.';

create type monitor.alert_severity as enum (
    'info',      -- worth knowing
    'warning',   -- needs a look soon
    'critical'   -- needs a person now
);
comment on type monitor.alert_severity is 'How urgent an alert is.';

create type monitor.alert_status as enum (
    'firing',        -- the condition holds and nobody has acknowledged it
    'acknowledged',  -- the condition holds and a person has seen it
    'resolved'       -- the condition cleared (terminal)
);
comment on type monitor.alert_status is 'Alert state: firing -> acknowledged -> resolved, or firing -> resolved.';

create type monitor.alert_transition as enum (
    'fired',         -- the rule's condition started to hold: an alert opened
    'acknowledged',  -- a person acknowledged the alert
    'resolved'       -- the condition cleared: the alert closed
);
comment on type monitor.alert_transition is 'A change of an alert''s state, as recorded in monitor.alert_events.';

create type monitor.notification_channel as enum (
    'email',    -- SMTP
    'slack',    -- Slack incoming webhook
    'discord',  -- Discord webhook
    'webhook'   -- generic webhook: JSON body, HMAC-SHA256 signed
);
comment on type monitor.notification_channel is 'Where a notification is delivered.';

create type monitor.notification_status as enum (
    'pending',     -- waiting for its next attempt
    'delivering',  -- claimed by a worker inside its open transaction; seen committed only when a
                   -- client committed a claim without a report: abandoned, claimed again after its lease
    'delivered',   -- delivered (terminal)
    'dead'         -- dead letter: every attempt failed (terminal)
);
comment on type monitor.notification_status is 'Where a notification is in the outbox: pending, delivering, delivered or dead.';

create type monitor.risk_limit_kind as enum (
    'kill_switch',            -- the strategy may place no order at all
    'max_order_notional',     -- one order's quantity x price x multiplier
    'max_position_notional',  -- |position after the order| x price x multiplier, over the limit's scope
    'max_open_orders',        -- working orders (new, open, partially filled) in the limit's scope
    'max_daily_loss',         -- realized loss of the current UTC day (and later days) in the limit's scope
    'exchange_fill'           -- not a check: a fill the exchange made (liquidation, adl, delisting; migration 0075)
);
comment on type monitor.risk_limit_kind is
    'Which pre-trade check a risk event is about, or exchange_fill: a fill the exchange made (a liquidation, an ADL, a close at delisting).';

-- ============================================================================
-- Metrics
-- ============================================================================
create table monitor.metric_catalog (
    name        text primary key
        -- why: dotted snake_case keeps names greppable and safe in every channel's text
        check (name ~ '^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$' and length(name) <= 100),
    category    text not null check (category in ('trading', 'risk', 'system', 'custom')),
    unit        text not null default '',
    description text not null
);
comment on table monitor.metric_catalog is
    'Every metric name: those monitor.collect_metrics records and the custom ones monitor.record_metric registered. Alert rules may only name these.';
comment on column monitor.metric_catalog.name is 'Dotted snake_case name, e.g. db.cache_hit_ratio.';
comment on column monitor.metric_catalog.category is 'trading, risk or system (collected), or custom (recorded by an application); the alert rule kind that may use it.';
comment on column monitor.metric_catalog.unit is 'Unit of the values: count, bytes, seconds, ratio, quote (quote-asset units), base (base-asset units).';
comment on column monitor.metric_catalog.description is 'What a value means, with its labels.';

insert into monitor.metric_catalog (name, category, unit, description) values
    ('orders.by_status',     'trading', 'count',   'Orders placed in the last 24 hours, label status.'),
    ('orders.working',       'trading', 'count',   'Orders working now (new, open, partially filled), label strategy.'),
    ('positions.open',       'trading', 'count',   'Positions with a non-zero quantity, label strategy.'),
    ('trades.count',         'trading', 'count',   'Fills in the current UTC hour or day, labels period (hour, day).'),
    ('trades.volume',        'trading', 'base',    'Filled quantity in units of the base asset (contracts x multiplier) in the current UTC hour or day, labels period and base_asset.'),
    ('trades.notional',      'trading', 'quote',   'Filled quantity x price x multiplier in the current UTC hour or day, labels period and quote_asset.'),
    ('exposure.gross',       'risk',    'quote',   'Sum of |quantity| x mark x multiplier of positions, labels strategy and quote_asset.'),
    ('exposure.net',         'risk',    'quote',   'Sum of signed quantity x mark x multiplier of positions, labels strategy and quote_asset.'),
    ('pnl.realized',         'risk',    'quote',   'Realized PnL (net of fees, with funding) of all positions, labels strategy and quote_asset.'),
    ('pnl.realized_today',   'risk',    'quote',   'Realized PnL of the current UTC day, labels strategy and quote_asset.'),
    ('pnl.unrealized',       'risk',    'quote',   'Unrealized PnL of open positions at the mark price, labels strategy and quote_asset.'),
    ('risk.events',          'risk',    'count',   'Risk events (pre-trade rejections, kill switch changes) in the last hour.'),
    ('db.size_bytes',        'system',  'bytes',   'Size of the database.'),
    ('db.connections',       'system',  'count',   'Client sessions connected to the database, label state (autovacuum and other background workers left out).'),
    ('db.commits',           'system',  'count',   'Transactions committed since the statistics were reset (a counter: a crash, a restore or pg_stat_reset() starts it again from 0); aggregate increase counts those of a window.'),
    ('db.rollbacks',         'system',  'count',   'Transactions rolled back since the statistics were reset (a counter: a crash, a restore or pg_stat_reset() starts it again from 0); aggregate increase counts those of a window.'),
    ('db.cache_hit_ratio',   'system',  'ratio',   'Share of block reads served from shared buffers since the statistics were reset.'),
    ('db.slow_queries',      'system',  'count',   'Statements in pg_stat_statements whose mean time is 1 s or more.'),
    ('db.oldest_xact_age',   'system',  'seconds', 'Age of the oldest open client transaction in the database (as health''s long_transactions: autovacuum''s and other background workers'' are left out).'),
    ('alerts.open',          'system',  'count',   'Alerts firing or acknowledged, label severity.'),
    ('notifications.pending', 'system', 'count',   'Notifications waiting for delivery.'),
    ('notifications.dead',   'system',  'count',   'Notifications in the dead letter (every attempt failed).'),
    ('db.connections_used_ratio', 'system', 'ratio', 'Client sessions of the whole server as a share of max_connections (every other role is refused at max_connections - superuser_reserved_connections: 0.97 of 100 by default).'),
    ('db.sessions_hidden',   'system',  'count',   'Sessions of the database whose state, transaction and wait the collecting role may not see (neither a superuser nor a member of pg_read_all_stats); while above 0, db.connections, db.oldest_xact_age and replication.sync_commits_waiting leave them out.'),
    ('db.lock_waits',        'system',  'count',   'Sessions of the database waiting for a lock now (pg_locks, as health''s blocking_sessions reads them).'),
    ('db.lock_wait_max_seconds', 'system', 'seconds', 'How long the longest lock wait of the database has lasted (0 when none waits); health''s blocking_sessions fails beyond 10 s.'),
    ('replication.slot_wal_retained_bytes', 'system', 'bytes', 'The most WAL any replication slot holds back (current WAL position - restart_lsn; 0 with no slot), as health''s replication_slots measures it.'),
    ('replication.slots_lost', 'system', 'count',  'Replication slots whose WAL is lost or about to be (wal_status lost or unreserved): their consumer can no longer catch up.'),
    ('replication.sync_commits_waiting', 'system', 'count', 'Commits waiting for a synchronous standby now (wait event SyncRep): committed here, not confirmed, their locks held.'),
    ('cron.jobs_failing',    'system',  'count',   'Active pg_cron jobs of the database whose latest run failed (a run started before the last migrate, one the server''s restart interrupted, or one whose session its shutdown closed, not judged) or that connect to another server, as health''s cron_jobs judges them; not recorded when the collecting role may not read pg_cron''s schema.'),
    ('backup.last_success_age_seconds', 'system', 'seconds', 'Time since the newest successful physical backup that pgBackRest still holds finished (ops.backup_runs); with none, since the first migrate finished.'),
    ('partitions.min_ahead', 'system',  'count',   'The fewest partitions ahead of any pg_partman table: partitions starting from now on with no gap before them (health''s partitions_ahead fails at 0).'),
    ('partitions.default_rows', 'system', 'count', 'Rows in the default partitions of the pg_partman tables (health''s default_partitions_empty fails above 0).'),
    ('wal.archive_failing',  'system',  'count',   '1 while WAL archiving fails (the archiver''s last attempt failed, or archive_mode is on with archive_command and archive_library empty), else 0; 0 when the server does not archive (archive_mode off, a standby without always), as health''s wal_archiving judges it.'),
    ('wal.archive_waiting_files', 'system', 'count', 'WAL files waiting in pg_wal to be archived (their .ready file in archive_status; 0 when the server does not archive); not recorded when the collecting role may not list them (superusers and members of pg_monitor may).'),
    ('wal.archive_waiting_seconds', 'system', 'seconds', 'How long the oldest WAL file waiting to be archived has waited (0 when none waits or the server does not archive; health''s wal_archiving fails beyond 10 minutes); not recorded when the collecting role may not list them.');

create table monitor.metrics (
    recorded_at timestamptz not null,
    name        text not null references monitor.metric_catalog,
    labels      jsonb not null default '{}' check (jsonb_typeof(labels) = 'object'),
    value       numeric not null check (value > '-Infinity' and value < 'Infinity')
) partition by range (recorded_at);
comment on table monitor.metrics is
    'Metric values over time, partitioned by UTC day of recorded_at. Write with monitor.record_metric or monitor.collect_metrics.';
comment on column monitor.metrics.recorded_at is 'When the value was measured; the partition key.';
comment on column monitor.metrics.name is 'The metric (monitor.metric_catalog).';
comment on column monitor.metrics.labels is 'Which series of the metric: a JSON object, e.g. {"strategy": "btc-arb"}.';
comment on column monitor.metrics.value is 'The measured value (finite).';
-- why: alert rules and `spreadedge metrics show` read one metric over a recent window
create index metrics_name_recorded_idx on monitor.metrics (name, recorded_at);

-- ============================================================================
-- Alert rules, alerts and their transitions
-- ============================================================================
create table monitor.alert_rules (
    rule_id           integer generated always as identity primary key,
    name              text not null unique check (name ~ '^[a-z0-9][a-z0-9_.-]*$' and length(name) <= 100),
    kind              monitor.alert_kind not null,
    metric            text references monitor.metric_catalog,
    labels            jsonb not null default '{}' check (jsonb_typeof(labels) = 'object'),
    instrument_id     integer references ref.instruments,
    aggregate         text not null check (aggregate in ('last', 'avg', 'min', 'max', 'sum', 'count', 'change_pct', 'increase')),
    operator          text not null check (operator in ('>', '>=', '<', '<=', '=', '<>')),
    threshold         numeric not null check (threshold > '-Infinity' and threshold < 'Infinity'),
    evaluation_window interval not null check (evaluation_window > '0' and evaluation_window <= '31 days'),
    severity          monitor.alert_severity not null default 'warning',
    cooldown          interval not null default '15 minutes' check (cooldown >= '0'),
    channels          monitor.notification_channel[] not null default '{}',
    description       text,
    is_enabled        boolean not null default true,
    last_notified_at  timestamptz,
    created_at        timestamptz not null default now(),
    -- why: price and volume rules watch an instrument's market data, the others a metric
    check ((kind in ('price', 'volume')) = (instrument_id is not null)),
    check ((kind in ('price', 'volume')) = (metric is null))
);
comment on table monitor.alert_rules is
    'Alert rules: aggregate(metric or market data over the window) operator threshold. Add with monitor.add_alert_rule; evaluated by monitor.evaluate_alert_rules.';
comment on column monitor.alert_rules.rule_id is 'Surrogate key.';
comment on column monitor.alert_rules.name is 'Unique name, e.g. btc-binance-above-70k.';
comment on column monitor.alert_rules.kind is 'price, volume (an instrument''s market data), risk, system or trading (a metric of that category, or a custom one).';
comment on column monitor.alert_rules.metric is 'The metric watched (risk, system and trading rules).';
comment on column monitor.alert_rules.labels is 'Metric rules only: only metric values whose labels contain these (jsonb @>), e.g. {"strategy": "btc-arb", "quote_asset": "USDT"}; on a collected metric only the labels its series carry, quote_asset on an amount and base_asset on trades.volume.';
comment on column monitor.alert_rules.instrument_id is 'The instrument watched (price and volume rules).';
comment on column monitor.alert_rules.aggregate is
    'How the window''s values become one: last, avg, min, max, sum, count, change_pct (last vs first, in percent), increase (metric rules: how much a counter rose, the sum of each series'' rises from its value before the window (at most one more window back) through its values in it, a fall counted as a restart from 0). Price last = the newest price in the window (quote mid or tick, the newer). Over several matching series, last and change_pct take the total of each series'' latest (and first) values, increase the total of each series'' rises.';
comment on column monitor.alert_rules.operator is 'Comparison of the aggregate with the threshold: >, >=, <, <=, =, <>.';
comment on column monitor.alert_rules.threshold is 'The value the aggregate is compared with.';
comment on column monitor.alert_rules.evaluation_window is 'How far back from the evaluation time the values are taken.';
comment on column monitor.alert_rules.severity is 'info, warning or critical.';
comment on column monitor.alert_rules.cooldown is 'After a notified firing, a new firing of the rule within this time opens an alert without notifying; notified once the cooldown is over if still firing and unacknowledged.';
comment on column monitor.alert_rules.channels is 'Where transitions are notified (empty: recorded only).';
comment on column monitor.alert_rules.description is 'What the rule is for.';
comment on column monitor.alert_rules.is_enabled is 'False: the rule is not evaluated.';
comment on column monitor.alert_rules.last_notified_at is 'When a firing of this rule was last notified (the cooldown counts from it).';
comment on column monitor.alert_rules.created_at is 'When the rule was added.';

create table monitor.alerts (
    alert_id        bigint generated always as identity primary key,
    rule_id         integer not null references monitor.alert_rules,
    status          monitor.alert_status not null default 'firing',
    severity        monitor.alert_severity not null,
    opened_value    numeric not null,
    threshold       numeric not null,
    opened_at       timestamptz not null,
    notified        boolean not null,
    acknowledged_at timestamptz,
    acknowledged_by text,
    resolved_at     timestamptz,
    resolved_value  numeric,
    -- why: a resolved alert has its resolution time; an open one has none
    check ((status = 'resolved') = (resolved_at is not null)),
    check ((status = 'firing') = (acknowledged_at is null) or status = 'resolved')
);
comment on table monitor.alerts is 'Alerts: one per firing of a rule, from fired to resolved. Read monitor.alert_list.';
comment on column monitor.alerts.alert_id is 'Surrogate key; monitor.acknowledge_alert takes it.';
comment on column monitor.alerts.rule_id is 'The rule that fired.';
comment on column monitor.alerts.status is 'firing, acknowledged or resolved.';
comment on column monitor.alerts.severity is 'The rule''s severity when it fired.';
comment on column monitor.alerts.opened_value is 'The rule''s aggregate when it fired.';
comment on column monitor.alerts.threshold is 'The rule''s threshold when it fired.';
comment on column monitor.alerts.opened_at is 'When the rule fired (the evaluation time).';
comment on column monitor.alerts.notified is 'Whether the firing was notified (false inside the cooldown, until it is over, or without channels); a resolution is notified when the firing was.';
comment on column monitor.alerts.acknowledged_at is 'When a person acknowledged the alert.';
comment on column monitor.alerts.acknowledged_by is 'Who acknowledged the alert.';
comment on column monitor.alerts.resolved_at is 'When the condition was found cleared, or the rule was disabled.';
comment on column monitor.alerts.resolved_value is 'The rule''s aggregate when the alert resolved (null: resolved by disabling the rule).';
-- why: a rule has at most one open alert; evaluation finds it through this index
create unique index alerts_one_open_per_rule_idx on monitor.alerts (rule_id) where status <> 'resolved';
create index alerts_opened_idx on monitor.alerts (opened_at);
-- why: monitor.evaluate_alert_rules opens no alert of a rule whose previous alert resolved after
-- the time it evaluates at, and finds those alerts through this index (the table keeps every alert)
create index alerts_resolved_idx on monitor.alerts (resolved_at);

create table monitor.alert_events (
    event_id    bigint generated always as identity primary key,
    alert_id    bigint not null references monitor.alerts,
    rule_id     integer not null references monitor.alert_rules,
    transition  monitor.alert_transition not null,
    value       numeric,
    notified    boolean not null,
    actor       text,
    occurred_at timestamptz not null
);
comment on table monitor.alert_events is 'Every transition of every alert: fired, acknowledged, resolved.';
comment on column monitor.alert_events.event_id is 'Surrogate key, increasing in write order.';
comment on column monitor.alert_events.alert_id is 'The alert.';
comment on column monitor.alert_events.rule_id is 'The alert''s rule.';
comment on column monitor.alert_events.transition is 'fired, acknowledged or resolved.';
comment on column monitor.alert_events.value is 'The rule''s aggregate at the transition (null for an acknowledgement).';
comment on column monitor.alert_events.notified is 'Whether notifications were queued for this transition.';
comment on column monitor.alert_events.actor is 'Who acknowledged, or who disabled the rule (a resolution by disabling); null otherwise.';
comment on column monitor.alert_events.occurred_at is 'When the transition happened.';
create index alert_events_alert_idx on monitor.alert_events (alert_id);

-- ============================================================================
-- Pre-trade risk limits and risk events
-- ============================================================================
create table monitor.risk_limits (
    limit_id              integer generated always as identity primary key,
    strategy_id           integer not null references trading.strategies,
    exchange_id           smallint references ref.exchanges,
    instrument_id         integer references ref.instruments,
    max_order_notional    numeric check (max_order_notional > 0 and max_order_notional < 'Infinity'),
    max_position_notional numeric check (max_position_notional > 0 and max_position_notional < 'Infinity'),
    max_open_orders       integer check (max_open_orders > 0),
    max_daily_loss        numeric check (max_daily_loss > 0 and max_daily_loss < 'Infinity'),
    kill_switch           boolean not null default false,
    channels              monitor.notification_channel[] not null default '{email}',
    updated_at            timestamptz not null default now(),
    updated_by            text,
    limit_asset           text check (limit_asset ~ '^[A-Z0-9]{1,32}$'),
    -- why: an instrument belongs to one exchange, so an instrument scope names its exchange too
    check (instrument_id is null or exchange_id is not null),
    -- why: one row per scope; the index also finds a strategy's limits on every placement
    unique nulls not distinct (strategy_id, exchange_id, instrument_id)
);
comment on table monitor.risk_limits is
    'Pre-trade limits per strategy, optionally narrowed to an exchange or an instrument; trading.place_order rejects an order that breaks any limit whose scope it falls in. Set with monitor.set_risk_limit.';
comment on column monitor.risk_limits.limit_id is 'Surrogate key.';
comment on column monitor.risk_limits.strategy_id is 'The strategy limited.';
comment on column monitor.risk_limits.exchange_id is 'Only orders on this exchange (null: every exchange).';
comment on column monitor.risk_limits.instrument_id is 'Only orders of this instrument (null: every instrument).';
comment on column monitor.risk_limits.max_order_notional is 'Largest quantity x price x multiplier of one order, in limit_asset (market orders at the mark price).';
comment on column monitor.risk_limits.max_position_notional is 'Largest sum over the scope''s positions of |quantity after the order| x price x multiplier, in limit_asset; an order that only reduces its position is not held to it.';
comment on column monitor.risk_limits.max_open_orders is 'Most orders working at once in the scope, the new one included.';
comment on column monitor.risk_limits.max_daily_loss is 'Largest realized loss (net of fees, with funding) of the current UTC day in the scope, in limit_asset, fills stamped on a later day (ahead of the server''s clock) included; once the loss reaches it new orders are rejected, except those that only reduce a position.';
comment on column monitor.risk_limits.kill_switch is 'True: every new order in the scope is rejected.';
comment on column monitor.risk_limits.channels is 'Where breaches and kill switch changes are notified.';
comment on column monitor.risk_limits.updated_at is 'When the limits last changed.';
comment on column monitor.risk_limits.updated_by is 'Who changed them last (spreadedge.actor).';
comment on column monitor.risk_limits.limit_asset is
    'The asset max_order_notional, max_position_notional and max_daily_loss are in: every amount is converted to it at the market price the strategy''s owner sees, and an amount that cannot be converted breaks the limit. Null: each instrument''s quote asset, and only amounts in the quote asset of the order''s instrument are added up.';

create table monitor.risk_events (
    risk_event_id  bigint generated always as identity primary key,
    occurred_at    timestamptz not null default now(),
    strategy_id    integer not null references trading.strategies,
    instrument_id  integer references ref.instruments,
    order_id       bigint references trading.order_keys,
    limit_id       integer references monitor.risk_limits,
    limit_kind     monitor.risk_limit_kind not null,
    limit_value    numeric,
    observed_value numeric,
    reason         text not null
);
comment on table monitor.risk_events is
    'Pre-trade rejections (one per rejected order or refused amendment), kill switch changes and fills the exchange made (liquidation, ADL, delisting). Read monitor.risk_event_list.';
comment on column monitor.risk_events.risk_event_id is 'Surrogate key.';
comment on column monitor.risk_events.occurred_at is 'When it happened.';
comment on column monitor.risk_events.strategy_id is 'The strategy.';
comment on column monitor.risk_events.instrument_id is 'The instrument of the rejected order or refused amendment.';
comment on column monitor.risk_events.order_id is
    'The order stored as rejected, the working order whose amendment was refused (trading.amend_order), or the exchange-initiated order (null for a kill switch change).';
comment on column monitor.risk_events.limit_id is 'The limit that was broken or changed (null for an exchange fill).';
comment on column monitor.risk_events.limit_kind is
    'Which check: kill_switch, max_order_notional, max_position_notional, max_open_orders, max_daily_loss; or exchange_fill.';
comment on column monitor.risk_events.limit_value is 'The limit (null for the kill switch).';
comment on column monitor.risk_events.observed_value is
    'What the order would have made it (null for the kill switch); for an exchange fill, the fill''s realized PnL net of its fee.';
comment on column monitor.risk_events.reason is 'The reason, as stored on the rejected order or returned by trading.amend_order for a refused amendment; for an exchange fill, what the exchange did.';
create index risk_events_strategy_idx on monitor.risk_events (strategy_id, occurred_at);
create index risk_events_occurred_idx on monitor.risk_events (occurred_at);
-- why: cleanup orders deletes order keys, and each delete checks this foreign key
create index risk_events_order_idx on monitor.risk_events (order_id) where order_id is not null;

-- ============================================================================
-- Notification outbox
-- ============================================================================
create table monitor.notifications (
    notification_id bigint generated always as identity primary key,
    channel         monitor.notification_channel not null,
    status          monitor.notification_status not null default 'pending',
    subject         text not null,
    payload         jsonb not null,
    alert_event_id  bigint references monitor.alert_events,
    risk_event_id   bigint references monitor.risk_events,
    attempts        integer not null default 0 check (attempts >= 0),
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    claimed_by      text,
    created_at      timestamptz not null default now(),
    delivered_at    timestamptz,
    dead_at         timestamptz,
    delivered_to    text[] not null default '{}',
    undeliverable_to text[] not null default '{}',
    -- why random rather than the notification_id: two databases number their notifications alike,
    -- and a receiver of both (one mail server, one webhook endpoint) would take one for the other
    delivery_id     uuid not null default gen_random_uuid(),
    waiting_since   timestamptz not null default now(),
    -- why: every notification comes from exactly one alert transition or one risk event
    check (num_nonnulls(alert_event_id, risk_event_id) = 1),
    check ((status = 'delivered') = (delivered_at is not null)),
    check ((status = 'dead') = (dead_at is not null))
);
comment on table monitor.notifications is
    'The outbox: one row per message and channel, queued by alert transitions and risk events, delivered by `spreadedge notify worker`.';
comment on column monitor.notifications.notification_id is 'Surrogate key (the same numbers in every database: receivers deduplicate by delivery_id).';
comment on column monitor.notifications.channel is 'email, slack, discord or webhook.';
comment on column monitor.notifications.status is 'pending, delivering (claimed inside a worker''s transaction; committed, a claim never reported, taken again once its lease has passed), delivered or dead.';
comment on column monitor.notifications.subject is 'One-line summary (the email subject, the chat message''s first line).';
comment on column monitor.notifications.payload is 'The message as JSON (the generic webhook''s body).';
comment on column monitor.notifications.alert_event_id is 'The alert transition notified.';
comment on column monitor.notifications.risk_event_id is 'The risk event notified.';
comment on column monitor.notifications.attempts is 'Delivery attempts so far.';
comment on column monitor.notifications.next_attempt_at is 'When it may next be tried: exponential backoff after a failure, no sooner than a receiver''s Retry-After, at most the worker''s max_backoff; while delivering, when the claim''s 5-minute lease ends (then, unlocked, it is abandoned and claimed again). Due at once, too, while the server''s clock reads more than a minute earlier than waiting_since.';
comment on column monitor.notifications.last_error is 'Why the last attempt failed (never a secret).';
comment on column monitor.notifications.claimed_by is 'The worker that made the last attempt.';
comment on column monitor.notifications.created_at is 'When it was queued.';
comment on column monitor.notifications.delivered_at is 'When it was delivered.';
comment on column monitor.notifications.dead_at is 'When it went to the dead letter.';
comment on column monitor.notifications.delivered_to is 'Email: the recipients (addresses) the SMTP server took the message for; no later attempt is sent to them.';
comment on column monitor.notifications.undeliverable_to is 'Email: the recipients the SMTP server refused for good (5xx); not tried again until a requeue empties it (the message is delivered once someone has it and no one else is owed it; dead when no one has it).';
comment on column monitor.notifications.delivery_id is 'The message''s name to receivers, random and the same at every attempt: the email''s Message-ID <notification-ID.delivery_id@sender domain>, the webhook''s delivery_id (signed body) and X-Spreadedge-Delivery-Id header. A receiver that got an attempt whose answer was lost knows the retry by it.';
comment on column monitor.notifications.waiting_since is 'When next_attempt_at was set (queued, claimed, failed, requeued), on the server''s clock. A clock that reads more than a minute earlier has stepped back since, and the row is due at once: its wait, counted from a time the clock has not reached again, would last the whole step more.';
-- why partial: workers look only for pending rows that are due and for claims whose lease has
-- passed, a small part of the table
create index notifications_due_idx on monitor.notifications (next_attempt_at)
    where status in ('pending', 'delivering');
-- why an index of its own: the claim and next_notification_due look for waits that began later
-- than the clock reads with one probe of it, which finds nothing while the clock runs forward
create index notifications_waiting_idx on monitor.notifications (waiting_since)
    where status in ('pending', 'delivering');
comment on index monitor.notifications_waiting_idx is
    'Pending and delivering notifications by when their wait began: the claim''s and next_notification_due''s probe for waits that began later than the clock reads (it stepped back).';
create index notifications_alert_event_idx on monitor.notifications (alert_event_id);
create index notifications_risk_event_idx on monitor.notifications (risk_event_id);
-- why: collect_metrics counts the pending and dead notifications every minute, and the hourly row
-- retention looks for those that ended before its cutoff; both read a status range of this index
-- instead of the whole outbox (migration 0059)
create index notifications_status_ended_idx on monitor.notifications (status, (coalesce(delivered_at, dead_at)));
comment on index monitor.notifications_status_ended_idx is
    'Notifications by status and when they ended (delivered or dead): the outbox counts of monitor.collect_metrics and the row retention''s search for ended ones.';
