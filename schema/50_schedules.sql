-- spreadedge schema: schedules
-- In-database schedules with pg_cron, in the one database pg_cron serves (cron.database_name: the
-- embedded cluster's spreadedge database). Elsewhere, run the same command from your scheduler:
--     call ops.run_partition_maintenance();   -- hourly: creates partitions ahead, applies retention

do $$
begin
    if current_setting('cron.database_name', true) = current_database()
       and exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron') then
        create extension if not exists pg_cron;
        perform cron.schedule('spreadedge-partition-maintenance', '17 * * * *',
                              'call ops.run_partition_maintenance()');
    end if;
end
$$;
