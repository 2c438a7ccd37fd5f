-- spreadedge functions: metrics
-- monitor.record_metric (one value, from an application or a person) and monitor.collect_metrics
-- (every metric of monitor.metric_catalog that the database can measure about itself; pg_cron runs
-- it every minute, see schema/72_monitor_schedules.sql).

create or replace function internal.check_strategy_label(p_labels jsonb)
    returns void
    stable
    language plpgsql
as $$
-- In a session scoped to a user, a "strategy" label (of a metric value or an alert rule) must name
-- a strategy the session sees: 23S03 unknown_strategy otherwise, as for a missing one. Unscoped
-- sessions (the collector, the engine) may label any.
-- why: the monitor views show a series or a rule to the users whose strategy its label names; a
-- user with alerts:manage recorded values labelled with another trader's strategy, which that
-- trader then saw among their own series, and added rules on them that the trader saw (with their
-- alerts and notifications) and that their author could then neither see nor switch off
begin
    if p_labels ? 'strategy' and internal.session_user_id() is not null then
        perform internal.find_strategy(p_labels ->> 'strategy');
    end if;
end;
$$;
comment on function internal.check_strategy_label(jsonb) is
    'In a session scoped to a user, raises 23S03 unknown_strategy for a "strategy" label that names no strategy the session sees.';

