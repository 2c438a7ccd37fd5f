-- spreadedge bench: one evaluation of every alert rule (what pg_cron runs every minute)
select count(*) from monitor.evaluate_alert_rules();
