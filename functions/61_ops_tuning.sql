-- spreadedge functions: tuning views
-- What an operator reads in psql before tuning: the slow statements (pg_stat_statements), how each
-- index is used, indexes nobody uses or another index covers, tables read mostly by sequential
-- scans, and each table's dead tuples, vacuum/analyze times and estimated bloat. All of them are
-- about the current database only. Index advice built on them is in 62_ops_index_advice.sql.
--
-- Thresholds (documented here and in the README):
--   slow statement    mean execution time >= spreadedge.slow_query_ms (default 100 ms; change it
--                     per session: set spreadedge.slow_query_ms = 20)
--   missing index     a table (partitions summed per partitioned table) with at least 1,000 live
--                     rows, more sequential than index scans, and sequential scans that read
--                     1,000 rows or more on average
--   unused index      no scan since statistics were reset, not backing a constraint, not unique;
--                     spreadedge tune drop-unused drops only those unused for --min-age (7 days)
-- No view offers an index to drop, or a table to index, of a system catalog, of an extension's own
-- table (pg_partman's, pg_cron's: an index on one is not the extension's, and its upgrades do not
-- expect it) or of a temporary table (another session's is out of reach). Written out in each view,
-- not as a function of internal: people (spreadedge_readonly) read these views, as themselves.

create or replace function internal.slow_query_ms()
    returns double precision
    stable
    language sql
as $$
    -- the slow-statement threshold: spreadedge.slow_query_ms when set (and a number), else 100 ms.
    -- why read through the digits: a number beyond double precision (more than 308 digits) or
    -- below its smallest (0.000...1) raised a bare 22003, and ops.slow_queries and
    -- ops.performance_summary with it. Only the first 6 decimals count (a nanosecond), and a
    -- threshold of 10^15 ms or more (31,000 years) is one no statement reaches: Infinity.
    select case when s.v is null or s.v !~ E'^[0-9]+(\\.[0-9]+)?$' then 100
                when length(ltrim(split_part(s.v, '.', 1), '0')) > 15 then 'Infinity'::double precision
                else (coalesce(nullif(ltrim(split_part(s.v, '.', 1), '0'), ''), '0') || '.'
                      || coalesce(nullif(left(split_part(s.v, '.', 2), 6), ''), '0'))::double precision end
    from (select current_setting('spreadedge.slow_query_ms', true) as v) s;
$$;
comment on function internal.slow_query_ms() is
    'The slow-statement threshold in ms: the session setting spreadedge.slow_query_ms (a number; 10^15 or more is Infinity), else 100.';

create or replace view ops.slow_queries
as
    select s.queryid,
           s.userid::regrole::text as role_name,
           s.calls,
           round(s.total_exec_time::numeric, 3) as total_exec_ms,
           round(s.mean_exec_time::numeric, 3) as mean_exec_ms,
           round(s.max_exec_time::numeric, 3) as max_exec_ms,
           round(s.stddev_exec_time::numeric, 3) as stddev_exec_ms,
           s.rows,
           s.shared_blks_hit,
           s.shared_blks_read,
           round(s.shared_blks_hit::numeric / nullif(s.shared_blks_hit + s.shared_blks_read, 0), 4) as cache_hit_ratio,
           s.temp_blks_read,
           s.temp_blks_written,
           -- why not sum() over (): the window sees only the slow rows the WHERE kept, so one slow
           -- statement had a share of 1 however little of the database's time it took. Top-level
           -- statements only: with pg_stat_statements.track = all, a function's time also counts
           -- in the statements it runs
           round((s.total_exec_time / nullif((select sum(a.total_exec_time) from public.pg_stat_statements(false) a
                                              where a.dbid = (select d.oid from pg_catalog.pg_database d
                                                              where d.datname = current_database())
                                                and a.toplevel), 0))::numeric, 4) as share_of_total_time,
           s.query,
           -- why: with pg_stat_statements.track = all (the embedded cluster's) a statement run both
           -- at top level and inside a function has a row for each, the same query twice with no
           -- sign of what told them apart
           s.toplevel
    from public.pg_stat_statements(true) s
    where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
      and s.mean_exec_time >= internal.slow_query_ms()
    order by s.total_exec_time desc;
comment on view ops.slow_queries is
    'Statements of this database whose mean execution time is at least spreadedge.slow_query_ms (default 100 ms), heaviest total first, with their share of the execution time of all top-level statements of this database (pg_stat_statements; another role''s query text needs pg_read_all_stats); toplevel false: run inside a function (a statement run both ways has a row for each).';

create or replace view ops.index_usage
as
    select s.schemaname as schema_name,
           s.relname as table_name,
           s.indexrelname as index_name,
           am.amname as index_method,
           s.idx_scan,
           s.idx_tup_read,
           s.idx_tup_fetch,
           pg_catalog.pg_relation_size(s.indexrelid) as size_bytes,
           i.indisunique as is_unique,
           i.indisprimary as is_primary,
           exists (select from pg_catalog.pg_constraint c where c.conindid = s.indexrelid) as backs_constraint,
           (select p.inhparent::regclass::text from pg_catalog.pg_inherits p where p.inhrelid = s.indexrelid) as parent_index
    from pg_catalog.pg_stat_user_indexes s
    join pg_catalog.pg_index i on i.indexrelid = s.indexrelid
    join pg_catalog.pg_class c on c.oid = s.indexrelid
    join pg_catalog.pg_am am on am.oid = c.relam;
comment on view ops.index_usage is
    'Every index of this database: scans and tuples read since statistics were reset, size, and what it backs.';

create or replace view ops.unused_indexes
as
    -- one row per top-level index (a partitioned table's index counts the scans of its partitions'
    -- indexes), so that dropping it drops the whole family
    -- why nspname, not relnamespace::regnamespace::text: that is quoted as an identifier ("Desk")
    select n.nspname::text collate "default" as schema_name,
           t.relname as table_name,
           c.relname as index_name,
           am.amname as index_method,
           tree.size_bytes,
           coalesce(obj_description(c.oid, 'pg_class'), '') like 'spreadedge tune:%' as created_by_tune,
           pg_catalog.pg_get_indexdef(c.oid) as index_definition,
           format(case when c.relkind = 'I' then 'drop index %s' else 'drop index concurrently %s' end,
                  c.oid::regclass) as drop_statement,
           -- why: "never scanned" means little for an index built minutes ago, or after statistics
           -- were reset; tune apply writes the build time into its comment (schema indexes have none)
           nullif(greatest(coalesce(built.at, '-infinity'), coalesce(counted.since, '-infinity')),
                  '-infinity') as unused_since
    from pg_catalog.pg_index i
    join pg_catalog.pg_class c on c.oid = i.indexrelid
    join pg_catalog.pg_class t on t.oid = i.indrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_am am on am.oid = c.relam
    cross join lateral (
        select coalesce(sum(s.idx_scan), 0) as scans, sum(pg_catalog.pg_relation_size(tr.relid)) as size_bytes
        -- pg_partition_tree gives nothing for an index that is not partitioned: the index itself
        from (select c.oid as relid union select pt.relid from pg_catalog.pg_partition_tree(c.oid) pt) tr
        left join pg_catalog.pg_stat_all_indexes s on s.indexrelid = tr.relid) tree
    cross join lateral (
        select substring(obj_description(c.oid, 'pg_class')
                         from '^spreadedge tune: .* at ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z)$')::timestamptz as at) built
    -- since when this database's index scans are counted: pg_stat_database.stats_reset (a
    -- pg_stat_reset), or the server's last discard of its statistics when this database's indexes
    -- were there before it (after its first migrate).
    -- why the discard: crash recovery (an immediate shutdown, a kill -9 or an OOM kill of the
    -- server), a restore from a backup and a standby's start discard every cumulative statistic,
    -- idx_scan with them, and leave stats_reset as it was (null when never reset): after a crash
    -- every index read "never scanned" since an unknown time, and tune drop-unused dropped the
    -- indexes the queries use. A discard resets all the shared statistics at one time; the earliest
    -- of pg_stat_archiver's, pg_stat_bgwriter's and pg_stat_wal's reset times is it, since
    -- pg_stat_reset_shared resets one of them at a time (resetting all three only keeps an index longer)
    cross join (
        select greatest(d.stats_reset,
                        case when r.discarded_at > (select min(m.finished_at) from ops.migrate_runs m)
                             then r.discarded_at end) as since
        from (select least((select a.stats_reset from pg_catalog.pg_stat_archiver a),
                           (select b.stats_reset from pg_catalog.pg_stat_bgwriter b),
                           (select w.stats_reset from pg_catalog.pg_stat_wal w)) as discarded_at) r
        left join pg_catalog.pg_stat_database d on d.datname = current_database()) counted
    where not c.relispartition
      and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'cron', 'partman')
      -- why the table too: another session's temporary table, or an extension's own table (see
      -- the header), is no one's to drop an index of
      and t.relpersistence <> 't'
      and not exists (select from pg_catalog.pg_depend d
                      where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = t.oid and d.deptype = 'e')
      and not i.indisunique
      and not exists (select from pg_catalog.pg_constraint k where k.conindid = c.oid)
      and tree.scans = 0;
