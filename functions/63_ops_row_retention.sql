-- spreadedge functions: row retention of the tables that have no partitions to drop
-- monitor.notifications (every message delivered or dead), auth.sessions (every session opened,
-- each API login adds one) and pg_cron's cron.job_run_details (three runs a minute, 1.5 M rows a
-- year) grew with no limit: nothing ever deleted a row of them (migration 0052). ops.row_retention
-- says how long each keeps a row once it has ended; the hourly ops.run_partition_maintenance
-- deletes older ones after the partitions, in batches (internal.apply_row_retention), and
-- spreadedge cleanup notifications|sessions|cron_runs does the same by hand through
-- ops.cleanup_plan and ops.cleanup_delete_batch (functions/63_ops_partitions.sql).
-- A row goes only once it has ended before the cutoff: a pending or delivering notification, a
-- live session and a pg_cron run still going stay however old, and so does each pg_cron job's
-- newest run (health's cron_jobs reads it). Neither table is audited row by row nor referenced by
-- a foreign key; money history (orders, trades, positions, funding, PnL, snapshots) is never
-- deleted here.

create or replace function internal.row_retention_rules()
    returns table (table_name text, target text, key_column text, ended_before text)
    immutable
    language sql
as $$
    -- The tables with row retention: the cleanup target that names each, its key, and the SQL
    -- condition (on alias t, the cutoff as $1) of a row that ended before the cutoff. Written once
    -- here, it picks the rows to count and to delete and is checked again on each row deleted.
    -- why idle_expires_at: it is never later than expires_at (a check of auth.sessions), and a
    -- session is live only while now() is before both
    -- why each job's newest run stays: health's cron_jobs judges a job by it
    -- why the database: pg_cron records the runs of every database of the cluster in its own
    -- why a run without an end time once a later run of its job started before the cutoff: pg_cron
    -- marks a run still starting or running when the server went down (a crash, a restart, a
    -- restore from a backup taken while it ran) failed with "server restarted" and no end time,
    -- and "end_time < cutoff" never held for it: every restart left its runs for good. It ended
    -- with the server, before the job's next run started (pg_cron runs one run of a job at a time)
    select * from (values
        ('monitor.notifications', 'notifications', 'notification_id',
         $c$t.status in ('delivered', 'dead') and coalesce(t.delivered_at, t.dead_at) < $1$c$),
        ('auth.sessions', 'sessions', 'session_id',
         $c$least(t.revoked_at, t.idle_expires_at) < $1$c$),
        ('cron.job_run_details', 'cron_runs', 'runid',
         $c$t.database = pg_catalog.current_database() and t.status in ('succeeded', 'failed')
            and coalesce(t.end_time < $1, true)
            and exists (select from cron.job_run_details n where n.jobid = t.jobid and n.runid > t.runid
                                                              and (t.end_time is not null or n.start_time < $1))$c$)
    ) r (table_name, target, key_column, ended_before);
$$;
comment on function internal.row_retention_rules() is
    'The tables with row retention (monitor.notifications, auth.sessions, cron.job_run_details): cleanup target, key, and when a row has ended (delivered or dead; revoked or expired; a finished pg_cron run of this database, not its job''s newest; one the server''s restart interrupted, with no end time, once a later run of its job started before the cutoff).';

create or replace function internal.row_retention_table(p_target text)
    returns text
    stable
    language plpgsql
as $$
-- The table a cleanup target of row retention names (notifications, sessions, cron_runs); null for
-- any other target (the partitioned ones). cron_runs where pg_cron does not run is 22S21.
declare
    v_table text := (select r.table_name from internal.row_retention_rules() r where r.target = p_target);
begin
    -- why to_regnamespace first: to_regclass raises 42501 for a schema the role may not use
    if v_table = 'cron.job_run_details'
       and (to_regnamespace('cron') is null or to_regclass('cron.job_run_details') is null) then
        raise exception 'cannot clean up %: pg_cron does not run in database %', p_target, current_database()
            using errcode = '22S21',
                  hint = 'Clean up pg_cron''s runs in the database it serves (cron.database_name).';
    end if;
    return v_table;
end;
$$;
comment on function internal.row_retention_table(text) is
    'The table of a row-retention cleanup target (notifications, sessions, cron_runs), null for another target; 22S21 for cron_runs where pg_cron does not run.';

create or replace function internal.count_ended_rows(p_table text, p_cutoff timestamptz)
    returns bigint
    stable
    language plpgsql
as $$
-- the rows of a table with row retention that ended before the cutoff (what a cleanup would delete)
declare
    v_rule  record;
    v_count bigint;
begin
    select * into strict v_rule from internal.row_retention_rules() r where r.table_name = p_table;
    execute format('select count(*) from %s t where %s', v_rule.table_name, v_rule.ended_before)
        into v_count using p_cutoff;
    return v_count;
end;
$$;
comment on function internal.count_ended_rows(text, timestamptz) is
    'How many rows of a table with row retention ended before the cutoff.';

create or replace function internal.delete_ended_rows(p_table text, p_cutoff timestamptz, p_limit integer)
    returns bigint
    volatile
    language plpgsql
as $$
-- Deletes up to p_limit rows of a table with row retention that ended before the cutoff; returns
-- how many went. Call it until it returns fewer than p_limit, a transaction each, with one cutoff.
-- why the condition again on the rows deleted: the batch is picked from one snapshot, and a row
-- changed meanwhile is judged as it is now (read committed re-reads a row updated under the
-- delete): a dead notification requeued, a session whose idle timeout slid, stay
declare
    v_rule record;
    v_rows bigint;
begin
    select * into strict v_rule from internal.row_retention_rules() r where r.table_name = p_table;
    execute format('delete from %1$s t where t.%2$I = any (array(select t.%2$I from %1$s t where %3$s limit $2))'
                   ' and %3$s',
                   v_rule.table_name, v_rule.key_column, v_rule.ended_before)
        using p_cutoff, p_limit;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$;
comment on function internal.delete_ended_rows(text, timestamptz, integer) is
    'Deletes one batch of rows of a table with row retention that ended before the cutoff (checked again on each row deleted); returns how many went.';

create or replace function ops.configure_row_retention(table_name text, retention interval)
    returns void
    volatile
    language plpgsql
as $$
-- How long a table with row retention keeps a row once it has ended (null keeps every row); the
-- next maintenance applies it. spreadedge partitions maintain writes the retention_notifications,
-- retention_sessions and retention_cron_runs settings through it.
begin
    if not exists (select from internal.row_retention_rules() r where r.table_name = configure_row_retention.table_name) then
        raise exception 'table % has no row retention: it covers %', coalesce(configure_row_retention.table_name, 'null'),
            (select string_agg(r.table_name, ', ' order by r.table_name) from internal.row_retention_rules() r)
            using errcode = '22S21',
                  hint = 'Partitioned tables take a retention with ops.configure_partitioning.';
    end if;
    -- why positive with no negative part, within range: as a cleanup's older_than (internal.check_age);
    -- '-1 day' would have deleted every row that had ended, the last minute's too
    if retention is not null then
        perform internal.check_age(retention, 'retention',
                                   'Give an age such as 30 days or 2 weeks, or null to keep every row.');
    end if;
    update ops.row_retention r
    set retention = configure_row_retention.retention
    where r.table_name = configure_row_retention.table_name
      and r.retention is distinct from configure_row_retention.retention;
end;
$$;
comment on function ops.configure_row_retention(text, interval) is
    'Sets how long monitor.notifications, auth.sessions or cron.job_run_details keeps a row once it has ended (a positive interval with no negative part, 22S09 otherwise; null keeps every row; another table: 22S21); the next maintenance applies it.';

create or replace procedure internal.apply_row_retention(inout p_failed text[])
    language plpgsql
as $$
-- The row retention of ops.row_retention, for ops.run_partition_maintenance: each table's rows
-- that ended before now() - retention deleted in batches of 10,000, a transaction each, the
-- cutoff fixed once per table (rows ending meanwhile do not prolong it). A table whose delete
-- fails is added to p_failed ('table: error') and left for the next run; the others are done.
-- why pg_cron's runs only where the role may use its schema: the hourly job runs as the
-- superuser that scheduled it and deletes them; an operator's maintain without that right is not
-- failed for it
declare
    v_rule   record;
    v_cutoff timestamptz;
    v_rows   bigint;
begin
    for v_rule in select r.table_name, r.retention from ops.row_retention r
                  where r.retention is not null order by r.table_name loop
        if v_rule.table_name = 'cron.job_run_details'
           and (to_regnamespace('cron') is null or not has_schema_privilege('cron', 'usage')
                or to_regclass('cron.job_run_details') is null) then
            continue;
        end if;
        begin
            v_cutoff := ops.cleanup_cutoff(v_rule.retention);
        exception when others then
            p_failed := p_failed || format('%s: %s', v_rule.table_name, split_part(sqlerrm, E'\n', 1));
            continue;
        end;
        loop
            begin
                v_rows := internal.delete_ended_rows(v_rule.table_name, v_cutoff, 10000);
            exception when others then
                p_failed := p_failed || format('%s: %s', v_rule.table_name, split_part(sqlerrm, E'\n', 1));
                v_rows := 0;
            end;
            commit;
            exit when v_rows < 10000;
        end loop;
    end loop;
end;
$$;
comment on procedure internal.apply_row_retention(text[]) is
    'Deletes, in batches of 10,000 a transaction each, the rows of ops.row_retention''s tables that ended before now() - retention; a table that fails is added to the failures given (ops.run_partition_maintenance raises 55S12 with them).';
