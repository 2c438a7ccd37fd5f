-- spreadedge schema: monitor schedules
-- Metrics are collected and alert rules evaluated every minute by pg_cron, in the one database
-- pg_cron serves (cron.database_name), as in 50_schedules.sql. Elsewhere, run the same from your
-- scheduler every minute:
--     select monitor.collect_metrics();
--     select * from monitor.evaluate_alert_rules();

do $$
begin
    if current_setting('cron.database_name', true) = current_database()
       and exists (select from pg_catalog.pg_available_extensions where name = 'pg_cron') then
        create extension if not exists pg_cron;
        perform cron.schedule('spreadedge-collect-metrics', '* * * * *',
                              'select monitor.collect_metrics()');
        perform cron.schedule('spreadedge-evaluate-alert-rules', '* * * * *',
                              'select count(*) from monitor.evaluate_alert_rules()');
    end if;
end
$$;