create or replace function monitor.record_metric(
    name        text,
    value       numeric,
    labels      jsonb default '{}',
    recorded_at timestamptz default now()
)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Record one value of a metric (finite, below 10^100000 in magnitude: 22S14). A name the catalog
-- does not know yet is registered as a custom metric, which risk, system and trading alert rules
-- may then watch. A session scoped to a user needs alerts:manage (42S01) and records only custom
-- metrics: the trading, risk and system metrics are monitor.collect_metrics' (22S14), since a
-- value written there would make a risk or alert rule fire or stay quiet, and labels them with
-- its own strategies only (a "strategy" label of another user's strategy is 23S03). Unscoped
-- sessions (the collector, the engine) may write any.
#variable_conflict use_column
declare
    v_category text;
begin
    perform internal.require_permission('alerts:manage');
    if record_metric.name is null or record_metric.name !~ E'^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)+$'
       or length(record_metric.name) > 100 then
        raise exception 'metric name must be dotted snake_case (e.g. app.orders_sent), got "%"',
            coalesce(record_metric.name, 'null')
            using errcode = '22S14';
    end if;
    if internal.session_user_id() is not null then
        select c.category into v_category from monitor.metric_catalog c where c.name = record_metric.name;
        if v_category <> 'custom' then
            raise exception 'metric % is a % metric that monitor.collect_metrics records: a session scoped to a user records only custom metrics',
                record_metric.name, v_category
                using errcode = '22S14',
                      hint = 'Record the value under a name of your own (e.g. app.my_value): an unknown name becomes a custom metric.';
        end if;
    end if;
    if record_metric.value is null or not (record_metric.value > '-Infinity' and record_metric.value < 'Infinity') then
        raise exception 'value of metric % must be a finite number, got %', record_metric.name,
            coalesce(record_metric.value::text, 'null')
            using errcode = '22S14';
    end if;
    -- why a bound: numeric ends at 10^131072, and a value near it (9e131071 is finite) made the
    -- sum of two such values in a rule's window overflow: every evaluation failed with a bare
    -- 22003, for every rule. Below 10^100000, a window's sum or average of up to 10^30000 values
    -- and change_pct's division by the smallest total (10^-16383) stay within numeric's range
    if abs(record_metric.value) >= 1e100000 then
        raise exception 'value of metric % must be below 10^100000 in magnitude, got %', record_metric.name,
            btrim(to_char(record_metric.value, '9.999EEEE'))
            using errcode = '22S14';
    end if;
    if record_metric.labels is null or jsonb_typeof(record_metric.labels) <> 'object' then
        raise exception 'labels of metric % must be a JSON object, got %', record_metric.name,
            coalesce(record_metric.labels::text, 'null')
            using errcode = '22S14';
    end if;
    perform internal.check_strategy_label(record_metric.labels);
    perform internal.check_time(record_metric.recorded_at, 'recorded_at');
    insert into monitor.metric_catalog (name, category, description)
    values (record_metric.name, 'custom', 'Recorded with monitor.record_metric.')
    on conflict (name) do nothing;
    insert into monitor.metrics (recorded_at, name, labels, value)
    values (record_metric.recorded_at, record_metric.name, record_metric.labels, record_metric.value);
end;
$$;
comment on function monitor.record_metric(text, numeric, jsonb, timestamptz) is
    'Record one metric value (finite and below 10^100000 in magnitude, else 22S14; labels a JSON object); an unknown name is registered as a custom metric. A session scoped to a user needs alerts:manage (42S01), may record only custom metrics (22S14) and label them only with its own strategies (23S03).';

create or replace function internal.trading_metrics(p_at timestamptz)
    returns table (name text, labels jsonb, value numeric)
    stable
    language sql
as $$
    -- Orders, positions, trades, exposure and PnL at p_at: cheap reads only (the partial index of
    -- working orders, each strategy's last 24 hours of orders, the positions and the hourly and daily rollups).
    -- why a zero for every status and every strategy: a series that is not recorded keeps its last
    -- value, so an alert rule watching it (or a total of series) would go on seeing the working
    -- orders of a strategy that has none left, or yesterday's loss, and never resolve
    -- why strategy by strategy: orders has no index that leads with created_at, and a count by
    -- time alone read the whole month's partition every minute (31 days of orders at its end) to
    -- count one day's; each strategy's 24 hours are a range of orders_strategy_created_idx
    -- (the aggregate inside the lateral keeps the planner from turning it back into a scan)
    select 'orders.by_status', jsonb_build_object('status', v.status), coalesce(sum(c.orders), 0)::numeric
    from unnest(enum_range(null::trading.order_status)) v(status)
    left join (select c.status, c.orders
               from trading.strategies s
               cross join lateral (select o.status, count(*) as orders
                                   from trading.orders o
                                   where o.strategy_id = s.strategy_id
                                     and o.created_at > p_at - interval '24 hours' and o.created_at <= p_at
                                   group by o.status) c) c
           on c.status = v.status
    group by v.status
    union all
    select 'orders.working', jsonb_build_object('strategy', s.name), count(o.order_id)::numeric
    from trading.strategies s
    left join trading.orders o
           on o.strategy_id = s.strategy_id and o.status in ('new', 'open', 'partially_filled')
    group by s.name
    union all
    select 'positions.open', jsonb_build_object('strategy', s.name), count(*) filter (where p.quantity <> 0)::numeric
    from trading.positions p
    join trading.strategies s on s.strategy_id = p.strategy_id
    group by s.name
    union all
    -- why a series per quote asset (quote_asset label, trading.positions.quote_asset): the exposure
    -- and PnL of an ETH/BTC position are BTC, and were added to a BTC/USDT one's USDT at par
    select m.name, jsonb_build_object('strategy', p.strategy, 'quote_asset', p.quote_asset), m.value
    from (select s.name as strategy, p.quote_asset,
                 sum(abs(p.quantity) * i.multiplier * mk.mark) as gross,
                 sum(p.quantity * i.multiplier * mk.mark) as net,
                 sum(p.realized_pnl) as realized,
                 sum(case when p.quantity = 0 then 0
                          else p.quantity * i.multiplier * (mk.mark - p.avg_entry_price)
                     end) as unrealized,
                 coalesce(sum(d.realized_pnl), 0) as realized_today
          from trading.positions p
          join trading.strategies s on s.strategy_id = p.strategy_id
          join ref.instruments i on i.instrument_id = p.instrument_id
          -- why the owner's mark: these series are labelled with the strategy and shown to its
          -- owner; marked at any strategy's latest fill, they handed the owner another trader's
          -- private fill price (internal.owner_mark_price)
          cross join lateral (select internal.owner_mark_price(p.instrument_id, s.owner_user_id) as mark) mk
          -- a position's row stays when it is flat, so today's series of a quote asset the
          -- strategy traded reads 0 on a day without fills rather than keep yesterday's loss
          left join trading.daily_pnl d
                 on d.strategy_id = p.strategy_id and d.instrument_id = p.instrument_id
                and d.day = (p_at at time zone 'UTC')::date
          group by s.name, p.quote_asset) p
    cross join lateral (values ('exposure.gross', coalesce(round(p.gross, 12), 0)),
                               ('exposure.net', coalesce(round(p.net, 12), 0)),
                               ('pnl.realized', p.realized),
                               ('pnl.realized_today', p.realized_today),
                               ('pnl.unrealized', coalesce(round(p.unrealized, 12), 0))) m(name, value)
    union all
    select 'trades.count', jsonb_build_object('period', r.period), coalesce(r.trades, 0)::numeric
    from (select 'hour' as period, sum(h.trades) as trades
          from trading.hourly_pnl h
          where h.hour = date_trunc('hour', p_at, 'UTC')
          union all
          select 'day', sum(d.trades)
          from trading.daily_pnl d
          where d.day = (p_at at time zone 'UTC')::date) r
    union all
    -- volume per base asset, in its units (contracts x multiplier), 0 for every base asset a
    -- position was ever opened in
    -- why per base asset: one series per period added the BTC of BTC/USDT, the ETH of ETH/USDT
    -- and the contracts of a 0.01 BTC perpetual into one number (migration 0037)
    -- why each fill's own multiplier (trading.trades.multiplier) for an instrument changed lately:
    -- the rollups keep contracts, and contracts x the current multiplier counted 10 contracts of
    -- 0.01 BTC filled before a change to 0.1 as 1 BTC instead of 0.1. An instrument whose rules
    -- last changed (updated_at) at least 24 hours before the period began had every fill of the
    -- period at its current multiplier (a fill is dated at most 24 hours after it is recorded,
    -- internal.check_time), so only the rows of an instrument changed since then read their
    -- trades (the (strategy, instrument, executed_at) index; a multiplier change is rare)
    select 'trades.volume', jsonb_build_object('period', v.period, 'base_asset', b.base_asset),
           coalesce(sum(r.volume), 0)
    from (values ('hour'), ('day')) v(period)
    cross join (select distinct i.base_asset
                from trading.positions p
                join ref.instruments i on i.instrument_id = p.instrument_id) b
    left join (select 'hour' as period, i.base_asset,
                      case when i.updated_at > pr.start - interval '24 hours'
                           then (select coalesce(sum(t.quantity * t.multiplier), 0)
                                 from trading.trades t
                                 where t.strategy_id = h.strategy_id and t.instrument_id = h.instrument_id
                                   and t.executed_at >= pr.start and t.executed_at < pr.start + interval '1 hour')
                           else h.volume * i.multiplier end as volume
               from (select date_trunc('hour', p_at, 'UTC') as start) pr
               join trading.hourly_pnl h on h.hour = pr.start
               join ref.instruments i on i.instrument_id = h.instrument_id
               union all
               -- why 24 hours, not '1 day': a UTC day is 24 hours, and '1 day' added in the
               -- session's TimeZone is 23 or 25 on the day of a clock change
               select 'day', i.base_asset,
                      case when i.updated_at > pr.start - interval '24 hours'
                           then (select coalesce(sum(t.quantity * t.multiplier), 0)
                                 from trading.trades t
                                 where t.strategy_id = d.strategy_id and t.instrument_id = d.instrument_id
                                   and t.executed_at >= pr.start and t.executed_at < pr.start + interval '24 hours')
                           else d.volume * i.multiplier end
               from (select (p_at at time zone 'UTC')::date as day,
                            ((p_at at time zone 'UTC')::date)::timestamp at time zone 'UTC' as start) pr
               join trading.daily_pnl d on d.day = pr.day
               join ref.instruments i on i.instrument_id = d.instrument_id) r
           on r.period = v.period and r.base_asset = b.base_asset
    group by v.period, b.base_asset
    union all
    -- notional per quote asset (see the positions' series), 0 for every quote asset traded
    select 'trades.notional', jsonb_build_object('period', v.period, 'quote_asset', q.quote_asset),
           coalesce(sum(r.notional), 0)
    from (values ('hour'), ('day')) v(period)
    cross join (select distinct i.quote_asset from ref.instruments i) q
    left join (select 'hour' as period, i.quote_asset, h.notional
               from trading.hourly_pnl h
               join ref.instruments i on i.instrument_id = h.instrument_id
               where h.hour = date_trunc('hour', p_at, 'UTC')
               union all
               select 'day', d.quote_asset, d.notional
               from trading.daily_pnl d
               where d.day = (p_at at time zone 'UTC')::date) r
           on r.period = v.period and r.quote_asset = q.quote_asset
    group by v.period, q.quote_asset
    union all
    select 'risk.events', '{}'::jsonb, count(*)::numeric
    from monitor.risk_events e
    where e.occurred_at > p_at - interval '1 hour' and e.occurred_at <= p_at
$$;
comment on function internal.trading_metrics(timestamptz) is
    'The trading and risk metrics of monitor.collect_metrics at a time: orders, positions, trades, exposure, PnL, risk events; amounts per quote asset (label quote_asset), volume per base asset (label base_asset, in its units, each fill at its own multiplier); orders by status and working orders have a value (0 when none) for every status and strategy, trade notional for every quote asset, volume for every base asset a position was opened in.';

create or replace function internal.collected_metric_label(p_metric text)
    returns table (label text, label_values text[])
    stable
    language sql
as $$
    -- The labels the series of a collected metric carry, one row each, with their values (null:
    -- a strategy name); no row for a metric collected without labels or a custom one. Amounts
    -- (unit quote in monitor.metric_catalog) carry quote_asset, whose values are the quote assets
    -- of ref.instruments; trades.volume carries base_asset, whose values are its base assets. Keep it in step with internal.trading_metrics and
    -- internal.system_metrics (a test compares them).
    -- why: monitor.add_alert_rule refuses labels that no collected series has, since such a
    -- rule (a typo in a strategy name, say) would never fire
    select v.label,
           case when v.label = 'quote_asset'
                then array(select distinct i.quote_asset from ref.instruments i order by 1)
                when v.label = 'base_asset'
                then array(select distinct i.base_asset from ref.instruments i order by 1)
                else v.label_values end
    from (values ('orders.by_status', 'status', enum_range(null::trading.order_status)::text[]),
                 ('orders.working', 'strategy', null),
                 ('positions.open', 'strategy', null),
                 ('exposure.gross', 'strategy', null),
                 ('exposure.gross', 'quote_asset', null),
                 ('exposure.net', 'strategy', null),
                 ('exposure.net', 'quote_asset', null),
                 ('pnl.realized', 'strategy', null),
                 ('pnl.realized', 'quote_asset', null),
                 ('pnl.realized_today', 'strategy', null),
                 ('pnl.realized_today', 'quote_asset', null),
                 ('pnl.unrealized', 'strategy', null),
                 ('pnl.unrealized', 'quote_asset', null),
                 ('trades.count', 'period', array['hour', 'day']),
                 ('trades.volume', 'period', array['hour', 'day']),
                 ('trades.volume', 'base_asset', null),
                 ('trades.notional', 'period', array['hour', 'day']),
                 ('trades.notional', 'quote_asset', null),
                 ('db.connections', 'state', array['active', 'idle', 'idle in transaction',
                                                   'idle in transaction (aborted)', 'fastpath function call',
                                                   'disabled', 'unknown']),
                 ('alerts.open', 'severity', enum_range(null::monitor.alert_severity)::text[]))
         v(metric, label, label_values)
    where v.metric = p_metric
$$;
comment on function internal.collected_metric_label(text) is
    'The label keys of a collected metric''s series, a row each, with their values (null: strategy names; quote_asset and base_asset: the instruments'' quote and base assets); no row for an unlabelled or custom metric.';

create or replace function internal.system_metrics()
    returns table (name text, labels jsonb, value numeric)
    stable
    language plpgsql
as $$
-- The database's own metrics now: size, connections, commits, rollbacks, cache hit ratio, slow
-- statements (when pg_stat_statements is loaded), oldest transaction, alerts and the outbox; and
-- the failures health checks for, each read by the function its health check reads, so that a
-- system alert rule pages someone for them: connections used of max_connections, lock waits
-- (internal.lock_waits), the WAL replication slots hold back and slots lost
-- (internal.replication_slot_wal), commits waiting for a synchronous standby
-- (internal.sync_rep_waiters), pg_cron jobs failing (internal.cron_job_latest_runs), the age of
-- the last backup (internal.last_backup), WAL archiving failing and the WAL waiting to be archived
-- (internal.wal_archiving_state), partitions ahead (internal.partition_coverage) and rows in
-- default partitions (internal.default_partition_rows).
-- Run as a superuser (pg_cron's jobs run as the superuser that migrated) or a member of
-- pg_read_all_stats to see every session: to another role, pg_stat_activity hides the state,
-- transaction and wait of other roles' sessions (counted by db.sessions_hidden), and those are
-- missing from db.connections, db.oldest_xact_age and replication.sync_commits_waiting; lock
-- waits read pg_locks, which every role sees whole. Without USAGE on the cron or partman schemas
-- (a role that is not a superuser) cron.jobs_failing or the partition metrics are not recorded,
-- rather than recorded as 0; nor are wal.archive_waiting_files and wal.archive_waiting_seconds for
-- a role that may not list the WAL waiting to be archived (superusers and pg_monitor may).
begin
    return query
    select 'db.size_bytes', '{}'::jsonb, pg_catalog.pg_database_size(pg_catalog.current_database())::numeric
    union all
    -- why every state, zero included: as for the trading metrics, a state no longer seen must
    -- read 0, not keep its last count (an alert on idle-in-transaction sessions must resolve)
    -- why client sessions only: an autovacuum worker is 'active' while it vacuums (for hours on a
    -- large table), so an alert on active connections fired on it, and pg_cron's launcher sits
    -- in the database it serves; sessions hidden from the role are db.sessions_hidden
    select 'db.connections', jsonb_build_object('state', v.state), count(a.pid)::numeric
    from (values ('active'), ('idle'), ('idle in transaction'), ('idle in transaction (aborted)'),
                 ('fastpath function call'), ('disabled'), ('unknown')) v(state)
    left join pg_catalog.pg_stat_activity a
           on coalesce(a.state, 'unknown') = v.state and a.datname = pg_catalog.current_database()
          and a.backend_type = 'client backend'
    group by v.state
    union all
    select m.name, '{}'::jsonb, m.value
    from pg_catalog.pg_stat_database d
    cross join lateral (values ('db.commits', d.xact_commit::numeric),
                               ('db.rollbacks', d.xact_rollback::numeric),
                               ('db.cache_hit_ratio',
                                round(d.blks_hit::numeric / nullif(d.blks_hit + d.blks_read, 0), 6))) m(name, value)
    where d.datname = pg_catalog.current_database() and m.value is not null
    union all
    -- why the clock, not now(): now() is when the collecting transaction began, and a
    -- transaction that began after it (pg_cron's run starts a moment before the statement reads
    -- the sessions) had a negative age: -0.3 s recorded as the oldest transaction's
    -- why not a transaction begun more than a minute later than the clock reads (it ran ahead
    -- then, and has stepped back since): its age is unknown, and read as negative it made the
    -- metric days below zero; health's long_transactions names it
    -- why client sessions only, as health's long_transactions: an autovacuum worker's transaction
    -- (vacuum holds back no other vacuum, and a large table's takes hours) made an alert on the
    -- metric fire where health was ok, and a parallel worker's is its leader's
    select 'db.oldest_xact_age', '{}'::jsonb,
           coalesce(round(extract(epoch from max(pg_catalog.clock_timestamp() - a.xact_start)), 3), 0)
    from pg_catalog.pg_stat_activity a
    where a.datname = pg_catalog.current_database() and a.xact_start is not null
      and a.xact_start <= pg_catalog.clock_timestamp() + interval '1 minute'
      and a.pid <> pg_catalog.pg_backend_pid() and a.backend_type = 'client backend'
    union all
    -- why every client session of the server, hidden ones included (a session whose backend_type
    -- is hidden from this role but that is connected to a database): max_connections counts the
    -- client sessions of every database, and at max_connections - superuser_reserved_connections
    -- every other role is refused (53300); background workers and WAL senders have slots of their own
    select 'db.connections_used_ratio', '{}'::jsonb,
           round(count(*)::numeric / pg_catalog.current_setting('max_connections')::integer, 6)
    from pg_catalog.pg_stat_activity a
    where a.backend_type = 'client backend' or (a.backend_type is null and a.datid is not null)
    union all
    -- why: to a role that is neither a superuser nor a member of pg_read_all_stats,
    -- pg_stat_activity hides the details of other roles' sessions (backend_type among them), and
    -- the metrics that read them undercount; a rule on this finds a collector that cannot see
    select 'db.sessions_hidden', '{}'::jsonb, count(*)::numeric
    from pg_catalog.pg_stat_activity a
    where a.datname = pg_catalog.current_database() and a.backend_type is null
    union all
    select m.name, '{}'::jsonb, m.value
    from (select count(*)::numeric as waiting,
                 coalesce(round(extract(epoch from max(w.waited)), 3), 0) as longest
          from internal.lock_waits() w) l
    cross join lateral (values ('db.lock_waits', l.waiting), ('db.lock_wait_max_seconds', l.longest)) m(name, value)
    union all
    select m.name, '{}'::jsonb, m.value
    from (select coalesce(max(r.retained), 0)::numeric as retained,
                 count(*) filter (where r.wal_status in ('lost', 'unreserved'))::numeric as lost
          from internal.replication_slot_wal() r) r
    cross join lateral (values ('replication.slot_wal_retained_bytes', r.retained),
                               ('replication.slots_lost', r.lost)) m(name, value)
    union all
    select 'replication.sync_commits_waiting', '{}'::jsonb, count(*)::numeric
    from internal.sync_rep_waiters()
    union all
    -- why the first migrate without a backup: a database never backed up is one to page about,
    -- and "how long without a backup it can be restored from" is the same quantity then
    select 'backup.last_success_age_seconds', '{}'::jsonb,
           round(extract(epoch from pg_catalog.clock_timestamp()
                                    - coalesce(b.finished_at, (select min(m.finished_at) from ops.migrate_runs m))), 3)
    from internal.last_backup() b
    union all
    -- why 0 when this server does not archive (archive_mode off, a standby with on): health's
    -- wal_archiving is ok then, and a series no longer recorded keeps its last value (a rule would
    -- go on firing after archive_mode was turned off); why the waiting files not recorded when the
    -- role may not list them (null): a 0 would say nothing waits. The files' times are whole
    -- seconds (pg_ls_archive_statusdir), so the age is at most a second more than the wait
    select m.name, '{}'::jsonb, m.value
    from internal.wal_archiving_state() w
    cross join lateral (values
        ('wal.archive_failing', case when w.failing or w.unset then 1 else 0 end::numeric),
        ('wal.archive_waiting_files', w.waiting::numeric),
        ('wal.archive_waiting_seconds',
         case when w.waiting is not null
              then coalesce(round(extract(epoch from pg_catalog.clock_timestamp() - w.oldest), 3), 0) end)) m(name, value)
    union all
    -- why null (not recorded) when the role may not read pg_cron's jobs: 0 would say none fails
    select 'cron.jobs_failing', '{}'::jsonb,
           case v.state
               when 'readable' then (select count(*) filter (where l.failed or l.elsewhere)
                                     from internal.cron_job_latest_runs() l)
               when 'forbidden' then null
               else 0 end::numeric
    from (select internal.cron_jobs_state() as state) v
    union all
    select 'alerts.open', jsonb_build_object('severity', v.severity), count(a.alert_id)::numeric
    from unnest(enum_range(null::monitor.alert_severity)) v(severity)
    left join monitor.alerts a on a.severity = v.severity and a.status <> 'resolved'
    group by v.severity
    union all
    -- why delivering rows among the pending: a claim a worker is sending is not committed, so this
    -- statement sees the row as pending; one committed without a report was abandoned and waits
    -- for its lease to pass (monitor.claim_notifications), still to be delivered
    -- why a count per status: the join on "status = v.status or ..." read the whole outbox every
    -- minute (30 days of delivered messages); a status range of notifications_status_ended_idx
    -- reads only the rows counted (migration 0059); the statuses
    -- are constants so that the planner sees from the statistics how few rows they are
    select 'notifications.pending', '{}'::jsonb,
           (select count(*) from monitor.notifications n where n.status in ('pending', 'delivering'))::numeric
    union all
    select 'notifications.dead', '{}'::jsonb,
           (select count(*) from monitor.notifications n where n.status = 'dead')::numeric;
    -- why the check: pg_partman's schema is the superuser's that created the extension, and a
    -- collector run by the database owner may not read it (the whole collection failed with 42501)
    if pg_catalog.has_schema_privilege('partman', 'usage')
       and pg_catalog.has_table_privilege('partman.part_config', 'select') then
        return query
        select 'partitions.min_ahead', '{}'::jsonb, min(c.ahead)::numeric
        from internal.partition_coverage() c
        union all
        select 'partitions.default_rows', '{}'::jsonb, coalesce(sum(d.row_count), 0)::numeric
        from internal.default_partition_rows() d;
    end if;
    -- why the check: pg_stat_statements can be queried only when the server preloads it, and its
    -- settings exist only then
    if exists (select from pg_catalog.pg_settings s where s.name = 'pg_stat_statements.max')
       and exists (select from pg_catalog.pg_extension e where e.extname = 'pg_stat_statements') then
        -- why distinct: with pg_stat_statements.track = all (the embedded cluster's) a statement
        -- run both at top level and inside a function has an entry for each, and one slow
        -- statement counted twice
        return query
        select 'db.slow_queries', '{}'::jsonb, count(distinct (s.userid, s.queryid))::numeric
        from public.pg_stat_statements s
        where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = pg_catalog.current_database())
          and s.mean_exec_time >= 1000;
    end if;
end;
$$;
comment on function internal.system_metrics() is
    'The system metrics of monitor.collect_metrics: database size, connections (every state, 0 when none; used share of max_connections; sessions hidden from the role), commits, rollbacks, cache hit ratio, slow statements, oldest transaction, lock waits, WAL held back by replication slots and slots lost, commits waiting for a synchronous standby, pg_cron jobs failing, age of the last backup, WAL archiving failing and the WAL files waiting to be archived and the oldest one''s age (not recorded when hidden from the role), partitions ahead, rows in default partitions, open alerts, the outbox; each failure metric read by the function its health check reads.';

create or replace function monitor.collect_metrics(collected_at timestamptz default now())
    returns integer
    volatile
    language plpgsql
as $$
-- Record every collected metric once, at collected_at; returns how many values were recorded.
-- pg_cron runs it every minute (as the superuser that migrated); `spreadedge metrics collect`
-- runs it by hand (as the connection's role). Run it as the database owner or a superuser (it
-- reads every strategy and the server's statistics); a role that is neither a superuser nor a
-- member of pg_read_all_stats misses other roles' sessions (internal.system_metrics).
-- The values are always the state as the function runs: collected_at dates them (a
-- scheduler's own clock; tests step it to see transitions) and picks the UTC hour and day of the
-- trade series, the 24 hours of orders.by_status and the hour of risk.events. Positions, exposure, PnL and the
-- system figures are not kept for past times, so a collected_at in the past does not give the
-- state then; trading.take_portfolio_snapshot refuses one for that reason.
declare
    v_count integer;
begin
    perform internal.check_time(collected_at, 'collected_at');
    insert into monitor.metrics (recorded_at, name, labels, value)
    select collected_at, m.name, m.labels, m.value
    from (select * from internal.trading_metrics(collected_at)
          union all
          select * from internal.system_metrics()) m
    where m.value is not null;
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;
comment on function monitor.collect_metrics(timestamptz) is
    'Record the trading, risk and system metrics of monitor.metric_catalog as they are now, dated collected_at (default now), whose UTC hour and day the trade series cover (a past time does not give the state then); returns the number of values. pg_cron runs it every minute.';
