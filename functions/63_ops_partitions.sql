-- spreadedge functions: partition lifecycle and cleanup
-- pg_partman creates partitions ahead and drops them by retention (ops.run_partition_maintenance,
-- hourly by pg_cron, see schema/50_schedules.sql); these functions show where each partitioned
-- table stands, apply the deployment's premake and retention settings, move rows stranded in a
-- default partition into proper partitions, and clean up old rows: whole partitions detached and
-- dropped where every row of them may go, batched deletes otherwise (spreadedge cleanup). Ticks
-- go by whole UTC minutes and candles by whole UTC days (internal.cleanup_grain), so the candle
-- rollup never rebuilds a candle from part of what it held.
-- Orders, their events and trades get no pg_partman retention: dropping their partitions by age
-- alone would drop working orders and the fills of open positions; spreadedge cleanup orders
-- applies the rules of what may go.
-- The tables with no partitions that grew forever (notifications, sessions, pg_cron's runs) keep
-- rows by ops.row_retention (functions/63_ops_row_retention.sql): the maintenance deletes the
-- rows that ended before it, and cleanup takes them as targets too.

create or replace procedure ops.run_partition_maintenance()
    language plpgsql
as $$
-- pg_partman's maintenance (partitions made ahead, retention applied) of every table it manages,
-- each in a transaction of its own; a table whose maintenance fails is skipped, the others are
-- done, and then the call raises partition_maintenance_failed... as 55S12 naming each failed
-- table with its error, so the pg_cron job is marked failed and health's cron_jobs shows it.
-- why not partman.run_maintenance_proc: it stops at the first table that fails (a default
-- partition holding rows for the range of the next partition makes ATTACH fail), so every table
-- after it in part_config got no new partitions and ran out of them in turn
-- why TimeZone UTC: pg_partman computes partition bounds in the session TimeZone, so a session in
-- another zone (a server installed with the machine's zone serves pg_cron and the CLI in it) made
-- partitions that start at that zone's midnight, skip days and months and overlap. A procedure that
-- commits cannot carry SET; set_config(..., true) lasts until each table's commit, so the caller's
-- session keeps its own TimeZone.
-- Then the row retention of the tables that have no partitions (internal.apply_row_retention:
-- notifications, sessions and pg_cron runs that ended before ops.row_retention's age, in batches
-- of 10,000, a transaction each); a table whose delete fails is named in the same 55S12.
-- why the partition of now() first (internal.create_first_partition): pg_partman's maintenance
-- makes the partitions after the newest one, and on a table left with none (every partition
-- dropped by hand, or by cleanup before it kept the newest) it failed at every run ("Child table
-- given does not exist (<NULL>)"): the table took no row again (its default partition refuses
-- them) and nothing documented gave it partitions back. The partition of now() made through
-- pg_partman keeps its configuration consistent, and the maintenance then makes those ahead.
-- why every lock wait bounded (lock_timeout, half the deadlock_timeout, as migrate's): attaching
-- a partition takes an ACCESS EXCLUSIVE lock on the table's default partition, which every query
-- of the table that is not pruned to one partition holds a lock on (a fill's generic plan, a psql
-- user's select): behind a transaction left open in psql the maintenance waited for as long as it
-- stayed open, and every fill, placement and read of the table queued behind the maintenance's
-- waiting lock. A table that needs a new partition has those locks taken first
-- (internal.lock_for_maintenance), tried again after a pause while another session holds them
-- (5 attempts), then skipped for this run with its holders named (55S12 as any failure; the next
-- run tries again, and the partitions made ahead cover the time between).
declare
    v_table    text;
    v_failed   text[] := '{}';
    v_attempt  integer;
    v_error    text;
    v_attempts constant integer := 5;
begin
    for v_table in select c.parent_table from partman.part_config c
                   where not c.undo_in_progress and c.automatic_maintenance = 'on'
                   order by c.parent_table loop
        v_attempt := 1;
        loop
            perform pg_catalog.set_config('TimeZone', 'UTC', true);
            -- why wait for pg_partman's maintenance lock: partman.run_maintenance only tries it, and
            -- when another run held it (pg_cron's hourly one beside `spreadedge partitions maintain`)
            -- it returned with a notice, so both runs skipped the table and both reported success;
            -- held here for the table's transaction, partman's own try then succeeds (the lock is the
            -- session's) and the runs take turns table by table (before the lock_timeout: a run
            -- waits for the other's table, which is itself bounded)
            perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pg_partman run_maintenance'));
            perform pg_catalog.set_config('lock_timeout', internal.maintenance_lock_wait(), true);
            v_error := null;
            begin
                perform internal.lock_for_maintenance(internal.require_managed(v_table));
                perform internal.create_first_partition(internal.require_managed(v_table));
                perform partman.run_maintenance(p_parent_table => v_table, p_jobmon => false);
            exception
                when lock_not_available then
                    v_error := sqlerrm;
                when others then
                    -- why the first line: pg_partman re-raises an error with its CONTEXT and empty
                    -- DETAIL and HINT lines appended to the message, a dozen lines per table in the cron
                    -- job's status and health's cron_jobs; the first line is the error itself
                    v_failed := v_failed || format('%s: %s', v_table, split_part(sqlerrm, E'\n', 1));
            end;
            commit;
            exit when v_error is null;
            if v_attempt >= v_attempts then
                v_failed := v_failed || format('%s: %s (%s attempts)', v_table, v_error, v_attempts);
                exit;
            end if;
            perform pg_catalog.pg_sleep(1);
            v_attempt := v_attempt + 1;
        end loop;
    end loop;
    call internal.apply_row_retention(v_failed);
    if cardinality(v_failed) > 0 then
        raise exception 'partition maintenance failed for % of the tables: %', cardinality(v_failed),
            array_to_string(v_failed, '; ')
            using errcode = '55S12',
                  hint = 'spreadedge partitions status shows each table; rows in a default partition: spreadedge partitions repair.';
    end if;
end;
$$;
comment on procedure ops.run_partition_maintenance() is
    'pg_partman maintenance of every managed table, each in its own transaction and in UTC whatever the session TimeZone (a table left with no partition first gets the partition of now()), then the row retention of ops.row_retention (notifications, sessions and pg_cron runs that ended before it deleted in batches of 10,000): one table that fails does not stop the others; raises 55S12 naming the failed ones. Every lock wait is bounded (lock_timeout, half the deadlock_timeout), so no query of a table queues behind it: a table whose locks another session holds (a transaction left open) is tried 5 times, then reported with the holders named. Two runs at once take turns table by table (neither skips one). Hourly by pg_cron.';

create or replace function internal.maintenance_lock_wait()
    returns text
    stable
    language sql
as $$
    -- How long partition maintenance waits for a lock before it gives up (lock_timeout): half the
    -- deadlock_timeout, in milliseconds, as spreadedge migrate waits for the tables functions/ locks
    -- why that short: every query of the table queues behind a lock the maintenance waits for
    select greatest(1, (extract(epoch from pg_catalog.current_setting('deadlock_timeout')::interval) * 500)::integer)::text;
$$;
comment on function internal.maintenance_lock_wait() is
    'The lock_timeout of partition maintenance: half the deadlock_timeout, in milliseconds (as text).';

create or replace function internal.lock_for_maintenance(p_config partman.part_config)
    returns void
    volatile
    -- why: the interval is added on UTC's clock, as pg_partman lays out its partitions here
    set timezone = 'UTC'
    language plpgsql
as $$
-- Takes the locks that pg_partman's maintenance of a table needs: to attach a partition (SHARE
-- UPDATE EXCLUSIVE on the table, ACCESS EXCLUSIVE on its default partition) when it will make
-- one (no partition, or fewer than premake ahead of the current one), and to detach one (ACCESS
-- EXCLUSIVE on the table) when its oldest partition is past the retention. Within the caller's
-- lock_timeout: lock_not_available (55P03) naming the table and the sessions holding the lock
-- otherwise. Nothing is locked when nothing is due (an hourly run takes no strong lock).
-- why here rather than by lock_timeout alone: pg_partman re-raises every error as P0001, so a
-- lock that was not granted could not be told from a failure worth reporting, nor tried again.
declare
    v_interval interval := p_config.partition_interval::interval;
    v_newest   timestamptz := internal.newest_partition_end(p_config);
    v_default  regclass := to_regclass(p_config.parent_table || '_default');
    v_locked   regclass := p_config.parent_table::regclass;
    v_create   boolean := v_newest is null or v_newest <= now() + p_config.premake * v_interval;
    v_drop     boolean := lower(internal.partition_times(v_locked)) + v_interval
                          < now() - p_config.retention::interval;
    v_why      text := format('dropping a partition of %s past its retention', p_config.parent_table);
begin
    if coalesce(v_drop, false) then
        execute format('lock table only %s in access exclusive mode', v_locked);
    end if;
    if not v_create then
        return;
    end if;
    v_why := format('a new partition of %s', p_config.parent_table);
    execute format('lock table only %s in share update exclusive mode', v_locked);
    if v_default is not null then
        v_locked := v_default;
        execute format('lock table only %s in access exclusive mode', v_locked);
    end if;
exception when lock_not_available then
    raise exception '% needs a lock on %, which other sessions hold: %', v_why,
        v_locked, coalesce(internal.lock_holders(v_locked), 'none left')
        using errcode = '55P03',
              hint = 'End or commit the transactions named (select pg_terminate_backend(pid) ends one); maintenance tries again at its next run.';
end;
$$;
comment on function internal.lock_for_maintenance(partman.part_config) is
    'Locks a pg_partman table (SHARE UPDATE EXCLUSIVE) and its default partition (ACCESS EXCLUSIVE) when maintenance will make a partition, the table (ACCESS EXCLUSIVE) when it will drop one past retention; within lock_timeout, else 55P03 naming the sessions holding them.';

create or replace function ops.partition_status()
    returns table (parent_table text, registered boolean, control text, partition_interval text,
                   premake integer, retention text, partitions bigint, oldest_start timestamptz,
                   newest_end timestamptz, default_rows bigint)
    stable
    -- why: pg_partman's show_partition_info reads a partition's start from the catalog but adds the
    -- interval in the session TimeZone; in a New York session the partition of March 2024 (UTC)
    -- ended on 2024-03-29 23:00Z
    set timezone = 'UTC'
    language sql
as $$
    -- one row per partitioned table of the project's schemas; default_rows is an exact count
    select format('%I.%I', n.nspname, c.relname), pc.parent_table is not null, pc.control, pc.partition_interval,
           pc.premake, pc.retention,
           -- why not the default partition: partitions counts what partman.show_partitions lists
           -- (the ranges oldest_start and newest_end span); the default's rows are default_rows.
           -- Counted, a table showed one partition more than pg_partman lists (audit.log 9 for 8)
           (select count(*) from pg_catalog.pg_inherits i where i.inhparent = c.oid and i.inhrelid <> pt.partdefid),
           oldest.child_start_time, newest.child_end_time,
           coalesce((select d.count from partman.check_default(p_exact_count := true) d
                     where d.default_table = format('%s.%s_default', n.nspname, c.relname)), 0)
    from pg_catalog.pg_partitioned_table pt
    join pg_catalog.pg_class c on c.oid = pt.partrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    left join partman.part_config pc on pc.parent_table = n.nspname || '.' || c.relname
    -- why "where pc.parent_table is not null": pg_partman's functions raise for a table it does
    -- not manage, and this is the report that shows such a table (registered false); the
    -- condition is checked once, before the function runs
    left join lateral (select info.child_start_time
                       from partman.show_partitions(pc.parent_table, 'ASC') sp
                       cross join lateral partman.show_partition_info(sp.partition_schemaname || '.' || sp.partition_tablename,
                                                                      pc.partition_interval, pc.parent_table) info
                       where pc.parent_table is not null
                       limit 1) oldest on true
    left join lateral (select info.child_end_time
                       from partman.show_partitions(pc.parent_table, 'DESC') sp
                       cross join lateral partman.show_partition_info(sp.partition_schemaname || '.' || sp.partition_tablename,
                                                                      pc.partition_interval, pc.parent_table) info
                       where pc.parent_table is not null
                       limit 1) newest on true
    where not c.relispartition
      and n.nspname in ('ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops')
    order by 1;
$$;
comment on function ops.partition_status() is
    'Each partitioned table: registered with pg_partman, control column, interval, premake, retention, partitions (its range partitions, as partman.show_partitions lists them: the default partition not counted), oldest start and newest end (UTC bounds whatever the session TimeZone), rows in its default partition.';

create or replace function internal.require_managed(p_parent_table text)
    returns partman.part_config
    stable
    language plpgsql
as $$
-- the pg_partman configuration of a table, or 55S11 when pg_partman does not manage it
declare
    v_config partman.part_config;
begin
    select * into v_config from partman.part_config c where c.parent_table = p_parent_table;
    if not found then
        raise exception 'table % is not a partitioned table registered with pg_partman', coalesce(p_parent_table, 'null')
            using errcode = '55S11', hint = 'See select * from ops.partition_status().';
    end if;
    return v_config;
end;
$$;
comment on function internal.require_managed(text) is
    'The pg_partman configuration of a partitioned table; 55S11 when it has none.';

create or replace function ops.configure_partitioning(parent_table text, premake integer, retention interval)
    returns void
    volatile
    language plpgsql
as $$
-- premake: partitions kept created ahead; retention: partitions older than this are dropped by the
-- next maintenance (null keeps everything). spreadedge partitions maintain applies the settings.
-- why infinite_time_partitions: partitions are made ahead by the calendar, not only while rows
-- arrive, so a table that is quiet for a while still has its next partition (health checks it)
-- why no retention for orders, order events and trades: pg_partman drops a partition by its age
-- alone, with the working orders, fills of open positions and spread legs in it (and trades are
-- never deleted); old orders go with spreadedge cleanup orders, which keeps those
begin
    perform internal.require_managed(parent_table);
    if premake is null or premake < 1 then
        raise exception 'premake must be at least 1, got %', coalesce(premake::text, 'null') using errcode = '22S09';
    end if;
    -- why: pg_partman drops the partitions that ended before now() - retention; with '-1 day' that
    -- was today's partition and every row of it at the next maintenance (the settings take only
    -- positive ages, the function took anything)
    if retention <= interval '0' then
        raise exception 'retention must be a positive interval, got %', retention
            using errcode = '22S09', hint = 'Give an age such as 90 days or 24 months, or null to keep everything.';
    end if;
    -- why no negative part: pg_partman subtracts the retention from now() part by part, so on
    -- 1 March '1 mon -29 days' (a day, compared) reached forward to 2 March, and the next
    -- maintenance dropped today's partition with its rows; why within range: one reaching before
    -- 4713 BC ('1000000 years') failed every maintenance of the table with "timestamp out of range"
    if retention is not null then
        perform internal.check_age(retention, 'retention',
                                   'Give an age such as 90 days or 24 months, or null to keep everything.');
    end if;
    if retention is not null and parent_table in ('trading.orders', 'trading.order_events', 'trading.trades') then
        raise exception 'table % takes no retention (got %): dropping its partitions by age would drop open orders and the fills of open positions',
            parent_table, retention
            using errcode = '22S09',
                  hint = 'Remove old orders with spreadedge cleanup orders --older-than 30d, which keeps what is still needed.';
    end if;
    update partman.part_config c
    set premake = configure_partitioning.premake,
        retention = configure_partitioning.retention::text,
        retention_keep_table = false,
        infinite_time_partitions = true
    where c.parent_table = configure_partitioning.parent_table
      and (c.premake, c.retention, c.infinite_time_partitions)
          is distinct from (configure_partitioning.premake, configure_partitioning.retention::text, true);
end;
$$;
comment on function ops.configure_partitioning(text, integer, interval) is
    'Sets a pg_partman table''s premake and retention (a positive interval with no negative part such as 1 mon -29 days, null keeps everything; orders, order events and trades take none: 22S09); the next maintenance applies them.';

create or replace function ops.repair_default_partitions()
    returns table (parent_table text, rows_moved bigint)
    volatile
    set session_replication_role = replica
    -- why: pg_partman computes partition bounds in the session TimeZone (see run_partition_maintenance)
    set timezone = 'UTC'
    language plpgsql
as $$
-- Moves every row of every default partition into its proper partition (created when missing)
-- with partman.partition_data_time. Rows only change place, so the triggers (audit, append-only,
-- foreign keys) stay silent: session_replication_role = replica, which needs a superuser.
-- why the staging table made here: pg_partman stages the rows in a temporary table
-- partman_temp_data_storage that it creates only if it does not exist, like the default
-- partition but without its generated columns' expressions, and drops at commit. Made here for
-- each table, it has that table's columns (pg_partman's own, kept for the next table of the same
-- transaction, has the first one's) and computes a generated column
-- (trading.trades.realized_pnl) that pg_partman is told to leave out, as a generated column
-- refuses a value.
-- why the partitions between the newest one and a later row are made too: pg_partman makes new
-- partitions after the newest one only, so a lone partition months ahead (a mistyped time) would
-- leave the days in between without partitions, and their rows refused. A row later than the
-- partition after those pg_partman makes ahead (premake from now, or the newest) is refused
-- (22S09) before anything moves: its time is most likely wrong.
-- why a table with no partition first gets the partition of now(), its rows moved in:
-- partition_data_time counts from the newest partition and failed on such a table with
-- pg_partman's raw P0001 ("Child table given does not exist"), so the table (left without
-- partitions by hand or by an old cleanup) could not be repaired, nor maintained while a row of
-- now() sat in its default partition. The rows' own partitions are then made as for any table; made
-- from the partition of a lone old row instead, the next maintenance would have made every
-- partition from it up to now.
declare
    v_default   regclass;
    v_parent    text;
    v_config    partman.part_config;
    v_generated text[];
    v_moved     bigint;
    v_step      bigint;
    v_newest    timestamptz;
    v_latest    timestamptz;
    v_horizon   timestamptz;
    v_columns   text;
    v_start     timestamptz;
begin
    for v_default in select d.default_table::regclass from partman.check_default(p_exact_count := false) d
                     order by d.default_table loop
        v_parent := regexp_replace(v_default::text, '_default$', '');
        v_config := internal.require_managed(v_parent);
        v_newest := internal.newest_partition_end(v_config);
        execute format('select max(%I) from %s', v_config.control, v_default) into v_latest;
        v_horizon := greatest(v_newest, now() + v_config.premake * v_config.partition_interval::interval)
                     + v_config.partition_interval::interval;
        if v_latest >= v_horizon then
            raise exception '% holds a row dated %: repair makes partitions up to % only', v_default, v_latest, v_horizon
                using errcode = '22S09',
                      hint = format('A partition made for it would leave those before it missing. Check its time; '
                                    'delete it (delete from %s where %I >= %L), then repair again.',
                                    v_default, v_config.control, v_horizon);
        end if;
    end loop;
    for v_default in select d.default_table::regclass from partman.check_default(p_exact_count := false) d
                     order by d.default_table loop
        v_parent := regexp_replace(v_default::text, '_default$', '');
        v_config := internal.require_managed(v_parent);
        v_newest := internal.newest_partition_end(v_config);
        execute format('select max(%I) from %s', v_config.control, v_default) into v_latest;
        v_generated := array(select a.attname::text from pg_catalog.pg_attribute a
                             where a.attrelid = v_default and a.attnum > 0 and not a.attisdropped
                               and a.attgenerated <> '');
        if to_regclass('pg_temp.partman_temp_data_storage') is not null then
            drop table pg_temp.partman_temp_data_storage;
        end if;
        execute format('create temporary table partman_temp_data_storage (like %s including indexes including generated)'
                       ' on commit drop', v_default);
        v_moved := 0;
        -- a table with no partition first gets the partition of now(), with the default's rows of
        -- its range moved in (see the why above)
        if v_newest is null then
            v_columns := (select string_agg(quote_ident(a.attname), ', ' order by a.attnum) from pg_catalog.pg_attribute a
                          where a.attrelid = v_default and a.attnum > 0 and not a.attisdropped and a.attgenerated = '');
            v_start := internal.partition_start(v_config, now());
            execute format('with moved as (delete from %s where %I >= $1 and %I < $2 returning *)'
                           ' insert into pg_temp.partman_temp_data_storage (%s) select %4$s from moved',
                           v_default, v_config.control, v_config.control, v_columns)
                using v_start, v_start + v_config.partition_interval::interval;
            perform internal.create_first_partition(v_config);
            execute format('with moved as (delete from pg_temp.partman_temp_data_storage returning *)'
                           ' insert into %s (%s) select %2$s from moved', v_parent, v_columns);
            get diagnostics v_moved = row_count;
            v_newest := internal.newest_partition_end(v_config);
        end if;
        loop
            v_step := partman.partition_data_time(p_parent_table => v_parent, p_batch_count => 1000, p_analyze => false,
                                                  p_ignored_columns => nullif(v_generated, '{}'));
            exit when coalesce(v_step, 0) = 0;
            v_moved := v_moved + v_step;
        end loop;
        -- the partitions between the newest one and the latest row moved, each starting where the
        -- one before ends, as pg_partman's maintenance makes them (those that exist are kept)
        if v_newest is not null and v_latest >= v_newest then
            perform partman.create_partition_time(
                v_parent, array(select generate_series(v_newest, v_latest, v_config.partition_interval::interval)), false);
        end if;
        parent_table := v_parent;
        rows_moved := v_moved;
        return next;
    end loop;
end;
$$;
comment on function ops.repair_default_partitions() is
    'Moves the rows of every non-empty default partition into proper partitions (creating them in UTC whatever the session TimeZone, and any missing between the newest and them; a table with no partition first gets the partition of now()); a row later than the partitions made ahead is refused (22S09) before anything moves. One row per table repaired.';

create or replace function internal.newest_partition_end(p_config partman.part_config)
    returns timestamptz
    stable
    -- why: show_partition_info adds the interval in the session TimeZone (see ops.partition_status)
    set timezone = 'UTC'
    language sql
as $$
    -- the end of the newest partition of a pg_partman table (null when it has none)
    select info.child_end_time
    from partman.show_partitions(p_config.parent_table, 'DESC') sp
    cross join lateral partman.show_partition_info(sp.partition_schemaname || '.' || sp.partition_tablename,
                                                   p_config.partition_interval, p_config.parent_table) info
    limit 1;
$$;
comment on function internal.newest_partition_end(partman.part_config) is
    'The end of the newest partition of a pg_partman table; null when it has none.';

create or replace function internal.partition_start(p_config partman.part_config, p_time timestamptz)
    returns timestamptz
    stable
    -- why: the interval's text compared below is in this style (iso_8601 would give P1M)
    set intervalstyle = 'postgres'
    language plpgsql
as $$
-- The UTC start of the partition of a pg_partman table that holds p_time, laid out as
-- partman.create_parent lays its partitions out: at the start of the UTC day, week (Monday),
-- month, quarter or year. It needs no partition to count from (show_partition_name does).
-- why the text of the interval: intervals compare by length, so '30 days' = '1 mon' and would
-- have been taken for a month
declare
    v_interval text := p_config.partition_interval::interval::text;
    v_unit     text := case v_interval when '1 day' then 'day' when '7 days' then 'week' when '1 mon' then 'month'
                                       when '3 mons' then 'quarter' when '1 year' then 'year' end;
begin
    if v_unit is null then
        raise exception 'the partitions of % are % long: their start is known for a day, week, month, quarter or year only',
            p_config.parent_table, v_interval
            using errcode = '55S12',
                  hint = format('Create the partition of the time with partman.create_partition_time(%L, array[<its start>]).',
                                p_config.parent_table);
    end if;
    return date_trunc(v_unit, p_time, 'UTC');
end;
$$;
comment on function internal.partition_start(partman.part_config, timestamptz) is
    'The UTC start of the partition of a pg_partman table (daily, weekly, monthly, quarterly or yearly) holding a time; 55S12 for another interval.';

create or replace function internal.create_first_partition(p_config partman.part_config)
    returns timestamptz
    volatile
    -- why: create_partition_time adds the interval and names the partition in the session
    -- TimeZone (see ops.run_partition_maintenance)
    set timezone = 'UTC'
    language plpgsql
as $$
-- A table with no partition gets the partition of now() (UTC bounds), made with
-- partman.create_partition_time so pg_partman's configuration stays consistent; returns its start
-- (null, nothing done, when the table has a partition). Its default partition must hold no row
-- of that partition's range (ATTACH would fail): 55S12 then, with the repair to run, which moves
-- them first (ops.repair_default_partitions).
-- why: pg_partman's maintenance and partition_data_time count from the newest partition and fail
-- on a table with none ("Child table given does not exist (<NULL>)")
declare
    v_start   timestamptz;
    v_default text := p_config.parent_table || '_default';
    v_rows    boolean;
begin
    if exists (select from partman.show_partitions(p_config.parent_table)) then
        return null;
    end if;
    v_start := internal.partition_start(p_config, now());
    if to_regclass(v_default) is not null then
        execute format('select exists (select from %s where %I >= $1 and %I < $2)', v_default, p_config.control, p_config.control)
            into v_rows using v_start, v_start + p_config.partition_interval::interval;
        if v_rows then
            raise exception '% has no partition, and its default partition holds rows from % to %: the partition of now() cannot be attached',
                p_config.parent_table, v_start, v_start + p_config.partition_interval::interval
                using errcode = '55S12',
                      hint = 'Run spreadedge partitions repair (ops.repair_default_partitions()), which moves them into their partitions, then spreadedge partitions maintain.';
        end if;
    end if;
    perform partman.create_partition_time(p_config.parent_table, array[v_start], false);
    return v_start;
end;
$$;
comment on function internal.create_first_partition(partman.part_config) is
    'Gives a pg_partman table with no partition the partition of now() (UTC bounds, through partman.create_partition_time) and returns its start; null when it has one; 55S12 when its default partition holds rows of that range (repair first).';

create or replace function internal.cleanup_table(p_target text)
    returns partman.part_config
    stable
    language plpgsql
as $$
-- the table a cleanup target names, which must be managed by pg_partman (its control column is
-- the time a row is judged old by)
declare
    v_table text := case p_target when 'orders' then 'trading.orders'
                                  when 'quotes' then 'market.quotes'
                                  when 'ticks' then 'market.ticks'
                                  when 'candles' then 'market.candles'
                                  when 'indicators' then 'market.technical_indicators'
                                  when 'metrics' then 'monitor.metrics' end;
begin
    -- why: ops.cleanup_drop_partition is the one caller that reaches here with such a target
    if exists (select from internal.row_retention_rules() r where r.target = p_target) then
        raise exception 'cannot drop partitions of %: its table has none, its rows are deleted in batches', p_target
            using errcode = '22S21', hint = 'Call ops.cleanup_delete_batch.';
    end if;
    if v_table is null or to_regclass(v_table) is null then
        raise exception 'cannot clean up %: targets are orders, quotes, ticks, candles, indicators and metrics (when monitor.metrics exists), and notifications, sessions and cron_runs (rows deleted in batches, no partitions)',
            coalesce(p_target, 'null')
            using errcode = '22S21';
    end if;
    return internal.require_managed(v_table);
end;
$$;
comment on function internal.cleanup_table(text) is
    'The pg_partman configuration of the table a cleanup target names (orders, quotes, ticks, candles, indicators, metrics); 22S21 for another target, or notifications, sessions and cron_runs, which have no partitions.';

create or replace function internal.removable_orders(p_cutoff timestamptz)
    returns table (order_id bigint, created_at timestamptz)
    stable
    language sql
as $$
    -- Orders cleanup may remove: finished (filled, cancelled, rejected, expired), created and last
    -- changed before the cutoff, not a leg of a spread trade, and with no fill in a position that
    -- is still open (positions still depend on those).
    select o.order_id, o.created_at
    from trading.orders o
    where o.created_at < p_cutoff and o.updated_at < p_cutoff
      and o.status in ('filled', 'cancelled', 'rejected', 'expired')
      and not exists (select from trading.spread_trades s where o.order_id in (s.buy_order_id, s.sell_order_id))
      and not (o.filled_quantity > 0
               and exists (select from trading.positions p
                           where p.strategy_id = o.strategy_id and p.instrument_id = o.instrument_id and p.quantity <> 0));
$$;
comment on function internal.removable_orders(timestamptz) is
    'Orders cleanup may remove: finished before the cutoff, no spread-trade leg, no fill of a still-open position.';

create or replace function internal.cleanup_grain(p_target text)
    returns text
    immutable
    language sql
as $$
    -- The unit a cleanup target's cutoff is rounded down to (date_trunc's, in UTC): a minute for
    -- ticks, a day for candles, none (null) for the other targets. A cleanup removes whole units
    -- or nothing of one: what market.rollup_candles builds from the rows kept is then what it
    -- built before.
    -- why ticks by the minute: a 1m candle is rebuilt from all the ticks of its minute left; cut
    -- at 12:00:30, the minute kept its trade of 12:00:50 only, and a rollup whose window reached
    -- back to it made its 1m candle (and every longer one of it) 1 trade at 200 instead of 2
    -- opening at 100. A minute with no tick left keeps its candle (nothing rebuilds it).
    -- why candles by the day, the longest interval: a longer candle is rebuilt from all the
    -- shorter ones of it left, and a candle goes by its open time. Cut at noon, a day lost its 1d
    -- and its first three 4h candles with its morning's 1m..1h ones, and kept its afternoon's:
    -- a wide rollup built its 1d candle back from the afternoon alone (and compute_indicators'
    -- VWAP since the day's start from half a day). Cut at the start of a day, no candle is left
    -- without the shorter ones it was built from, nor a shorter one to rebuild a partial longer one.
    -- why no other target: quotes feed no stored aggregate (latest_prices is kept at insert, the
    -- spread history takes each bucket's newest quote, which a cutoff never removes before an
    -- older one), indicators are stored per candle and never built from each other, and
    -- metrics, orders and the rows with row retention are judged one by one
    select case p_target when 'ticks' then 'minute' when 'candles' then 'day' end
$$;
comment on function internal.cleanup_grain(text) is
    'The unit a cleanup target''s cutoff is rounded down to, in UTC: minute for ticks, day for candles (so a rollup rebuilds no candle from part of what it held), null for the other targets.';

drop function if exists ops.cleanup_cutoff(interval);
create or replace function ops.cleanup_cutoff(older_than interval, target text default null)
    returns timestamptz
    stable
    -- why: now() - '30 days' counts calendar days in the session TimeZone; across a daylight
    -- saving change a New York session's cutoff was 29 days 23 hours back in spring, and the
    -- cleanup removed rows an hour younger than --older-than 30d (cleanup works in UTC)
    set timezone = 'UTC'
    language plpgsql
as $$
-- The time rows must be older than to go in a cleanup: now() - older_than, which must be a
-- positive interval that does not reach back before the earliest time PostgreSQL stores, rounded
-- down to the start of its UTC minute for target ticks and of its UTC day for target candles
-- (internal.cleanup_grain: whole minutes of ticks and whole days of candles go or stay, so the
-- candle rollup never rebuilds a candle from part of it); the other targets (or none) as is.
-- spreadedge cleanup takes it once and passes it to every call of its run (cutoff), so the plan
-- it shows and the partitions and batches it removes are judged by the same time, and rows that
-- grow old while it runs (a live tick stream) do not keep its batches going.
-- why no negative part: '1 mon -29 days' compares as a positive day but is subtracted part by
-- part, so on 1 March 2027 now() - it is 2 March: a cutoff in the future, and the cleanup removed
-- every finished row, today's too.
declare
    v_cutoff timestamptz := now() - internal.check_age(older_than, 'older_than', 'Give an age such as 30 days or 12 hours.');
begin
    return coalesce(date_trunc(internal.cleanup_grain(target), v_cutoff, 'UTC'), v_cutoff);
end;
$$;
comment on function ops.cleanup_cutoff(interval, text) is
    'The cutoff of a cleanup: now() - older_than, days counted in UTC whatever the session TimeZone (a positive interval with no negative part such as 1 mon -29 days, 22S09 otherwise), rounded down to its UTC minute for target ticks and its UTC day for target candles (whole minutes of ticks, whole days of candles stay); spreadedge cleanup passes it to each call of a run.';

drop function if exists internal.cleanup_cutoff(interval, timestamptz);
create or replace function internal.cleanup_cutoff(p_older_than interval, p_cutoff timestamptz, p_target text)
    returns timestamptz
    stable
    language plpgsql
as $$
-- the cutoff a cleanup function works with: the caller's fixed cutoff, which may not be later
-- than now() - older_than (it would remove younger rows than asked), else now() - older_than;
-- either rounded down to the target's unit (internal.cleanup_grain: the minute of ticks, the day
-- of candles), so a caller's own cutoff of 12:00:30 keeps the whole minute or day too
declare
    v_latest timestamptz := ops.cleanup_cutoff(p_older_than);
    v_cutoff timestamptz := coalesce(p_cutoff, v_latest);
begin
    if p_cutoff > v_latest then
        raise exception 'cutoff % is later than now() - older_than (%): it would remove rows younger than %',
            p_cutoff, v_latest, p_older_than
            using errcode = '22S09', hint = 'Take the cutoff from ops.cleanup_cutoff(older_than, target).';
    end if;
    return coalesce(date_trunc(internal.cleanup_grain(p_target), v_cutoff, 'UTC'), v_cutoff);
end;
$$;
comment on function internal.cleanup_cutoff(interval, timestamptz, text) is
    'The cutoff of a cleanup call: the caller''s (never later than now() - older_than, 22S09) or now() - older_than, rounded down to the target''s UTC minute (ticks) or day (candles).';

drop function if exists ops.cleanup_plan(text, interval);
create or replace function ops.cleanup_plan(target text, older_than interval, cutoff timestamptz default null)
    returns table (action text, object_name text, row_count bigint)
    stable
    language plpgsql
as $$
-- What spreadedge cleanup TARGET --older-than would do (its --dry-run): partitions to detach and
-- drop whole ('drop partition'), rows to delete in batches ('delete rows'), and for orders the
-- old rows kept because they are open or something depends on them ('keep'). cutoff: the run's
-- fixed cutoff (ops.cleanup_cutoff), default now() - older_than; for ticks rounded down to its
-- UTC minute, for candles to its UTC day (internal.cleanup_grain: whole minutes and days stay).
-- notifications, sessions, cron_runs: one 'delete rows' of their table, the rows that ended
-- before the cutoff (internal.row_retention_rules); those that have not ended are not listed.
declare
    v_table  text := internal.row_retention_table(target);
    v_config partman.part_config := case when v_table is null then internal.cleanup_table(target) end;
    v_cutoff timestamptz := internal.cleanup_cutoff(older_than, cutoff, target);
    v_part   record;
begin
    if v_table is not null then
        action := 'delete rows';
        object_name := v_table;
        row_count := internal.count_ended_rows(v_table, v_cutoff);
        if row_count > 0 then
            return next;
        end if;
        return;
    end if;
    for v_part in select * from internal.cleanup_partitions(v_config, v_cutoff) loop
        action := case when v_part.whole then 'drop partition' else 'delete rows' end;
        object_name := v_part.partition_name;
        row_count := v_part.old_rows - v_part.kept_rows;
        if row_count > 0 or v_part.whole then
            return next;
        end if;
        if v_part.kept_rows > 0 then
            action := 'keep';
            row_count := v_part.kept_rows;
            return next;
        end if;
    end loop;
end;
$$;
comment on function ops.cleanup_plan(text, interval, timestamptz) is
    'The dry run of a cleanup: partitions to drop whole, rows to delete in batches, old orders kept (open or depended on); notifications, sessions, cron_runs: the rows that ended before the cutoff; cutoff: a run''s fixed one (ops.cleanup_cutoff), for ticks rounded down to its UTC minute and for candles to its UTC day.';

create or replace function internal.cleanup_partitions(p_config partman.part_config, p_cutoff timestamptz)
    returns table (partition_name text, whole boolean, old_rows bigint, kept_rows bigint)
    stable
    -- why: show_partition_info adds the partition interval in the session TimeZone: in a New York
    -- session (PGTZ) the candles partition of March 2024 ended on March 29 23:00Z, so a cutoff of
    -- March 30 took it for old as a whole, and the cleanup dropped its rows of March 30 and 31,
    -- younger than the cutoff
    set timezone = 'UTC'
    language plpgsql
as $$
-- Each partition of the table holding rows older than the cutoff: whole = it ends at or before
-- the cutoff and every row of it may go; old_rows older than the cutoff, kept_rows of them kept.
declare
    v_part   record;
    v_newest text;
begin
    -- why the newest partition is never dropped whole: pg_partman's maintenance makes the next
    -- partitions after the newest one and fails on a table with none ("Child table given does not
    -- exist"), as does repair. With maintenance stopped long enough for every partition to end
    -- before the cutoff, cleanup ticks dropped them all, and the table could take no rows and get
    -- no partitions again; its old rows are deleted instead, and the empty partition stays
    select format('%I.%I', sp.partition_schemaname, sp.partition_tablename) into v_newest
    from partman.show_partitions(p_config.parent_table, 'DESC') sp
    limit 1;
    for v_part in
        select format('%I.%I', sp.partition_schemaname, sp.partition_tablename) as name, info.child_end_time
        from partman.show_partitions(p_config.parent_table, 'ASC', p_include_default := true) sp
        left join lateral partman.show_partition_info(sp.partition_schemaname || '.' || sp.partition_tablename,
                                                      p_config.partition_interval, p_config.parent_table) info
               on sp.partition_tablename !~ '_default$'
        where sp.partition_tablename ~ '_default$' or info.child_start_time < p_cutoff
    loop
        partition_name := v_part.name;
        execute format('select count(*) from %s where %I < $1', v_part.name, p_config.control)
            into old_rows using p_cutoff;
        kept_rows := 0;
        if p_config.parent_table = 'trading.orders' then
            execute format('select count(*) from %s o where o.created_at < $1
                            and (o.order_id, o.created_at) not in (select * from internal.removable_orders($1))', v_part.name)
                into kept_rows using p_cutoff;
        end if;
        whole := v_part.child_end_time is not null and v_part.child_end_time <= p_cutoff and kept_rows = 0
                 and v_part.name is distinct from v_newest;
        -- an empty partition holds nothing to clean up: it stays, so late rows still have a home
        continue when old_rows = 0;
        return next;
    end loop;
end;
$$;
comment on function internal.cleanup_partitions(partman.part_config, timestamptz) is
    'The partitions of a table holding rows older than the cutoff: whether all of it may go (its UTC end at or before the cutoff, whatever the session TimeZone, and not the newest partition, which pg_partman needs), old rows, rows kept.';

create or replace function internal.delete_removable_orders(p_cutoff timestamptz, p_from timestamptz,
                                                            p_to timestamptz, p_limit bigint)
    returns bigint
    volatile
    language plpgsql
as $$
-- Deletes up to p_limit (null: all) of the orders internal.removable_orders gives for the cutoff
-- and created in [p_from, p_to), with their events, and the keys nothing else refers to; returns
-- the orders deleted. Through trading.orders, so its audit trigger writes a DELETE row for each.
-- Keys stay while a trade or a risk event refers to them: trades are never deleted, and a risk
-- event keeps the id of the order it rejected (monitor.risk_events.order_id).
-- why three statements: the batch is read from one snapshot, and a fill committed while the
-- cleanup waited for a lock could change what may go:
-- - a late fill of a batch order (record_fill locks the order row) changed the order: locking
--   the batch's orders reads each as the fill left it, and "updated_at < p_cutoff" keeps it (it
--   was deleted with its fill just recorded, and its key's delete failed the cleanup with a
--   foreign-key error, 23503, on the fill's new event);
-- - a fill of another order reopened a position the batch's filled orders belong to: deleted from
--   the first snapshot, the orders of a position open again went, against the rule. The positions
--   are locked (FOR SHARE, after the orders: record_fill takes an order, then its position, so the
--   two never wait for each other crosswise) and the delete, a statement of its own, reads them as
--   the last fill left them.
declare
    v_orders  bigint[];
    v_created timestamptz[];
    v_count   bigint;
begin
    select coalesce(array_agg(o.order_id), '{}'), coalesce(array_agg(o.created_at), '{}')
    into v_orders, v_created
    from (select o.order_id, o.created_at
          from trading.orders o
          join (select r.order_id, r.created_at from internal.removable_orders(p_cutoff) r
                where r.created_at >= p_from and r.created_at < p_to
                limit p_limit) b on o.order_id = b.order_id and o.created_at = b.created_at
          where o.updated_at < p_cutoff
          for update of o) o;
    if cardinality(v_orders) = 0 then
        return 0;
    end if;
    perform
    from trading.positions p
    where (p.strategy_id, p.instrument_id) in
          (select o.strategy_id, o.instrument_id
           from unnest(v_orders, v_created) b(order_id, created_at)
           join trading.orders o on o.order_id = b.order_id and o.created_at = b.created_at
           where o.filled_quantity > 0)
    for share of p;
    -- One statement: the keys' foreign-key checks run at its end, after the orders and events are gone.
    with orders as (
        delete from trading.orders o
        using unnest(v_orders, v_created) b(order_id, created_at)
        where o.order_id = b.order_id and o.created_at = b.created_at
          and not (o.filled_quantity > 0
                   and exists (select from trading.positions p
                               where p.strategy_id = o.strategy_id and p.instrument_id = o.instrument_id
                                 and p.quantity <> 0))
        returning o.order_id
    ), events as (
        delete from trading.order_events e using orders o where e.order_id = o.order_id
    ), keys as (
        delete from trading.order_keys k using orders o
        where k.order_id = o.order_id
          and not exists (select from trading.trades t where t.order_id = k.order_id)
          and not exists (select from monitor.risk_events r where r.order_id = k.order_id)
    )
    select count(*) into v_count from orders;
    return v_count;
end;
$$;
comment on function internal.delete_removable_orders(timestamptz, timestamptz, timestamptz, bigint) is
    'Deletes removable orders created in a time range (through trading.orders: audited), their events, and their keys unless a trade or risk event refers to them; the batch''s orders and their positions locked first, so a fill committed meanwhile is seen; returns the orders deleted.';

drop function if exists ops.cleanup_drop_partition(text, interval, text);
create or replace function ops.cleanup_drop_partition(target text, older_than interval, partition_name text,
                                                      cutoff timestamptz default null)
    returns bigint
    volatile
    -- why: the range of an orders partition from show_partition_info, which adds the interval in
    -- the session TimeZone (see internal.cleanup_partitions)
    set timezone = 'UTC'
    language plpgsql
as $$
-- Detaches and drops one partition of the target's table if (checked again, now) all of it may go;
-- returns the rows it held (0 and nothing done when it may no longer go whole). cutoff: the run's
-- fixed cutoff (ops.cleanup_cutoff), default now() - older_than; for ticks rounded down to its
-- UTC minute, for candles to its UTC day (internal.cleanup_grain: whole minutes and days stay).
-- For orders, its rows are first deleted through trading.orders (internal.delete_removable_orders:
-- events, keys no trade or risk event refers to), then the empty partition is detached and dropped.
-- why delete before dropping: a dropped partition's rows leave no trace in audit.log, and
-- audit.history would show those orders as never deleted; deleting through the parent writes the
-- same DELETE rows as the batch path. It costs a row delete per order, about what its audit row
-- costs anyway; dropping the partition still bounds the partitions every fill plans over.
declare
    v_config partman.part_config := internal.cleanup_table(target);
    v_cutoff timestamptz := internal.cleanup_cutoff(older_than, cutoff, target);
    v_part   record;
    v_range  record;
    v_rows   bigint;
    v_left   boolean;
begin
    select * into v_part from internal.cleanup_partitions(v_config, v_cutoff) p
    where p.partition_name = cleanup_drop_partition.partition_name and p.whole;
    if not found then
        return 0;
    end if;
    v_rows := v_part.old_rows;
    if v_config.parent_table = 'trading.orders' then
        select i.child_start_time, i.child_end_time into v_range
        from partman.show_partition_info(v_part.partition_name, v_config.partition_interval, v_config.parent_table) i;
        v_rows := internal.delete_removable_orders(v_cutoff, v_range.child_start_time, v_range.child_end_time, null);
        -- the lock the detach takes anyway, taken now: no order can arrive in the partition after
        -- the check below; one that did (placed back-dated meanwhile) keeps the partition
        lock table only trading.orders in access exclusive mode;
        execute format('select exists (select from %s)', v_part.partition_name) into v_left;
        if v_left then
            return v_rows;
        end if;
    end if;
    execute format('alter table %s detach partition %s', v_config.parent_table, v_part.partition_name);
    execute format('drop table %s', v_part.partition_name);
    return v_rows;
end;
$$;
comment on function ops.cleanup_drop_partition(text, interval, text, timestamptz) is
    'Detaches and drops a partition of the cleanup target''s table when all of it may go (orders: deleted through the parent first, audited); returns its rows (0: kept).';

drop function if exists ops.cleanup_delete_batch(text, interval, integer);
create or replace function ops.cleanup_delete_batch(target text, older_than interval, batch_rows integer default 10000,
                                                    cutoff timestamptz default null)
    returns bigint
    volatile
    language plpgsql
as $$
-- Deletes up to batch_rows rows older than now() - older_than from the target's table (for orders
-- only removable ones, with their events and the keys no trade or risk event refers to: see
-- internal.delete_removable_orders); returns how many went, 0 when nothing is left. The cutoff of
-- ticks is rounded down to its UTC minute and of candles to its UTC day (internal.cleanup_grain),
-- the caller's cutoff too: a minute of ticks or a day of candles goes whole or not at all. Call
-- it until it returns 0, one transaction each, with the same cutoff (ops.cleanup_cutoff): with
-- now() - older_than, rows growing old meanwhile (a live stream) would keep every batch non-empty.
-- notifications, sessions, cron_runs: only rows that ended before the cutoff
-- (internal.delete_ended_rows).
declare
    v_table  text := internal.row_retention_table(target);
    v_config partman.part_config := case when v_table is null then internal.cleanup_table(target) end;
    v_cutoff timestamptz := internal.cleanup_cutoff(older_than, cutoff, target);
    v_rows   bigint;
begin
    if batch_rows is null or batch_rows < 1 then
        raise exception 'batch_rows must be at least 1, got %', coalesce(batch_rows::text, 'null') using errcode = '22S09';
    end if;
    if v_table is not null then
        return internal.delete_ended_rows(v_table, v_cutoff, batch_rows);
    end if;
    if v_config.parent_table = 'trading.orders' then
        return internal.delete_removable_orders(v_cutoff, '-infinity', 'infinity', batch_rows);
    end if;
    -- a row is (tableoid, ctid): a ctid alone repeats across partitions
    execute format('delete from %s t using (select s.tableoid, s.ctid from %s s where s.%I < $1 limit $2) b
                    where t.tableoid = b.tableoid and t.ctid = b.ctid',
                   v_config.parent_table, v_config.parent_table, v_config.control)
        using v_cutoff, batch_rows;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$;
comment on function ops.cleanup_delete_batch(text, interval, integer, timestamptz) is
    'Deletes one batch of rows older than the interval (or the run''s fixed cutoff) from the cleanup target''s table (ticks: before the cutoff''s UTC minute, candles: before its UTC day, so whole minutes and days stay; orders: only removable ones; notifications, sessions, cron_runs: only rows that ended before it); returns the rows deleted.';