comment on view ops.unused_indexes is
    'Indexes (partitioned ones with all their partitions) never scanned since statistics were reset, not unique and backing no constraint, of tables tuning may touch (no system catalog, extension table or temporary table), with the DROP statement, and since when they are known unused (the later of the statistics reset, the server''s last discard of its statistics by crash recovery or a restore, and a tune build; null: unknown).';

create or replace view ops.duplicate_indexes
as
    -- index a is covered by index b when both are plain key-column indexes of the same table and
    -- method, with the same predicate, b is valid, and a's columns are the leading columns of b's
    -- (same operator classes and collations)
    select a.indrelid::regclass::text as table_name,
           ac.relname as index_name,
           bc.relname as covered_by,
           pg_catalog.pg_get_indexdef(a.indexrelid) as index_definition,
           pg_catalog.pg_get_indexdef(b.indexrelid) as covering_definition,
           pg_catalog.pg_relation_size(a.indexrelid) as size_bytes
    from pg_catalog.pg_index a
    join pg_catalog.pg_class ac on ac.oid = a.indexrelid
    join pg_catalog.pg_index b on b.indrelid = a.indrelid and b.indexrelid <> a.indexrelid
    join pg_catalog.pg_class bc on bc.oid = b.indexrelid
    join pg_catalog.pg_class t on t.oid = a.indrelid
    where not ac.relispartition
      -- not a system catalog, an extension's table or a temporary one (see the header)
      and t.relnamespace not in (select n.oid from pg_catalog.pg_namespace n
                                 where n.nspname in ('pg_catalog', 'information_schema', 'pg_toast', 'cron', 'partman'))
      and t.relpersistence <> 't'
      and not exists (select from pg_catalog.pg_depend d
                      where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = t.oid and d.deptype = 'e')
      -- why: an invalid index (an interrupted CREATE INDEX CONCURRENTLY) serves no query
      and b.indisvalid
      -- why: dropping an index that backs a constraint (primary key, unique, exclusion, or the
      -- one a foreign key references) fails, or drops the constraint with it
      and not exists (select from pg_catalog.pg_constraint k where k.conindid = a.indexrelid)
      and ac.relam = bc.relam
      and a.indexprs is null and b.indexprs is null
      and pg_catalog.pg_get_expr(a.indpred, a.indrelid) is not distinct from pg_catalog.pg_get_expr(b.indpred, b.indrelid)
      and a.indnkeyatts <= b.indnkeyatts
      and (a.indkey::int2[])[0:a.indnkeyatts - 1] = (b.indkey::int2[])[0:a.indnkeyatts - 1]
      and (a.indclass::oid[])[0:a.indnkeyatts - 1] = (b.indclass::oid[])[0:a.indnkeyatts - 1]
      -- why: an index on a column in the "C" collation orders (and serves LIKE 'x%') differently
      and (a.indcollation::oid[])[0:a.indnkeyatts - 1] = (b.indcollation::oid[])[0:a.indnkeyatts - 1]
      -- a unique index is needed for its uniqueness, unless b enforces the same uniqueness
      and (not a.indisunique or (b.indisunique and a.indnkeyatts = b.indnkeyatts
                                 and a.indnullsnotdistinct = b.indnullsnotdistinct and b.indimmediate))
      -- of two identical indexes, report one of them: the one that backs no constraint, else the later
      and (a.indnkeyatts < b.indnkeyatts or a.indisunique < b.indisunique
           or (a.indisunique = b.indisunique
               and (a.indexrelid > b.indexrelid
                    or exists (select from pg_catalog.pg_constraint k where k.conindid = b.indexrelid))));
