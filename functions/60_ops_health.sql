-- spreadedge functions: health
-- ops.health: what GET /api/v1/historical/health and operators need to know the database can take
-- writes where they belong: migrations current, partitions created ahead of time, no rows stranded
-- in a default partition. One row per check; healthy when every ok is true.

create or replace function ops.health(expected_migrations text[])
    returns table (check_name text, ok boolean, detail text)
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- expected_migrations: the migration ids the calling code was built with (its migrations/ files).
-- why security definer: the migration ledger and pg_partman's configuration are not readable by the
-- API roles, and these checks reveal only names and counts.
declare
    v_applied text[];
    v_pending text[];
    v_unknown text[];
    v_short   text[];
    v_default text[];
begin
    if to_regclass('public._spreadedge_migration_checksum') is null then
        return query select 'migrations', false, 'no migration ledger: run spreadedge migrate';
    else
        select array_agg(m.migration_id order by m.migration_id) into v_applied
        from public._spreadedge_migration_checksum m;
        v_pending := array(select x from unnest(expected_migrations) x
                           where not x = any (coalesce(v_applied, '{}')) order by x);
        v_unknown := array(select x from unnest(v_applied) x
                           where not x = any (coalesce(expected_migrations, '{}')) order by x);
        return query select 'migrations',
                            cardinality(v_pending) = 0 and cardinality(v_unknown) = 0,
                            concat_ws('; ',
                                      format('%s applied', coalesce(cardinality(v_applied), 0)),
                                      'pending: ' || nullif(array_to_string(v_pending, ', '), ''),
                                      'applied but unknown to this code: '
                                          || nullif(array_to_string(v_unknown, ', '), ''));
    end if;

    -- why "one partition interval ahead": the partition for the next period must exist before the
    -- period starts, or its first rows land in the default partition
    v_short := array(
        select format('%s (newest partition ends %s)', c.parent_table,
                      coalesce(to_char(info.child_end_time at time zone 'UTC', 'YYYY-MM-DD HH24:MI"Z"'), 'never'))
        from partman.part_config c
        left join lateral (select sp.partition_schemaname || '.' || sp.partition_tablename as child
                           from partman.show_partitions(c.parent_table, 'DESC') sp limit 1) newest on true
        left join lateral partman.show_partition_info(newest.child, c.partition_interval, c.parent_table) info on true
        where info.child_end_time is null
           or info.child_end_time < now() + c.partition_interval::interval
        order by c.parent_table);
    return query select 'partitions_ahead', cardinality(v_short) = 0,
                        coalesce('not created ahead: ' || nullif(array_to_string(v_short, ', '), ''),
                                 format('%s partitioned tables have their next partition', (select count(*) from partman.part_config)));

    v_default := array(select format('%s (%s rows)', d.default_table, d.count)
                       from partman.check_default(p_exact_count := false) d
                       order by d.default_table);
    return query select 'default_partitions_empty', cardinality(v_default) = 0,
                        coalesce('rows in default partitions: ' || nullif(array_to_string(v_default, ', '), ''),
                                 'every default partition is empty');
end;
$$;
comment on function ops.health(text[]) is
    'Health checks (migrations current against the given ids, partitions created ahead, default partitions empty): one row per check.';
