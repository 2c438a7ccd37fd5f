-- spreadedge bench: the audit triggers of the business tables
-- Every top-level (not cloned) _900_audit_* trigger with its table, so the bench can disable and
-- re-enable exactly the triggers functions/90_audit_triggers.sql creates.

select n.nspname as table_schema, c.relname as table_name, t.tgname as trigger_name
from pg_trigger t
join pg_class c on c.oid = t.tgrelid
join pg_namespace n on n.oid = c.relnamespace
where t.tgname like '\_900\_audit\_%'
  and t.tgparentid = 0
  and not t.tgisinternal
order by 1, 2, 3;