comment on view ops.duplicate_indexes is
    'Indexes whose key columns are a leading prefix of another valid index of the same table and method (same predicate, operator classes and collations), backing no constraint: candidates to drop.';

create or replace view ops.missing_index_candidates
as
    with tables as (
        select coalesce(pg_catalog.pg_partition_root(s.relid), s.relid) as root,
               sum(s.seq_scan) as seq_scan,
               sum(s.seq_tup_read) as seq_tup_read,
               sum(coalesce(s.idx_scan, 0)) as idx_scan,
               sum(s.n_live_tup) as live_rows
        from pg_catalog.pg_stat_user_tables s
        group by 1
    )
    -- why nspname: relnamespace::regnamespace::text is quoted already, and %I quoted it again
    select (select format('%I.%I', n.nspname, c.relname)
            from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where c.oid = t.root) as table_name,
           t.seq_scan,
           t.seq_tup_read,
           t.idx_scan,
           t.live_rows,
           t.seq_tup_read / t.seq_scan as avg_rows_per_seq_scan,
           pg_catalog.pg_total_relation_size(t.root)
               + coalesce((select sum(pg_catalog.pg_total_relation_size(tr.relid))
                           from pg_catalog.pg_partition_tree(t.root) tr where tr.relid <> t.root), 0) as size_bytes
    from tables t
    -- not an extension's table or a temporary one (see the header; pg_stat_user_tables has no
    -- system catalog)
    where t.root not in (select c.oid from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                         where n.nspname in ('cron', 'partman') or c.relpersistence = 't')
      and not exists (select from pg_catalog.pg_depend d
                      where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = t.root and d.deptype = 'e')
      and t.live_rows >= 1000
      and t.seq_scan > t.idx_scan
      and t.seq_tup_read / t.seq_scan >= 1000
    order by t.seq_tup_read desc;
