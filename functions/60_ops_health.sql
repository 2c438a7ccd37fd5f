-- spreadedge functions: health
-- ops.health: what GET /api/v1/historical/health and operators need to know the database can take
-- writes where they belong: migrations current, partitions created ahead of time, no rows stranded
-- in a default partition. One row per check; healthy when every ok is true.
-- ops.health_report: everything an operator's `spreadedge health` checks, as one JSON document:
-- the checks above plus partitions registered with pg_partman, pg_cron jobs succeeding, the age of
-- the last successful backup, replication (lag, a standby's WAL receiver), the WAL replication
-- slots hold back, the synchronous standbys commits wait for, long-running transactions, disk
-- usage, sessions blocking others and WAL archiving (internal.health_wal_archiving, in
-- 59_ops_wal_archiving.sql).
-- Each check is one internal.health_* function returning (ok, detail), shared by both.

create or replace function internal.health_migrations(p_expected text[])
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- p_expected: the migration ids the calling code was built with; null compares nothing and only
-- counts the applied ones
declare
    v_applied text[];
    v_pending text[];
    v_unknown text[];
begin
    if to_regclass('public._spreadedge_migration_checksum') is null then
        return query select false, 'no migration ledger: run spreadedge migrate';
        return;
    end if;
    select array_agg(m.migration_id order by m.migration_id) into v_applied
    from public._spreadedge_migration_checksum m;
    if p_expected is null then
        return query select true, format('%s applied (not compared with any code)', coalesce(cardinality(v_applied), 0));
        return;
    end if;
    v_pending := array(select x from unnest(p_expected) x
                       where not x = any (coalesce(v_applied, '{}')) order by x);
    v_unknown := array(select x from unnest(v_applied) x
                       where not x = any (coalesce(p_expected, '{}')) order by x);
    return query select cardinality(v_pending) = 0 and cardinality(v_unknown) = 0,
                        concat_ws('; ',
                                  format('%s applied', coalesce(cardinality(v_applied), 0)),
                                  'pending: ' || nullif(array_to_string(v_pending, ', '), ''),
                                  'applied but unknown to this code: '
                                      || nullif(array_to_string(v_unknown, ', '), ''));
end;
$$;
comment on function internal.health_migrations(text[]) is
    'Health check: every expected migration applied and none unknown (ok, detail).';

create or replace function internal.partition_coverage()
    returns table (parent_table text, partition_interval interval, times tstzmultirange, ahead integer)
    stable
    language sql
as $$
    -- Each pg_partman table: its partition interval, the times its partitions cover
    -- (internal.partition_times) and how many partitions start from now on with no gap between
    -- now and them (the partitions ahead; 0 when none, or when no partition covers now). Shared
    -- by health's partitions_ahead and the metric partitions.min_ahead.
    -- why the bounds from the catalog (internal.partition_times): pg_partman's show_partition_info
    -- costs about 0.2 ms a partition, and the daily partitions of quotes and ticks add 730 a year
    -- to every health check (the API's load-balancer probe) and every minute's collect_metrics
    -- why the ranges read once (the union as internal.partition_times makes it): reading the
    -- catalog's bounds is most of the cost, and collect_metrics runs every minute
    select c.parent_table, c.partition_interval::interval, p.times,
           (select count(*)::integer
            from unnest(p.ranges) r
            where lower(r) >= now()
              and r <@ (select x from unnest(p.times) x where x @> now()))
    from partman.part_config c
    cross join lateral (select coalesce(range_agg(r), '{}'::tstzmultirange) as times, array_agg(r) as ranges
                        from internal.partition_ranges(c.parent_table::regclass) r) p
$$;
comment on function internal.partition_coverage() is
    'Each pg_partman table with its partition interval, the times its partitions cover and the partitions ahead: those starting from now on with no gap before them (0 when no partition covers now).';

create or replace function internal.health_partitions_ahead()
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    -- why "one partition interval ahead": the partition for the next period must exist before the
    -- period starts, or its first rows are refused (the default partitions' triggers)
    -- why the gaps too: the newest partition alone said nothing of those before it; with the
    -- partition of the current day dropped (by hand, or a partition made far ahead by
    -- partman.create_partition_time) every write of today was refused while health said ok, and
    -- pg_partman's maintenance only adds partitions after the newest, so it never fills a gap.
    -- A gap is a time from now on that no partition covers: before the first partition ending
    -- after now, or between two of them. The tables and their bounds: internal.partition_coverage.
    with t as (
        select c.parent_table, c.partition_interval, c.times
        from internal.partition_coverage() c
    ),
    short as (
        select format('%s (newest partition ends %s)', t.parent_table,
                      coalesce(to_char(upper(t.times) at time zone 'UTC', 'YYYY-MM-DD HH24:MI"Z"'), 'never')) as line
        from t
        where upper(t.times) is null
           or upper(t.times) < now() + t.partition_interval
    ),
    missing as (
        select format('%s (no partition from %s to %s)', t.parent_table,
                      case when lower(g) = now() then 'now'
                           else to_char(lower(g) at time zone 'UTC', 'YYYY-MM-DD HH24:MI"Z"') end,
                      to_char(upper(g) at time zone 'UTC', 'YYYY-MM-DD HH24:MI"Z"')) as line
        from t
        cross join lateral unnest(tstzmultirange(tstzrange(now(), upper(t.times))) - t.times) g
        where upper(t.times) > now()
    )
    select not exists (select from short) and not exists (select from missing),
           coalesce(nullif(concat_ws('; ',
                                     'not created ahead: ' || (select string_agg(s.line, ', ' order by s.line) from short s),
                                     'partitions missing: ' || (select string_agg(m.line, ', ' order by m.line) from missing m)),
                           ''),
                    format('%s partitioned tables have their next partition', (select count(*) from partman.part_config)));
$$;
comment on function internal.health_partitions_ahead() is
    'Health check: every pg_partman table has a partition beyond the current period, and no time from now on lacks a partition (ok, detail).';

create or replace function internal.default_partition_rows()
    returns table (default_table text, row_count bigint)
    stable
    language sql
as $$
    -- The rows in each default partition of the pg_partman tables, exactly; shared by health's
    -- default_partitions_empty and the metric partitions.default_rows.
    -- why the exact count: without it check_default stops at a partition's first row and reports
    -- 1 however many there are; a default partition is empty unless something went wrong (the
    -- refuse triggers of 63_ops_default_partitions.sql), so counting costs nothing in the usual case
    select d.default_table, d.count
    from partman.check_default(p_exact_count := true) d
$$;
comment on function internal.default_partition_rows() is
    'The rows in each default partition that holds any (pg_partman check_default, counted exactly); no row when every one is empty.';

create or replace function internal.health_default_partitions()
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    select count(*) = 0,
           coalesce('rows in default partitions: '
                        || string_agg(format('%s (%s rows)', d.default_table, d.row_count), ', ' order by d.default_table),
                    'every default partition is empty')
    from internal.default_partition_rows() d;
$$;
comment on function internal.health_default_partitions() is
    'Health check: no rows in any default partition (ok, detail).';

create or replace function internal.health_writable()
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    -- why: on a standby, or with default_transaction_read_only on, every login and logout fails
    -- (25006), so the history API must leave the load balancer's rotation for a server on a
    -- writable database; its health answered 200. A failing check, not a warning, though reads of
    -- live sessions are still served (their idle timeout does not slide there): a server that
    -- cannot log anyone in is not one to prefer to a server on the primary, and the operator must
    -- see it. (A load balancer that fails open sends to every server when all fail, and they serve
    -- the reads; one that fails closed, as Kubernetes readiness does, sends to none.)
    select not r.read_only,
           case when r.read_only
                then 'the database is read-only (a standby, or writes are switched off): logins and logouts fail; '
                     'reads of live sessions are served'
                else 'takes writes' end
    from (select pg_catalog.pg_is_in_recovery()
                 or pg_catalog.current_setting('transaction_read_only') = 'on' as read_only) r
$$;
comment on function internal.health_writable() is
    'Health check: the database takes writes (not a standby, the transaction not read-only) (ok, detail).';

create or replace function internal.health_partitions_registered()
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    -- every partitioned table of the project's schemas (not a partition itself) must be managed by
    -- pg_partman, or nobody creates its partitions ahead and applies its retention
    with unmanaged as (
        select format('%I.%I', c.relnamespace::regnamespace::text, c.relname) as name
        from pg_catalog.pg_partitioned_table pt
        join pg_catalog.pg_class c on c.oid = pt.partrelid
        where not c.relispartition
          and c.relnamespace::regnamespace::text in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops')
          and not exists (select from partman.part_config p where p.parent_table = c.relnamespace::regnamespace::text || '.' || c.relname)
    )
    select count(*) = 0,
           coalesce('not registered with pg_partman: ' || string_agg(u.name, ', ' order by u.name),
                    'every partitioned table is registered with pg_partman')
    from unmanaged u;
$$;
comment on function internal.health_partitions_registered() is
    'Health check: every partitioned table is registered with pg_partman (ok, detail).';

create or replace function internal.cron_jobs_state()
    returns text
    stable
    language plpgsql
as $$
-- Whether this session can judge the pg_cron jobs of this database: 'absent' (pg_cron does not run
-- in this database), 'standby' (pg_cron runs no job during recovery, and the replicated jobs are
-- the primary's), 'forbidden' (the role may not read pg_cron's schema: pg_cron is not a trusted
-- extension, and the migrate that scheduled the jobs ran as a superuser) or 'readable'. Shared by
-- health's cron_jobs and the metric cron.jobs_failing.
begin
    -- why to_regnamespace first: to_regclass('cron.job_run_details') raised a raw 42501
    -- "permission denied for schema cron" for a role without USAGE on it (the database owner's
    -- members, who run spreadedge health), and the whole health report failed with it
    if to_regnamespace('cron') is null then
        return 'absent';
    end if;
    if pg_catalog.pg_is_in_recovery() then
        return 'standby';
    end if;
    if not pg_catalog.has_schema_privilege('cron', 'usage') then
        return 'forbidden';
    end if;
    if to_regclass('cron.job_run_details') is null then
        return 'absent';
    end if;
    return 'readable';
end;
$$;
comment on function internal.cron_jobs_state() is
    'Whether this session can judge the pg_cron jobs of this database: absent, standby, forbidden (no USAGE on schema cron) or readable.';

create or replace function internal.cron_job_latest_runs()
    returns table (jobname text, jobid bigint, nodename text, nodeport integer, status text,
                   return_message text, elsewhere boolean, failed boolean)
    stable
    language plpgsql
as $$
-- The latest run of every active pg_cron job of this database the role sees (cron.job shows a role
-- only its own jobs), whether it failed (a run that started before the last migrate is not judged)
-- and whether the job connects to another server. Call it only when internal.cron_jobs_state() is
-- 'readable' (plpgsql: the cron schema need not exist when it is created). Shared by health's
-- cron_jobs and the metric cron.jobs_failing.
begin
    return query
        select j.jobname::text, j.jobid, j.nodename, j.nodeport, r.status, r.return_message,
               -- why: a cluster restored into another home (or started on another port) keeps
               -- the jobs' host and port; while the server they name runs (the source of a
               -- restore drill on the same host), the jobs run there and succeed: this
               -- server's maintenance, metrics and alert rules never run, and health said ok
               j.nodename <> coalesce(pg_catalog.current_setting('cron.host', true), j.nodename)
               or j.nodeport <> pg_catalog.current_setting('port')::integer as elsewhere,
               -- why not judged when it started before the last migrate: it ran other code,
               -- and on a fresh database a minute striking between migration 0006 and
               -- functions/ fails the jobs it scheduled; a run that never started ran no code
               r.status = 'failed'
               and (r.start_time is null
                    or r.start_time >= coalesce((select max(m.finished_at) from ops.migrate_runs m), '-infinity'))
               -- why not a run the server's restart interrupted: pg_cron marks a run still
               -- starting or running when the server went down failed with "server restarted"
               -- (and no end time) as it starts again, so a crash, a restart or a restore from a
               -- backup taken while a job ran failed health until the job's next run, an hour
               -- later for the partition maintenance; the job did not fail, and its next run is
               -- judged
               and not (r.return_message = 'server restarted' and r.end_time is null)
               -- why not a run whose connection the server's shutdown closed: when pg_cron sees a
               -- job's session end before it is itself stopped, it records the run failed with
               -- libpq's message and an end time before this server started; health failed
               -- cron_jobs on it after a plain restart (the CI's restart during a minute's
               -- collection). A session ended by pg_terminate_backend since the start is judged.
               and not (r.end_time < pg_catalog.pg_postmaster_start_time()
                        and r.return_message ~ ('server closed the connection unexpectedly'
                                                '|terminating connection due to administrator command')) as failed
        from cron.job j
        -- why a lateral read of the newest run: pg_cron keeps every run (three a minute, over
        -- a million a year; the maintenance keeps retention_cron_runs of them, 14 days by
        -- default, and every run when it is none), and sorting them all for each job on every
        -- health check grew with them; read backwards on the run id's primary key, a job's
        -- newest run (which the retention never deletes) is among the last few rows
        left join lateral (select r.status, r.return_message, r.start_time, r.end_time
                           from cron.job_run_details r
                           where r.jobid = j.jobid
                           order by r.runid desc
                           limit 1) r on true
        -- why the database: pg_cron serves every database of the cluster from this one
        -- (cron.schedule_in_database), and another database's jobs are not this one's health
        where j.active and j.database = pg_catalog.current_database();
end;
$$;
comment on function internal.cron_job_latest_runs() is
    'The latest run of every active pg_cron job of this database the role sees: its status and message, failed (not judged when it started before the last migrate, nor when the server''s restart interrupted it or its shutdown closed the job''s connection) and elsewhere (the job connects to another host or port than this server''s).';

create or replace function internal.health_cron_jobs()
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- the latest run of every active pg_cron job of this database succeeded, unless it started before
-- the last migrate, the server's restart interrupted it or its shutdown closed the job's session; its error on one line; and every such job connects to this server. Nothing to
-- judge on a standby.
declare
    -- why: cron.job shows a role only its own jobs (row-level security), and the migrate that
    -- scheduled them ran as a superuser (pg_cron is not a trusted extension)
    v_sees_all boolean := (select r.rolsuper or r.rolbypassrls from pg_catalog.pg_roles r where r.rolname = current_user);
    v_state text := internal.cron_jobs_state();
    v_served text;
begin
    if v_state = 'absent' then
        -- why the database it serves: on a server whose pg_cron serves another deployment's
        -- database (a second deployment beside the first), "does not run in this database" read
        -- as nothing to schedule, while this database's maintenance, metrics and alert rules ran
        -- nowhere: pg_cron runs a job only where it was scheduled (migrate schedules them only
        -- in the database pg_cron serves)
        v_served := nullif(pg_catalog.current_setting('cron.database_name', true), '');
        if v_served <> pg_catalog.current_database() then
            return query select true, format('pg_cron runs in database %s, not this one: this database''s partition '
                                             'maintenance, metrics and alert rules run only where they are scheduled '
                                             '(there with cron.schedule_in_database under job names of their own, '
                                             'or by another scheduler)', v_served);
            return;
        end if;
        return query select true, 'pg_cron does not run in this database';
        return;
    end if;
    -- why: pg_cron runs no job during recovery, and on a hot standby the replicated cron.job rows
    -- name the primary's host and port: every job failed "run on another server", though nothing
    -- is wrong with this server and the jobs' runs are the primary's to judge
    if v_state = 'standby' then
        return query select true, 'standby: pg_cron runs no job here; the primary runs them (see its health)';
        return;
    end if;
    if v_state = 'forbidden' then
        return query select false, format('pg_cron runs in this database, but %s may not read its jobs: run health as a superuser', current_user);
        return;
    end if;
    return query
        with latest as (
            select l.* from internal.cron_job_latest_runs() l
        )
        -- why one line: pg_cron keeps the server's whole error text, DETAIL, HINT and CONTEXT
        -- lines and a final line break included, which split the CLI's line of the check (55S12's
        -- HINT and CONTEXT, any PL/pgSQL error's CONTEXT); the error, its DETAIL and HINT are
        -- kept, the places in the code (QUERY, CONTEXT, LOCATION, STATEMENT) left out
        select count(*) filter (where l.failed or l.elsewhere) = 0,
               coalesce(nullif(concat_ws('; ',
                   'failed on their last run: '
                            || string_agg(format('%s (%s%s%s)', coalesce(l.jobname, l.jobid::text),
                                                 regexp_replace(regexp_replace(btrim(coalesce(l.return_message, 'no message'), E' \n'),
                                                                               E'\\n(QUERY|CONTEXT|LOCATION|STATEMENT): .*$', ''),
                                                                E'\\s*\\n\\s*', ' ', 'g'),
                                                 -- why where it connects: such a job fails with
                                                 -- "connection failed" alone
                                                 case when l.nodename <> coalesce(pg_catalog.current_setting('cron.host', true), l.nodename)
                                                      then format('; the job connects to host %s, cron.host is %s', l.nodename,
                                                                  pg_catalog.current_setting('cron.host', true))
                                                      else '' end,
                                                 case when l.nodeport <> pg_catalog.current_setting('port')::integer
                                                      then format('; the job connects to port %s, the server listens on port %s',
                                                                  l.nodeport, pg_catalog.current_setting('port'))
                                                      else '' end), ', '
                                          order by l.jobname) filter (where l.failed),
                   'run on another server: '
                       || string_agg(format('%s (%s)', coalesce(l.jobname, l.jobid::text),
                                            concat_ws('; ',
                                                case when l.nodename <> coalesce(pg_catalog.current_setting('cron.host', true), l.nodename)
                                                     then format('the job connects to host %s, cron.host is %s', l.nodename,
                                                                 pg_catalog.current_setting('cron.host', true)) end,
                                                case when l.nodeport <> pg_catalog.current_setting('port')::integer
                                                     then format('the job connects to port %s, the server listens on port %s',
                                                                 l.nodeport, pg_catalog.current_setting('port')) end)), ', '
                                     order by l.jobname) filter (where l.elsewhere and l.failed is not true)), ''),
                        format('%s active jobs%s, none failed on its last run', count(*),
                               case when not v_sees_all then format(' of %s (it sees no other role''s)', current_user) else '' end))
        from latest l;
end;
$$;
comment on function internal.health_cron_jobs() is
    'Health check: the latest run of every active pg_cron job of this database did not fail, a run that started before the last migrate (ops.migrate_runs) or that the server''s restart interrupted (pg_cron''s "server restarted", or a connection closed by the shutdown, ended before the server started) not judged, and every such job connects to this server (cron.host and port: a restored cluster''s jobs keep the old ones and run on that server while it is up); a failed job''s error on one line (without QUERY and CONTEXT), and where it connects when that is not the server; ok on a standby, where pg_cron runs no job, and in a database pg_cron does not serve (naming the one it serves, where this database''s jobs must be scheduled) (ok, detail).';

-- internal.health_limit became internal.check_age (00_internal_checks.sql), shared with cleanup
drop function if exists internal.health_limit(interval, text);

create or replace function internal.last_backup()
    returns table (label text, kind text, finished_at timestamptz, succeeded bigint)
    stable
    language sql
as $$
    -- The newest successful physical backup that pgBackRest still holds (label, kind, when it
    -- finished; nulls when none) and how many successful ones ops.backup_runs records, expired
    -- ones included; always one row. Shared by health's last_backup and the metric
    -- backup.last_success_age_seconds.
    -- why not the expired runs: a backup pgBackRest has expired is no backup (restore cannot use it)
    -- why not the runs finished more than a minute later than the clock reads: the clock ran
    -- ahead when they finished and has stepped back since, so how old they are is unknown; taken
    -- as finished now, a backup stamped two days ahead kept health ok (and the age metric below
    -- zero) for two days more, however long backups had stopped
    select (array_agg(b.label order by b.finished_at desc) filter (where b.expired_at is null and b.by_clock))[1],
           (array_agg(b.kind order by b.finished_at desc) filter (where b.expired_at is null and b.by_clock))[1],
           max(b.finished_at) filter (where b.expired_at is null and b.by_clock),
           count(*)
    from (select r.label, r.kind, r.finished_at, r.expired_at,
                 r.finished_at <= now() + interval '1 minute' as by_clock
          from ops.backup_runs r
          where r.status = 'succeeded' and r.kind in ('full', 'diff', 'incr')) b;
$$;
comment on function internal.last_backup() is
    'The newest successful physical backup pgBackRest still holds that finished by the clock (a run finished over a minute later than it reads is left out: its age is unknown) (label, kind, finished_at; nulls when none) and the number of successful ones recorded, expired ones included: one row.';

create or replace function internal.backups_ahead_of_clock()
    returns bigint
    stable
    language sql
as $$
    -- The successful physical backups pgBackRest still holds that finished more than a minute
    -- later than the clock reads (it ran ahead and has stepped back since), which
    -- internal.last_backup leaves out: health's last_backup names how many.
    select count(*)
    from ops.backup_runs b
    where b.status = 'succeeded' and b.kind in ('full', 'diff', 'incr') and b.expired_at is null
      and b.finished_at > now() + interval '1 minute';
$$;
comment on function internal.backups_ahead_of_clock() is
    'How many successful physical backups pgBackRest holds finished over a minute later than the clock reads (it stepped back since): internal.last_backup leaves them out.';

create or replace function internal.health_last_backup(p_max_age interval)
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    select coalesce(b.finished_at >= now() - p_max_age, false),
           case when b.succeeded = 0 then 'no successful physical backup recorded in ops.backup_runs'
                when b.finished_at is null and b.succeeded = a.ahead
                    then format('no successful physical backup in ops.backup_runs that pgBackRest still holds (%s)',
                                a.ahead_text)
                when b.finished_at is null
                    then format('no successful physical backup in ops.backup_runs that pgBackRest still holds (%s)',
                                concat_ws('; ', (b.succeeded - a.ahead) || ' expired', a.ahead_text))
                -- why "ahead of the clock": a run finished up to a minute later than the clock
                -- reads counts (the clock's own jitter), and "-00:00:30 ago" reads as a typo
                else format('last physical backup %s (%s) finished %s, %s (limit %s)',
                            b.label, b.kind,
                            to_char(b.finished_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"'),
                            case when b.finished_at > now()
                                 then date_trunc('second', b.finished_at - now()) || ' ahead of the clock'
                                 else date_trunc('second', now() - b.finished_at) || ' ago' end,
                            p_max_age) || coalesce('; not counted: ' || a.ahead_text, '') end
    from internal.last_backup() b
    cross join lateral (select n.ahead,
                               case when n.ahead > 0
                                    then format('%s finished later than the database clock reads: it has stepped back since, and their age is unknown',
                                                n.ahead) end as ahead_text
                        from (select internal.backups_ahead_of_clock() as ahead) n) a;
$$;
comment on function internal.health_last_backup(interval) is
    'Health check: a pgBackRest backup that pgBackRest has not expired (ops.backup_runs.expired_at) succeeded within the given age, one finished over a minute later than the clock reads (it stepped back since) not counted and named (ok, detail).';

create or replace function internal.health_replication(p_max_lag interval)
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- a primary: the replay lag of each replica (null once a replica has replayed everything: an idle
-- primary's replicas do not lag). A standby that stopped leaves no row in pg_stat_replication and
-- the primary keeps nothing else of it: with a replication slot, replication_slots sees it
-- (internal.health_replication_slots); without one nothing on the primary tells it from a
-- standby that was never there, and its own health (the WAL receiver) is where it shows.
-- A standby: its WAL receiver streams from the primary,
-- and it has replayed everything it received or, when not, its last replayed transaction is
-- younger than p_max_lag.
-- why not the age of the last replayed transaction alone: it is the primary's idle time too, and
-- an idle primary (a quiet night) made a standby that had replayed everything fail the check;
-- while a standby cut off from its primary (primary down, primary_conninfo wrong) had replayed all
-- it received and was ok for as long as its last transaction was young
-- why the receiver's status can be hidden: pg_stat_wal_receiver shows it only to superusers and
-- members of pg_read_all_stats
declare
    v_receiver_pid integer;
    v_receiver_status text;
    v_received pg_lsn := pg_catalog.pg_last_wal_receive_lsn();
    v_replayed pg_lsn := pg_catalog.pg_last_wal_replay_lsn();
    v_replayed_at timestamptz := pg_catalog.pg_last_xact_replay_timestamp();
    v_caught_up boolean;
begin
    if not pg_catalog.pg_is_in_recovery() then
        -- why the hidden ones: pg_stat_replication shows a replica's state and lag only to
        -- superusers and members of pg_read_all_stats, to others a pid and nulls, and a null lag
        -- is no lag: a replica hours behind was "largest replay lag 00:00:00" and ok
        return query
            select count(r.pid) filter (where r.state is null) = 0
                   and coalesce(max(r.replay_lag) <= p_max_lag, true),
                   case when count(r.pid) = 0 then 'no replicas'
                        when count(r.pid) filter (where r.state is null) > 0
                        then format('%s replicas, their state and lag hidden from %s: run health as a superuser or a '
                                    'member of pg_read_all_stats', count(r.pid), current_user)
                        else format('%s replicas, largest replay lag %s (limit %s)', count(r.pid),
                                    coalesce(max(r.replay_lag), '0'::interval), p_max_lag) end
            from pg_catalog.pg_stat_replication r;
        return;
    end if;
    -- no row when no WAL receiver runs
    select w.pid, w.status into v_receiver_pid, v_receiver_status from pg_catalog.pg_stat_wal_receiver w;
    v_caught_up := coalesce(v_replayed >= v_received, false);
    return query
        select coalesce(v_receiver_status = 'streaming', false)
               and (v_caught_up or coalesce(now() - v_replayed_at <= p_max_lag, false)),
               'standby: '
               || case when v_receiver_pid is null
                       then 'the WAL receiver is not running: nothing comes from the primary (see primary_conninfo and the server log)'
                       when v_receiver_status is null
                       then format('the WAL receiver''s status is hidden from %s: run health as a superuser or a member of pg_read_all_stats',
                                   current_user)
                       when v_receiver_status = 'streaming'
                       then 'the WAL receiver is streaming from the primary'
                       else format('the WAL receiver is %s, not streaming from the primary (see the server log)', v_receiver_status) end
               || '; '
               || case when v_caught_up then 'everything received is replayed'
                       else concat_ws(', ',
                                      format('replay is %s behind what it received',
                                             pg_catalog.pg_size_pretty(pg_catalog.pg_wal_lsn_diff(v_received, v_replayed))),
                                      coalesce(format('last transaction replayed %s ago',
                                                      date_trunc('second', now() - v_replayed_at)),
                                               'no transaction replayed since the standby started'))
                            || format(' (limit %s)', p_max_lag) end;
end;
$$;
comment on function internal.health_replication(interval) is
    'Health check: replicas lag by no more than the given interval (fails when their lag is hidden from the role: superusers and pg_read_all_stats see it); on a standby, its WAL receiver streams from the primary and it has replayed all it received, or its last replayed transaction is younger than the interval (ok, detail).';

create or replace function internal.replication_slot_wal()
    returns table (slot_name text, slot_type text, active boolean, wal_status text, safe_wal_size bigint,
                   retained bigint)
    stable
    language sql
as $$
    -- Every replication slot of the cluster and the WAL it holds back (bytes from its restart_lsn
    -- to the current WAL position; null when the slot reserves no WAL: created without reserving,
    -- or lost). Shared by health's replication_slots and the metrics
    -- replication.slot_wal_retained_bytes and replication.slots_lost.
    -- why the received position on a standby: pg_current_wal_lsn raises there, and a cascading
    -- standby's slots hold back the WAL it received
    select r.slot_name::text, r.slot_type, r.active, r.wal_status, r.safe_wal_size,
           pg_catalog.pg_wal_lsn_diff(c.lsn, r.restart_lsn)::bigint
    from pg_catalog.pg_replication_slots r
    cross join (select case when pg_catalog.pg_is_in_recovery()
                            then coalesce(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())
                            else pg_catalog.pg_current_wal_lsn() end as lsn) c
$$;
comment on function internal.replication_slot_wal() is
    'Every replication slot with its type, activity, wal_status, safe_wal_size and the WAL bytes it holds back (null when it reserves none).';

create or replace function internal.health_replication_slots(p_max_retained_wal bigint)
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- Every replication slot of the cluster (physical or logical, active or not) holds back no more
-- than p_max_retained_wal bytes of WAL, and none has lost the WAL its consumer needs (wal_status
-- 'lost', or 'unreserved': removed at the next checkpoint). The inactive slots are named even when
-- they are within the limit. A limit that is null or not positive is invalid_argument (22S09).
-- why: a slot whose standby stopped or was removed (or whose logical consumer went away) keeps
-- every WAL segment from its restart_lsn on, and the primary's disk fills until it stops: the
-- usual way a replicated PostgreSQL dies; the replication check saw nothing, pg_stat_replication
-- has no row for a consumer that is gone.
-- why by size, not inactive alone: a logical slot read by polling (pg_logical_slot_get_changes)
-- is active only while it is read, and a standby that restarts leaves its slot inactive for
-- seconds; the WAL held back is what fills the disk, and it grows with the time the slot is
-- inactive.
-- why not the same for a standby that stopped without a slot: the primary keeps nothing of it,
-- so nothing here can tell it from a standby that was never there (and it holds back no WAL).
begin
    if p_max_retained_wal is null or p_max_retained_wal <= 0 then
        raise exception 'max_retained_wal must be a positive number of bytes, got %',
            coalesce(p_max_retained_wal::text, 'null')
            using errcode = '22S09', hint = 'Give a size such as pg_size_bytes(''1 GB'').';
    end if;
    return query
        with s as (
            select r.slot_name, r.slot_type, r.active, r.wal_status, r.safe_wal_size, r.retained
            from internal.replication_slot_wal() r
        ),
        described as (
            select s.slot_name, s.active,
                   case when s.wal_status = 'lost' then 'lost'
                        when s.wal_status = 'unreserved' then 'unreserved'
                        when s.retained > p_max_retained_wal then 'too much' end as problem,
                   format('%s (%s, %s%s)', s.slot_name, s.slot_type,
                          case when s.active then 'active' else 'inactive' end,
                          coalesce(', holds back ' || pg_catalog.pg_size_pretty(s.retained), '')
                          -- why: with max_slot_wal_keep_size the slot is lost, not the disk full,
                          -- and safe_wal_size says how soon
                          || coalesce(', lost after ' || pg_catalog.pg_size_pretty(s.safe_wal_size) || ' more WAL', '')) as line
            from s
        )
        select count(d.problem) = 0,
               case when count(*) = 0 then 'no replication slots'
                    else concat_ws('; ',
                        format('%s slots (limit %s)', count(*), pg_catalog.pg_size_pretty(p_max_retained_wal)),
                        'holding back more than the limit: '
                            || string_agg(d.line, ', ' order by d.slot_name) filter (where d.problem = 'too much'),
                        'WAL lost, the consumer can no longer catch up (rebuild the standby, or drop the slot): '
                            || string_agg(d.line, ', ' order by d.slot_name) filter (where d.problem = 'lost'),
                        'WAL to be removed at the next checkpoint (max_slot_wal_keep_size): '
                            || string_agg(d.line, ', ' order by d.slot_name) filter (where d.problem = 'unreserved'),
                        'inactive: '
                            || string_agg(d.line, ', ' order by d.slot_name)
                                   filter (where not d.active and d.problem is null)) end
        from described d;
end;
$$;
comment on function internal.health_replication_slots(bigint) is
    'Health check: no replication slot holds back more WAL than the given bytes, and none lost its WAL or is about to (wal_status lost or unreserved); inactive slots named (ok, detail); 22S09 for a limit that is null or not positive.';

create or replace function internal.sync_rep_waiters()
    returns table (pid integer)
    stable
    language sql
as $$
    -- The sessions of the server whose commit waits for a synchronous standby now (wait event
    -- SyncRep): committed here, not yet confirmed, locks held. Another role's wait event shows
    -- only to superusers and members of pg_read_all_stats. Shared by health's synchronous_standby
    -- and the metric replication.sync_commits_waiting.
    select a.pid from pg_catalog.pg_stat_activity a where a.wait_event = 'SyncRep'
$$;
comment on function internal.sync_rep_waiters() is
    'The pids whose commit waits for a synchronous standby now (wait event SyncRep; other roles'' need pg_read_all_stats to be seen).';

create or replace function internal.health_synchronous_standby()
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- On a primary whose synchronous_standby_names is set, as many synchronous standbys as it asks for
-- stream from it (pg_stat_replication.sync_state sync or quorum; 'FIRST n (...)' and 'ANY n (...)'
-- ask for n, a plain list for one); the commits waiting for one right now (wait_event SyncRep) are
-- counted and named. Ok on a primary without synchronous_standby_names, and on a standby (the
-- setting is the primary's there).
-- why: with the synchronous standby gone, every commit that wrote something waits for it for ever,
-- committed on the primary but invisible to the others, its locks held, and statement_timeout
-- does not end the wait; every other check stayed ok (the primary takes writes, no replicas lag,
-- no slot holds WAL), and nothing told an operator why every write hung.
-- why the standbys' state can be hidden: pg_stat_replication shows it, and pg_stat_activity
-- another role's wait event, only to superusers and members of pg_read_all_stats
declare
    v_names text := pg_catalog.current_setting('synchronous_standby_names');
    v_required integer;
    v_streaming integer;
    v_hidden integer;
    v_waiting integer;
    v_waiting_pids text;
begin
    if pg_catalog.pg_is_in_recovery() then
        return query select true, 'a standby: synchronous replication is the primary''s to check';
        return;
    end if;
    if btrim(v_names) = '' then
        return query select true, 'no synchronous standby required (synchronous_standby_names is empty)';
        return;
    end if;
    v_required := coalesce((pg_catalog.regexp_match(v_names, E'^\\s*(?:first|any)?\\s*(\\d+)\\s*\\(', 'i'))[1]::integer, 1);
    select count(*) filter (where r.state = 'streaming' and r.sync_state in ('sync', 'quorum')),
           count(*) filter (where r.state is null)
      into v_streaming, v_hidden
    from pg_catalog.pg_stat_replication r;
    select count(*), string_agg(w.pid::text, ', ' order by w.pid)
      into v_waiting, v_waiting_pids
    from internal.sync_rep_waiters() w;
    return query
        select v_hidden = 0 and v_streaming >= v_required,
               case when v_hidden > 0
                    then format('synchronous_standby_names is %L; the state of %s replicas is hidden from %s: '
                                'run health as a superuser or a member of pg_read_all_stats',
                                v_names, v_hidden, current_user)
                    when v_streaming >= v_required
                    then format('%s synchronous standbys streaming, %s required (synchronous_standby_names %L)',
                                v_streaming, v_required, v_names)
                    else format('commits wait for a synchronous standby: %s streaming, %s required '
                                '(synchronous_standby_names %L); %s',
                                v_streaming, v_required, v_names,
                                case when v_waiting = 0 then 'no commit waiting right now'
                                     else format('%s commits waiting, committed here but not confirmed by a '
                                                 'standby (pids %s)', v_waiting, v_waiting_pids) end)
                         || '. Bring the standby back, or let commits go on without it: '
                            'ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()' end;
end;
$$;
comment on function internal.health_synchronous_standby() is
    'Health check: on a primary with synchronous_standby_names set, as many synchronous standbys as it requires stream (pg_stat_replication sync_state sync or quorum), else commits wait: the detail counts the commits waiting (wait_event SyncRep) and names their pids; ok with the setting empty and on a standby; fails when the standbys'' state is hidden from the role (ok, detail).';

create or replace function internal.health_long_transactions(p_max_age interval)
    returns table (ok boolean, detail text)
    stable
    language sql
as $$
    -- why the transactions begun more than a minute later than the clock reads: the clock ran
    -- ahead when they began and has stepped back since, so how long they have been open is
    -- unknown; their age read negative, and a transaction left open then (holding back vacuum)
    -- passed for a young one for the whole step
    select count(*) = 0,
           coalesce(nullif(concat_ws('; ',
                        format('%s transactions open longer than %s: ', count(*) filter (where not a.ahead), p_max_age)
                        || string_agg(format('pid %s (%s, %s, open %s)', a.pid, a.usename, a.state,
                                             date_trunc('second', now() - a.xact_start)), ', ' order by a.xact_start)
                               filter (where not a.ahead),
                        format('%s transactions begun later than the database clock reads (it has stepped back '
                               'since, and their age is unknown): ', count(*) filter (where a.ahead))
                        || string_agg(format('pid %s (%s, %s)', a.pid, a.usename, a.state), ', ' order by a.pid)
                               filter (where a.ahead)), ''),
                    format('no transaction open longer than %s', p_max_age))
    from (select s.pid, s.usename, s.state, s.xact_start, s.xact_start > now() + interval '1 minute' as ahead
          from pg_catalog.pg_stat_activity s
          where (s.xact_start < now() - p_max_age or s.xact_start > now() + interval '1 minute')
            and s.pid <> pg_catalog.pg_backend_pid() and s.backend_type = 'client backend'
            -- why this database's: a transaction open in another database of the server (the
            -- paper trading deployment beside the live one) holds back no vacuum of this
            -- database's tables (PostgreSQL 14 and later) and is that deployment's to judge; the
            -- live database's health failed on it, naming the other deployment's session, while
            -- db.oldest_xact_age ignored it
            and s.datname = pg_catalog.current_database()) a;
$$;
comment on function internal.health_long_transactions(interval) is
    'Health check: no client transaction of this database open longer than the given interval (another database''s are its own health''s), nor begun over a minute later than the clock reads (it stepped back since: their age is unknown) (ok, detail).';

create or replace function internal.health_disk(p_used_fraction numeric, p_max_fraction numeric)
    returns table (ok boolean, detail text)
    stable
    language plpgsql
as $$
-- SQL cannot see the file system: the caller measures the fullest of those the server writes to
-- (the data directory's, pg_wal's, the tablespaces'; p_used_fraction, as df counts it), null when
-- it cannot (a remote database). A fraction outside [0, 1], or a limit that is null or
-- outside (0, 1], is invalid_argument (22S09).
-- why: -0.5 read "file system -50.0% used" and was healthy, and a null limit was always healthy
begin
    if p_used_fraction < 0 or p_used_fraction > 1 then
        raise exception 'disk_used_fraction must be between 0 and 1, got %', p_used_fraction
            using errcode = '22S09';
    end if;
    if p_max_fraction is null or not (p_max_fraction > 0 and p_max_fraction <= 1) then
        raise exception 'max_disk_used_fraction must be above 0 and at most 1, got %',
            coalesce(p_max_fraction::text, 'null') using errcode = '22S09';
    end if;
    return query
    select coalesce(p_used_fraction <= p_max_fraction, true),
           format('database %s, all databases %s; %s',
                  pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(pg_catalog.current_database())),
                  pg_catalog.pg_size_pretty((select sum(pg_catalog.pg_database_size(d.oid)) from pg_catalog.pg_database d)),
                  case when p_used_fraction is null then 'file system not measured'
                       else format('file system %s%% used (limit %s%%)', round(p_used_fraction * 100, 1),
                                   round(p_max_fraction * 100, 1)) end);
end;
$$;
comment on function internal.health_disk(numeric, numeric) is
    'Health check: database sizes, and the fullest file system the server writes to (data directory, pg_wal, tablespaces; measured by the caller) used below the limit (ok, detail); 22S09 for a fraction outside [0, 1] or a limit outside (0, 1].';

create or replace function ops.health(expected_migrations text[])
    returns table (check_name text, ok boolean, detail text)
    stable
    security definer
    set search_path = ''
    -- why UTC: partitions_ahead adds a partition's interval to now(), and a '1 day' or '1 mon'
    -- added in the session's TimeZone is a day of its clock: in a session whose next day is 25
    -- hours a daily table with partitions 24.5 hours ahead was "not created ahead" (partitions are
    -- UTC days and months, and so is health)
    set timezone = 'UTC'
    language sql
as $$
    -- expected_migrations: the migration ids the calling code was built with (its migrations/ files).
    -- why security definer: the migration ledger and pg_partman's configuration are not readable by
    -- the API roles, and these checks reveal only names and counts.
    select 'migrations', m.ok, m.detail from internal.health_migrations(expected_migrations) m
    union all
    select 'partitions_ahead', p.ok, p.detail from internal.health_partitions_ahead() p
    union all
    select 'default_partitions_empty', d.ok, d.detail from internal.health_default_partitions() d
    union all
    select 'writable', w.ok, w.detail from internal.health_writable() w;
$$;
comment on function ops.health(text[]) is
    'Health checks (migrations current against the given ids, partitions created ahead by UTC days and months whatever the session TimeZone, default partitions empty, the database takes writes): one row per check.';

-- max_retained_wal, then max_archive_wait, came after the other arguments: a call in named notation
-- is unchanged, and the old signatures are dropped, or a call giving none of them would be ambiguous
drop function if exists ops.health_report(text[], interval, interval, interval, numeric, numeric);
drop function if exists ops.health_report(text[], interval, interval, interval, numeric, numeric, bigint);
create or replace function ops.health_report(expected_migrations text[] default null,
                                             max_backup_age interval default '26 hours',
                                             max_replication_lag interval default '5 minutes',
                                             max_transaction_age interval default '15 minutes',
                                             disk_used_fraction numeric default null,
                                             max_disk_used_fraction numeric default 0.9,
                                             max_retained_wal bigint default pg_catalog.pg_size_bytes('1 GB'),
                                             max_archive_wait interval default '10 minutes')
    returns jsonb
    stable
    -- why UTC: the limits are subtracted from now(), and a '1 day' subtracted in the session's
    -- TimeZone is a day of its clock: in a session whose last day was 23 hours a backup 23.5 hours
    -- old failed max_backup_age '1 day' ("23:30:00 ago (limit 1 day)"); partitions_ahead as in
    -- ops.health
    set timezone = 'UTC'
    language sql
as $$
    -- The operator's health document: {"healthy", "checked_at", "version", "database", "checks":
    -- [{"name", "ok", "detail"}, ...]}. Security invoker: it reads other sessions' transactions and
    -- the replication state, which only the database owner or a superuser sees whole.
    with checks (position, name, ok, detail) as (
        select 1, 'migrations', c.ok, c.detail from internal.health_migrations(expected_migrations) c
        union all select 2, 'partitions_registered', c.ok, c.detail from internal.health_partitions_registered() c
        union all select 3, 'partitions_ahead', c.ok, c.detail from internal.health_partitions_ahead() c
        union all select 4, 'default_partitions_empty', c.ok, c.detail from internal.health_default_partitions() c
        -- why: with default_transaction_read_only on, every write failed while this said healthy;
        -- the same check as the API's (ops.health), so both say the same of a standby
        union all select 5, 'writable', c.ok, c.detail from internal.health_writable() c
        union all select 6, 'cron_jobs', c.ok, c.detail from internal.health_cron_jobs() c
        union all select 7, 'last_backup', c.ok, c.detail
                  from internal.health_last_backup(internal.check_age(max_backup_age, 'max_backup_age', 'Give an age such as 26 hours or 15 minutes.')) c
        union all select 8, 'replication', c.ok, c.detail
                  from internal.health_replication(internal.check_age(max_replication_lag, 'max_replication_lag', 'Give an age such as 26 hours or 15 minutes.')) c
        -- why: a slot whose consumer is gone holds back WAL until the disk fills, and the
        -- replication check cannot see a consumer that is gone
        union all select 9, 'replication_slots', c.ok, c.detail from internal.health_replication_slots(max_retained_wal) c
        -- why: with its synchronous standby gone every commit of the primary waits for ever, and
        -- none of the other checks fails
        union all select 10, 'synchronous_standby', c.ok, c.detail from internal.health_synchronous_standby() c
        union all select 11, 'long_transactions', c.ok, c.detail
                  from internal.health_long_transactions(internal.check_age(max_transaction_age, 'max_transaction_age', 'Give an age such as 26 hours or 15 minutes.')) c
        union all select 12, 'disk_usage', c.ok, c.detail from internal.health_disk(disk_used_fraction, max_disk_used_fraction) c
        -- why 10 s: fills of one position wait for each other for milliseconds, and every bounded
        -- client of spreadedge gives up a lock wait by then or soon after (the managers' calls in
        -- 10 s, partition maintenance and migrate in half a deadlock_timeout): a longer wait is a
        -- session holding its locks and not moving (a transaction left open in psql)
        union all select 13, 'blocking_sessions', c.ok, c.detail from internal.health_blocking_sessions(interval '10 seconds') c
        -- why: when archive_command fails (or hangs), pg_wal keeps every segment until its disk is
        -- full and the server stops, and no backup can be restored past the last segment archived;
        -- every other check stayed ok, last_backup too until the next backup failed
        union all select 14, 'wal_archiving', c.ok, c.detail
                  from internal.health_wal_archiving(internal.check_age(max_archive_wait, 'max_archive_wait', 'Give an age such as 10 minutes.')) c
    )
    select jsonb_build_object(
        'healthy', bool_and(c.ok),
        'checked_at', internal.iso_utc(now()),
        'version', current_setting('server_version'),
        'database', current_database(),
        'checks', jsonb_agg(jsonb_build_object('name', c.name, 'ok', c.ok, 'detail', c.detail) order by c.position))
    from checks c;
$$;
comment on function ops.health_report(text[], interval, interval, interval, numeric, numeric, bigint, interval) is
    'Operator health as JSON: migrations, partitions registered/ahead/defaults empty, the database takes writes, pg_cron jobs, last backup age, replication (lag; a standby''s WAL receiver streaming), replication slots (WAL held back within max_retained_wal bytes, none lost; inactive ones named), synchronous standbys (as many streaming as synchronous_standby_names requires, else commits wait: those waiting counted), long transactions, disk usage, sessions blocking others (no lock waited for longer than 10 s, else who holds it), WAL archiving (with archive_mode on, the archiver''s last attempt did not fail and no WAL file waited to be archived longer than max_archive_wait, else the failed WAL file, the last archived one and what waits are named); healthy when every check is ok. Limits in days count on UTC''s clock (a day is 24 hours whatever the session TimeZone). An age limit (max_backup_age, max_replication_lag, max_transaction_age, max_archive_wait) that is null, not a positive interval, has a negative part or reaches before 4713 BC raises 22S09; so does a max_retained_wal that is null or not positive.';

create or replace function ops.health()
    returns jsonb
    stable
    language sql
as $$
    -- ops.health_report with its default limits, for psql: select ops.health();
    -- (ops.health(expected_migrations) is the REST API's four write-readiness checks)
    select ops.health_report()
$$;
comment on function ops.health() is
    'Operator health as JSON with the default limits (ops.health_report()): select jsonb_pretty(ops.health());';
