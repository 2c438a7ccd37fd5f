-- spreadedge functions: index advice
-- ops.index_advice() takes the heaviest statements of pg_stat_statements, plans each as a generic
-- plan (its $n parameters unknown, as a prepared statement's), and for every table it reads with a
-- sequential scan tries candidate indexes on the columns of the scan's filter as hypopg
-- hypothetical indexes (nothing is built; hypothetical indexes live in this session only). It
-- recommends, per statement, the candidate that cuts the estimated cost by at least min_saving.
-- It never names a system catalog, an extension's table or a temporary table.
-- ops.index_build_statements() gives the statements spreadedge tune apply runs to build one, and
-- ops.index_build_state() whether the index they built is valid.
--
-- Candidates: every filter column alone (btree; BRIN too for a time column whose physical order
-- follows its values, i.e. an append-only time column, |correlation| >= 0.9; GIN for jsonb and
-- array columns) and every ordered pair of btree-able filter columns. hypopg 1.3 (Debian 12)
-- cannot simulate GIN: a GIN candidate is built for real inside a subtransaction that is always
-- rolled back (internal.trial_index_cost), only on a table of at most gin_trial_max_mb and only if
-- its lock comes at once; writers of that table wait while it builds.

create or replace function internal.tunable_table(p_table oid)
    returns boolean
    stable
    language sql
as $$
    -- whether index advice may name a table: not a system catalog (an index there cannot be
    -- built), not pg_partman's or pg_cron's (their schemas and every extension's own tables: an
    -- index built on one is not the extension's, and its upgrades do not expect it), not temporary
    -- (tune apply's session cannot see it; the advising session's is gone at logout). The same
    -- rule is written out in the views of 61_ops_tuning.sql.
    select c.relpersistence <> 't'
       and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast', 'cron', 'partman')
       and not exists (select from pg_catalog.pg_depend d
                       where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_table;
$$;
comment on function internal.tunable_table(oid) is
    'Whether index advice may name a table: not a system catalog, not an extension''s or in the cron or partman schema, not temporary.';

create or replace function internal.generic_plan(p_statement text)
    returns jsonb
    volatile
    set plan_cache_mode = force_generic_plan
    language plpgsql
as $$
-- The EXPLAIN (FORMAT JSON, VERBOSE) of a statement as a generic plan, or null when the statement
-- cannot be prepared as pg_stat_statements normalized it (a constant turned into $n inside a
-- typed literal, a temporary table, a dropped object, a parameter of unknown type).
declare
    v_name   text := 'spreadedge_advice_' || floor(random() * 1e12)::bigint::text;
    v_params integer;
    v_plan   jsonb;
begin
    begin
        execute format('prepare %I as %s', v_name, p_statement);
    exception
        when syntax_error_or_access_rule_violation or feature_not_supported or data_exception
             or undefined_object or wrong_object_type then
            return null;
    end;
    select cardinality(ps.parameter_types) into v_params
    from pg_catalog.pg_prepared_statements ps where ps.name = v_name;
    -- why nulls: with a generic plan forced, the values given do not shape the plan
    execute format('explain (format json, verbose) execute %I%s', v_name,
                   case when v_params > 0
                        then '(' || array_to_string(array_fill('null'::text, array[v_params]), ', ') || ')'
                        else '' end)
        into v_plan;
    execute format('deallocate %I', v_name);
    return v_plan;
end;
$$;
comment on function internal.generic_plan(text) is
    'EXPLAIN (FORMAT JSON, VERBOSE) of a statement as a generic plan, or null when it cannot be prepared.';

create or replace function internal.index_name(p_table regclass, p_method text, p_columns text[])
    returns text
    stable
    language sql
as $$
    -- the name spreadedge tune gives an index: table_columns_method_tune. Why a hash when that
    -- is over 63 bytes: PostgreSQL cuts a longer name to 63 bytes, where left(..., 63) counted
    -- characters (a name in Cyrillic never matched the index it named), and the cut names of two
    -- column pairs of a long table were one name (CREATE INDEX IF NOT EXISTS then skipped the
    -- second as built). 49 bytes of it, cut between characters, an md5 of the whole and _tune.
    select case when octet_length(n.full_name) <= 63 then n.full_name
                else (select left(n.full_name, k) from generate_series(length(n.full_name), 0, -1) k
                      where octet_length(left(n.full_name, k)) <= 49 order by k desc limit 1)
                     || '_' || left(md5(n.full_name), 8) || '_tune' end
    from (select format('%s_%s_%s_tune', c.relname, array_to_string(p_columns, '_'), p_method) as full_name
          from pg_catalog.pg_class c where c.oid = p_table) n;
$$;
comment on function internal.index_name(regclass, text, text[]) is
    'The name spreadedge tune gives an index of this table, method and columns: table_columns_method_tune, or when that is over 63 bytes its first 49 bytes, 8 hex digits of its md5 and _tune.';

create or replace function internal.qualified_name(p_relation regclass)
    returns text
    stable
    language sql
as $$
    -- schema.name of a relation whatever the search_path (regclass::text leaves visible names bare).
    -- why nspname, not relnamespace::regnamespace::text: that is quoted already ("Desk"), and %I
    -- quoted it again: hypopg found no such schema, so a table of it never got advice
    select format('%I.%I', n.nspname, c.relname)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_relation;
$$;
comment on function internal.qualified_name(regclass) is
    'The schema-qualified, quoted name of a relation, whatever the search_path.';

create or replace function internal.qualified_index_name(p_table regclass, p_method text, p_columns text[])
    returns text
    stable
    language sql
as $$
    -- internal.index_name, schema-qualified and quoted, as ALTER INDEX and COMMENT ON take it
    select format('%I.%I', n.nspname, internal.index_name(p_table, p_method, p_columns))
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where c.oid = p_table;
$$;
comment on function internal.qualified_index_name(regclass, text, text[]) is
    'internal.index_name, qualified with the table''s schema and quoted.';

create or replace function internal.invalid_tune_index(p_table regclass, p_method text, p_columns text[])
    returns boolean
    stable
    language sql
as $$
    -- why: an interrupted CREATE INDEX CONCURRENTLY (a timeout, a killed CLI, a lost connection)
    -- leaves an invalid index of that name, which CREATE INDEX ... IF NOT EXISTS would keep
    select exists (
        select from pg_catalog.pg_index i
        join pg_catalog.pg_class c on c.oid = i.indexrelid
        where i.indrelid = p_table and not i.indisvalid
          and c.relname = internal.index_name(p_table, p_method, p_columns));
$$;
comment on function internal.invalid_tune_index(regclass, text, text[]) is
    'Whether the table has an invalid index of the name spreadedge tune gives this method and columns (a build that was interrupted).';

create or replace function internal.index_candidates(p_table regclass, p_filters text[])
    returns table (index_method text, columns text[])
    stable
    language sql
as $$
    -- the candidate indexes of a table for the filters of its sequential scans (see the file header)
    with cols as (
        select a.attname::text as name, a.attnum, t.typname, t.typcategory,
               coalesce((select abs(s.correlation) from pg_catalog.pg_stats s
                         where s.schemaname = (select n.nspname from pg_catalog.pg_namespace n where n.oid = c.relnamespace)
                           and s.tablename = c.relname
                           and s.attname = a.attname
                         order by s.inherited desc limit 1), 0) as correlation
        from pg_catalog.pg_attribute a
        join pg_catalog.pg_class c on c.oid = a.attrelid
        join pg_catalog.pg_type t on t.oid = a.atttypid
        where a.attrelid = p_table and a.attnum > 0 and not a.attisdropped
          -- why tokens, not the column name in a regular expression: a name holding "(" made
          -- the expression invalid (2201B, no advice at all), and \m (a word start) never held
          -- before a non-ASCII letter in the "C" collation of attname. EXPLAIN VERBOSE writes a
          -- column as relation.column, the column quoted as quote_ident quotes it.
          and quote_ident(a.attname) in (select m[1] from unnest(p_filters) f,
                                                 regexp_matches(f, E'\\.("(?:[^"]|"")+"|[a-z_][a-z0-9_]*)', 'g') m)
    )
    select 'gin', array[c.name] from cols c where c.typname = 'jsonb' or c.typcategory = 'A'
    union all
    select 'brin', array[c.name] from cols c
    where c.typname in ('timestamptz', 'timestamp', 'date') and c.correlation >= 0.9
    union all
    select 'btree', array[c.name] from cols c where not (c.typname = 'jsonb' or c.typcategory = 'A')
    union all
    select 'btree', array[x.name, y.name] from cols x join cols y on x.attnum <> y.attnum
    where not (x.typname = 'jsonb' or x.typcategory = 'A') and not (y.typname = 'jsonb' or y.typcategory = 'A');
$$;
comment on function internal.index_candidates(regclass, text[]) is
    'Candidate indexes (method, columns) of a table for the filter expressions of its sequential scans.';

create or replace function internal.trial_index_cost(p_statement text, p_table regclass, p_method text,
                                                     p_columns text[], p_max_mb integer)
    returns numeric
    volatile
    -- why: the build needs a SHARE lock on the table; never queue behind (and so ahead of) writers
    set lock_timeout = '200ms'
    language plpgsql
as $$
-- The generic plan's total cost of the statement with the index built for real, for an access
-- method hypopg cannot simulate (gin). The build happens inside a subtransaction that is always
-- rolled back, so nothing stays; null when the table (partitions summed) is larger than p_max_mb,
-- when its lock is not granted within lock_timeout, or when the index cannot be built (a value
-- too large for it, or a caller who does not own the table). A partitioned table gets the index on every partition, as CREATE INDEX does.
declare
    v_plan jsonb;
begin
    if p_max_mb is null or p_max_mb <= 0
       -- why the union: pg_partition_tree lists nothing for a table that is not partitioned
       or (select coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0)
           from (select p_table as relid union select pt.relid from pg_catalog.pg_partition_tree(p_table) pt) t)
          > p_max_mb::bigint * 1024 * 1024 then
        return null;
    end if;
    begin
        execute format('create index on %s using %s (%s)', internal.qualified_name(p_table), p_method,
                       (select string_agg(quote_ident(c), ', ') from unnest(p_columns) c));
        v_plan := internal.generic_plan(p_statement);
        -- always undo the build; v_plan keeps its value (variables are not rolled back)
        raise exception using errcode = 'P0001', message = 'spreadedge: trial index rolled back';
    exception
        when raise_exception then
            null;
        when lock_not_available or program_limit_exceeded or insufficient_resources or insufficient_privilege then
            return null;
    end;
    return (v_plan -> 0 -> 'Plan' ->> 'Total Cost')::numeric;
end;
$$;
comment on function internal.trial_index_cost(text, regclass, text, text[], integer) is
    'Estimated total cost of a statement''s generic plan with an index built for real in a rolled-back subtransaction (for GIN, which hypopg cannot simulate); null for a table over the size cap or a lock not granted at once.';

create or replace function internal.hypothetical_cost(p_statement text, p_table regclass, p_method text,
                                                      p_columns text[])
    returns numeric
    volatile
    language plpgsql
as $$
-- The generic plan's total cost of the statement with the index as a hypopg hypothetical index
-- (on every leaf partition of a partitioned table: the planner plans partitions one by one), or
-- null when hypopg cannot simulate the method. The hypothetical indexes are dropped again.
declare
    v_leaf regclass;
    v_plan jsonb;
begin
    for v_leaf in select p_table where not exists (select from pg_catalog.pg_partitioned_table pt where pt.partrelid = p_table)
                  union all
                  select pt.relid from pg_catalog.pg_partition_tree(p_table) pt where pt.isleaf loop
        begin
            perform public.hypopg_create_index(format('create index on %s using %s (%s)', internal.qualified_name(v_leaf), p_method,
                                                      (select string_agg(quote_ident(c), ', ') from unnest(p_columns) c)));
        exception
            -- why catch: hypopg raises a plain error for an access method it cannot simulate (gin)
            when others then
                perform public.hypopg_reset();
                return null;
        end;
    end loop;
    v_plan := internal.generic_plan(p_statement);
    perform public.hypopg_reset();
    return (v_plan -> 0 -> 'Plan' ->> 'Total Cost')::numeric;
end;
$$;
comment on function internal.hypothetical_cost(text, regclass, text, text[]) is
    'Estimated total cost of a statement''s generic plan with a hypothetical (hypopg) index.';

drop function if exists ops.index_advice(integer, numeric);
create or replace function ops.index_advice(statements integer default 20, min_saving numeric default 0.5,
                                            gin_trial_max_mb integer default 64)
    returns table (advice integer, queryid bigint, statement text, calls bigint, total_exec_ms numeric,
                   table_name text, index_method text, columns text[], cost_before numeric,
                   cost_after numeric, saving numeric, create_index text)
    volatile
    language plpgsql
as $$
-- statements: how many of the heaviest statements (total execution time) to examine;
-- min_saving: the least fraction of the estimated cost an index must cut to be recommended;
-- gin_trial_max_mb: the largest table (MB, partitions summed) a GIN candidate is built on for real,
-- in a rolled-back subtransaction, to cost it (0: no trial builds, so no GIN advice).
-- Security invoker: the statements are prepared as the caller, who must be able to read them.
declare
    v_stmt   record;
    v_plan   jsonb;
    v_before numeric;
    v_best   record;
    v_rows   integer := 0;
begin
    if statements is null or statements < 1 or min_saving is null or min_saving <= 0 or min_saving >= 1
       or gin_trial_max_mb is null or gin_trial_max_mb < 0 then
        raise exception 'index advice needs statements >= 1, 0 < min_saving < 1 and gin_trial_max_mb >= 0, got %, % and %',
                        coalesce(statements::text, 'null'), internal.number_shown(min_saving),
                        coalesce(gin_trial_max_mb::text, 'null')
            using errcode = '22S09';
    end if;
    perform public.hypopg_reset();
    for v_stmt in
        select s.queryid, s.query, s.calls, s.total_exec_time
        from public.pg_stat_statements(true) s
        where s.dbid = (select d.oid from pg_catalog.pg_database d where d.datname = current_database())
          and s.toplevel
          and s.query ~* E'^\\s*(select|with|update|delete)\\M'
          and s.query !~* E'(pg_stat_statements|hypopg|pg_catalog\\.|information_schema\\.|\\mops\\.)'
        order by s.total_exec_time desc
        limit statements
    loop
        v_plan := internal.generic_plan(v_stmt.query);
        continue when v_plan is null;
        v_before := (v_plan -> 0 -> 'Plan' ->> 'Total Cost')::numeric;
        select c.root, c.index_method, c.columns, c.cost into v_best
        from (select coalesce(pg_catalog.pg_partition_root(r.oid), r.oid)::regclass as root,
                     array_agg(distinct n.node ->> 'Filter') as filters
              from jsonb_path_query(v_plan, 'strict $.**?(@."Node Type" == "Seq Scan" || @."Node Type" == "Parallel Seq Scan")') n(node)
              -- why by name, not ::regnamespace: that cast reads an identifier, so a schema
              -- named "Desk" was looked up as desk (3F000, no advice at all)
              join pg_catalog.pg_namespace ns on ns.nspname = n.node ->> 'Schema'
              join pg_catalog.pg_class r on r.relname = n.node ->> 'Relation Name' and r.relnamespace = ns.oid
              where n.node ? 'Filter'
                -- why: no index on a system catalog, an extension's table or a temporary one
                and internal.tunable_table(coalesce(pg_catalog.pg_partition_root(r.oid), r.oid))
              group by 1) scanned
        cross join lateral internal.index_candidates(scanned.root, scanned.filters) cand
        cross join lateral (select scanned.root, cand.index_method, cand.columns,
                                   coalesce(internal.hypothetical_cost(v_stmt.query, scanned.root, cand.index_method, cand.columns),
                                            case when cand.index_method = 'gin'
                                                 then internal.trial_index_cost(v_stmt.query, scanned.root, cand.index_method,
                                                                                cand.columns, gin_trial_max_mb) end) as cost) c
        where c.cost is not null and c.cost <= v_before * (1 - min_saving)
        order by c.cost, cardinality(c.columns), c.index_method = 'btree' desc
        limit 1;
        continue when v_best is null or v_best.root is null;
        v_rows := v_rows + 1;
        advice := v_rows;
        queryid := v_stmt.queryid;
        statement := v_stmt.query;
        calls := v_stmt.calls;
        total_exec_ms := round(v_stmt.total_exec_time::numeric, 3);
        table_name := internal.qualified_name(v_best.root);
        index_method := v_best.index_method;
        columns := v_best.columns;
        cost_before := v_before;
        cost_after := v_best.cost;
        saving := round(1 - v_best.cost / nullif(v_before, 0), 4);
        -- a partitioned table cannot be indexed concurrently in one statement: spreadedge tune apply
        -- builds it partition by partition (ops.index_build_statements)
        create_index := format('create index %s%I on %s using %s (%s)',
                               case when exists (select from pg_catalog.pg_partitioned_table pt where pt.partrelid = v_best.root)
                                    then '' else 'concurrently ' end,
                               internal.index_name(v_best.root, v_best.index_method, v_best.columns),
                               internal.qualified_name(v_best.root),
                               v_best.index_method,
                               (select string_agg(quote_ident(c), ', ') from unnest(v_best.columns) c));
        return next;
    end loop;
end;
$$;
comment on function ops.index_advice(integer, numeric, integer) is
    'Indexes that would cut the estimated cost of the heaviest statements (pg_stat_statements) by at least min_saving, tried on generic plans as hypopg hypothetical indexes (GIN: built in a rolled-back subtransaction on tables up to gin_trial_max_mb): statement, saving and CREATE INDEX.';

create or replace function internal.with_lock_timeout(p_statement text)
    returns text
    immutable
    language sql
as $$
    -- p_statement as a DO block that gives up after 1 s waiting for its lock. why: CREATE INDEX
    -- ON ONLY a partitioned table and ALTER INDEX ATTACH PARTITION take a SHARE lock on the
    -- table, which waits for every open write and makes every later write wait behind it: queued
    -- behind a long transaction, tune apply stopped all writes of the table for as long. The tag
    -- holds the statement's md5, which the statement cannot hold.
    select format('do $build_%s$ begin set local lock_timeout = ''1s''; execute %L; end $build_%s$',
                  md5(p_statement), p_statement, md5(p_statement));
$$;
comment on function internal.with_lock_timeout(text) is
    'A statement wrapped in a DO block that sets lock_timeout to 1 s for it (a step of ops.index_build_statements that takes a SHARE lock).';

create or replace function ops.index_build_statements(table_name regclass, index_method text, columns text[])
    returns table (step integer, statement text)
    stable
    language plpgsql
as $$
-- The statements that build an index without blocking writes, in order, each to run on its own
-- (outside a transaction block). A partitioned table cannot be indexed concurrently, so: the index
-- on the parent only (invalid, empty), then each partition's index concurrently, attached to it;
-- the parent's index becomes valid when the last partition's is attached; a partition whose index
-- is attached already is left alone. The parent's index and each attach take a SHARE lock on the
-- table, which writes wait behind: those steps wait at most 1 s for it, then fail (run it again). An invalid index of the name (a build that was interrupted) is
-- dropped concurrently first: IF NOT EXISTS would keep it.
-- The statements can still leave the index invalid (a concurrent build of the same name): the
-- caller checks ops.index_build_state afterwards.
declare
    v_cols   text;
    v_index  text;
    v_part   regclass;
    v_parent regclass;
    v_child  text;
begin
    if index_method is null or index_method not in ('btree', 'brin', 'hash', 'gin') then
        raise exception 'index method % is not one of btree, brin, hash, gin', coalesce(index_method, 'null')
            using errcode = '22S22';
    end if;
    if columns is null or cardinality(columns) = 0 or exists (
        select from unnest(columns) c
        where not exists (select from pg_catalog.pg_attribute a
                          where a.attrelid = table_name and a.attname = c and a.attnum > 0 and not a.attisdropped)) then
        raise exception 'table % has no column among %', table_name, coalesce(columns::text, 'null')
            using errcode = '22S22', hint = 'Name existing columns of the table.';
    end if;
    v_cols := (select string_agg(quote_ident(c), ', ') from unnest(columns) c);
    v_index := internal.qualified_index_name(table_name, index_method, columns);
    step := 0;
    if not exists (select from pg_catalog.pg_partitioned_table pt where pt.partrelid = table_name) then
        if internal.invalid_tune_index(table_name, index_method, columns) then
            step := step + 1;
            statement := format('drop index concurrently if exists %s', v_index);
            return next;
        end if;
        step := step + 1;
        statement := format('create index concurrently if not exists %I on %s using %s (%s)',
                            internal.index_name(table_name, index_method, columns), internal.qualified_name(table_name),
                            index_method, v_cols);
        return next;
    else
        step := step + 1;
        statement := internal.with_lock_timeout(
                         format('create index if not exists %I on only %s using %s (%s)',
                                internal.index_name(table_name, index_method, columns), internal.qualified_name(table_name),
                                index_method, v_cols));
        return next;
        v_parent := to_regclass(v_index);
        for v_part in select i.inhrelid::regclass from pg_catalog.pg_inherits i
                      where i.inhparent = table_name order by i.inhrelid::regclass::text loop
            -- why: a partition made while the parent's index existed (pg_partman's maintenance after
            -- a build cut short) got an index of its own attached to it, under another name; a
            -- second one could not be attached
            continue when v_parent is not null and exists (
                select from pg_catalog.pg_inherits h join pg_catalog.pg_index x on x.indexrelid = h.inhrelid
                where h.inhparent = v_parent and x.indrelid = v_part);
            v_child := internal.qualified_index_name(v_part, index_method, columns);
            if internal.invalid_tune_index(v_part, index_method, columns) then
                step := step + 1;
                statement := format('drop index concurrently if exists %s', v_child);
                return next;
            end if;
            step := step + 1;
            statement := format('create index concurrently if not exists %I on %s using %s (%s)',
                                internal.index_name(v_part, index_method, columns), internal.qualified_name(v_part),
                                index_method, v_cols);
            return next;
            step := step + 1;
            statement := internal.with_lock_timeout(format('alter index %s attach partition %s', v_index, v_child));
            return next;
        end loop;
    end if;
    step := step + 1;
    statement := format('comment on index %s is %L', v_index,
                        format('spreadedge tune: %s (%s), built by spreadedge tune apply at %s', index_method,
                               array_to_string(columns, ', '),
                               to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')));
    return next;
end;
$$;
comment on function ops.index_build_statements(regclass, text, text[]) is
    'The statements (in order, each on its own) that build an index without blocking writes: concurrently, or per partition concurrently then attached to the parent''s (a partition with an index attached to it already is skipped); the steps that lock the partitioned table wait at most 1 s for the lock.';

create or replace function ops.index_build_state(table_name regclass, index_method text, columns text[])
    returns table (index_name text, is_valid boolean)
    stable
    language sql
as $$
    -- The index spreadedge tune apply builds for this table, method and columns (schema-qualified)
    -- and whether it is valid (pg_index.indisvalid; null when there is none). A partitioned
    -- table's index is valid once every partition's is attached.
    select internal.qualified_index_name(table_name, index_method, columns),
           (select i.indisvalid from pg_catalog.pg_index i join pg_catalog.pg_class c on c.oid = i.indexrelid
            where i.indrelid = table_name and c.relname = internal.index_name(table_name, index_method, columns));
$$;
comment on function ops.index_build_state(regclass, text, text[]) is
    'The index spreadedge tune apply builds for a table, method and columns, and whether it is valid (null: none).';