comment on view ops.missing_index_candidates is
    'Tables (partitions summed; no extension or temporary table) of 1,000+ rows read mostly by sequential scans of 1,000+ rows each: where an index may be missing (see ops.index_advice()).';

create or replace view ops.table_health
as
    -- estimated bloat: the pages the live rows need at their average width (pg_stats) and the
    -- table's fill factor, subtracted from the pages the table has; an estimate, good to a few pages.
    -- Null when a column's width is not known: pg_stats shows only the columns the reader may
    -- select (spreadedge_readonly: no secret column, no partition of a row-secured table), and
    -- none of a table never analyzed; taking the missing widths as 0 showed most of such a table
    -- as bloat
    select s.schemaname as schema_name,
           s.relname as table_name,
           s.n_live_tup as live_rows,
           s.n_dead_tup as dead_rows,
           round(s.n_dead_tup::numeric / nullif(s.n_live_tup + s.n_dead_tup, 0), 4) as dead_ratio,
           greatest(s.last_vacuum, s.last_autovacuum) as last_vacuum,
           greatest(s.last_analyze, s.last_autoanalyze) as last_analyze,
           s.vacuum_count + s.autovacuum_count as vacuums,
           s.analyze_count + s.autoanalyze_count as analyzes,
           pg_catalog.pg_relation_size(s.relid) as size_bytes,
           case when est.widths_known
                then greatest(c.relpages - est.pages, 0)::bigint * current_setting('block_size')::bigint end as bloat_bytes,
           case when est.widths_known
                then round(greatest(c.relpages - est.pages, 0)::numeric / nullif(c.relpages, 0), 4) end as bloat_ratio
    from pg_catalog.pg_stat_user_tables s
    join pg_catalog.pg_class c on c.oid = s.relid
    cross join lateral (
        select sum(st.avg_width) as width, count(*) as columns
        from pg_catalog.pg_stats st
        where st.schemaname = s.schemaname and st.tablename = s.relname and not st.inherited) w
    cross join lateral (
        select w.columns = (select count(*) from pg_catalog.pg_attribute a
                            where a.attrelid = s.relid and a.attnum > 0 and not a.attisdropped) as widths_known,
               ceil(greatest(c.reltuples, 0)
                    * (24 + 4 + coalesce(w.width, 0))
                    / ((current_setting('block_size')::numeric - 24)
                       * coalesce((select substring(o from 'fillfactor=([0-9]+)')::numeric
                                   from unnest(c.reloptions) o where o like 'fillfactor=%'), 100) / 100)) as pages) est
    where c.relkind = 'r';
