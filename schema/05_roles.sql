-- spreadedge schema: database roles
-- Five NOLOGIN group roles; login roles (one per application or person) are made members of one.
-- Roles belong to the whole cluster, not to one database, so they are created only when missing.
--   spreadedge_owner     owns every object; the API functions run as it (security definer)
--   spreadedge_app       trading applications and the REST API: executes the API functions and reads
--                        the views; no direct writes to any table, no ciphertext
--   spreadedge_engine    the trading engine: spreadedge_app plus auth.reveal_api_key
--   spreadedge_readonly  people in psql/pgcli and dashboards: the trading tables and views, no secrets
--   spreadedge_auditor   the audit log and the security events, read-only
-- Row-level security scopes the rows: with spreadedge.user_id set for a transaction, a session sees
-- only that application user's strategies (all of them for an admin); see 90_privileges.sql.

do $$
declare
    v_role text;
begin
    foreach v_role in array array['spreadedge_owner', 'spreadedge_app', 'spreadedge_engine',
                                  'spreadedge_readonly', 'spreadedge_auditor'] loop
        if not exists (select from pg_catalog.pg_roles r where r.rolname = v_role) then
            execute format('create role %I nologin', v_role);
        end if;
    end loop;
end
$$;
comment on role spreadedge_owner is 'spreadedge: owns every object; API functions run as it. Nobody logs in as it.';
comment on role spreadedge_app is 'spreadedge: trading applications and the REST API; executes the API functions, no direct table writes.';
comment on role spreadedge_engine is 'spreadedge: the trading engine; spreadedge_app plus revealing exchange API keys.';
comment on role spreadedge_readonly is 'spreadedge: psql/pgcli users and dashboards; reads trading tables and views, never secrets.';
comment on role spreadedge_auditor is 'spreadedge: reads the audit log and security events.';
-- why: the app reads what a readonly person reads; the engine does what the app does
grant spreadedge_readonly to spreadedge_app;
grant spreadedge_app to spreadedge_engine;