comment on view ops.table_health is
    'Every table of this database: live and dead rows, last vacuum and analyze, size and estimated bloat (from pg_stats row widths; null when a column''s width is not known to the reader: a table never analyzed, or a column the reader may not select).';

create or replace function ops.performance_summary()
    returns table (slow_queries bigint, statements bigint, calls bigint, avg_exec_ms numeric,
                   cache_hit_ratio numeric, connections bigint, active_connections bigint,
                   max_connections integer, database_size_bytes bigint, database_size text,
                   commits bigint, rollbacks bigint, deadlocks bigint, temp_bytes bigint)
    stable
    language sql
as $$
    -- the seeds' get_performance_summary: one row about this database right now
    select (select count(*) from ops.slow_queries),
           st.statements, st.calls, round((st.total_ms / nullif(st.calls, 0))::numeric, 3),
           round(d.blks_hit::numeric / nullif(d.blks_hit + d.blks_read, 0), 4),
           -- why client sessions only (and those hidden from the role, whose kind it cannot
           -- see): an autovacuum worker, pg_cron's launcher or a parallel worker is no connection,
           -- and counted it made the summary's connections move with autovacuum's visits
           (select count(*) from pg_catalog.pg_stat_activity a
            where a.datname = current_database()
              and (a.backend_type = 'client backend' or a.backend_type is null)),
           (select count(*) from pg_catalog.pg_stat_activity a
            where a.datname = current_database() and a.backend_type = 'client backend'
              and a.state = 'active'),
           current_setting('max_connections')::integer,
           pg_catalog.pg_database_size(current_database()),
           pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(current_database())),
           d.xact_commit, d.xact_rollback, d.deadlocks, d.temp_bytes
    from pg_catalog.pg_stat_database d
    cross join lateral (
        select count(*) as statements, coalesce(sum(s.calls), 0)::bigint as calls, sum(s.total_exec_time) as total_ms
        from public.pg_stat_statements(false) s where s.dbid = d.datid) st
    where d.datname = current_database();
$$;
comment on function ops.performance_summary() is
    'This database now: slow statement count, statements and calls tracked, average execution time (ms), cache hit ratio, client connections (all and active; background workers left out), size, commits, rollbacks, deadlocks, temp bytes.';
