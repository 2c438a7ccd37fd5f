-- spreadedge functions: access
-- How the API functions apply the session's scope (spreadedge.user_id, see schema/90_privileges.sql)
-- and permissions, write security events, and hand ownership of every object to spreadedge_owner.

create or replace function internal.require_permission(p_permission text)
    returns void
    stable
    language plpgsql
as $$
-- Raises permission_denied (42S01) when the session is scoped to a user who lacks p_permission;
-- an unscoped session (the trading engine, operators) passes.
declare
    v_permissions text[];
begin
    -- why first: the trading engine's sessions are unscoped, and this is on every fill's path
    if internal.session_user_id() is null then
        return;
    end if;
    v_permissions := internal.session_permissions();
    if not p_permission = any (v_permissions) then
        raise exception 'user % lacks the permission %', internal.session_user_id(), p_permission
            using errcode = '42S01',
                  hint = 'Grant the user a role that has it: auth.grant_role; auth.role_permissions lists them.';
    end if;
end;
$$;
comment on function internal.require_permission(text) is
    'Raises 42S01 permission_denied when the session''s user lacks the permission; unscoped sessions pass.';

create or replace function internal.require_self_or_permission(p_user_id bigint, p_permission text)
    returns void
    stable
    language plpgsql
as $$
-- A scoped session may act on its own user; on another user only with p_permission (42S01).
begin
    if internal.session_user_id() is distinct from p_user_id then
        perform internal.require_permission(p_permission);
    end if;
end;
$$;
comment on function internal.require_self_or_permission(bigint, text) is
    'Passes for the session''s own user, else needs the permission (42S01).';

create or replace function internal.strategy_in_scope(p_strategy_id integer)
    returns boolean
    stable
    language plpgsql
as $$
-- True when the session may see and act on this strategy's rows.
declare
    v_visible integer[];
begin
    -- why first: the trading engine's sessions are unscoped, and this is on every fill's path
    if internal.session_user_id() is null then
        return true;
    end if;
    v_visible := internal.visible_strategy_ids();
    return v_visible is null or p_strategy_id = any (v_visible);
end;
$$;
comment on function internal.strategy_in_scope(integer) is
    'True when the session (unscoped, or scoped to the owner or a strategies:all user) may use the strategy.';

create or replace function internal.security_event(
    p_type       audit.security_event_type,
    p_user_id    bigint,
    p_username   text,
    p_details    jsonb default '{}',
    p_ip_address inet default null,
    p_user_agent text default null
)
    returns void
    volatile
    language sql
as $$
    -- Append one audit.security_events row; the actor is spreadedge.actor, else the scoped user.
    insert into audit.security_events (event_type, user_id, username, actor, ip_address, user_agent, details)
    values (p_type, p_user_id, left(p_username, 100),
            coalesce(nullif(current_setting('spreadedge.actor', true), ''), 'user:' || internal.session_user_id()),
            p_ip_address, left(p_user_agent, 500), coalesce(p_details, '{}'))
$$;
comment on function internal.security_event(audit.security_event_type, bigint, text, jsonb, inet, text) is
    'Writes one security event (never pass a secret in p_details).';

create or replace function internal.unclaimed_relations()
    returns setof regclass
    stable
    language sql
as $$
    -- The tables, views and sequences of the project schemas that internal.claim_ownership gives
    -- to spreadedge_owner: those another role owns (partitions pg_partman made as the superuser),
    -- identity and serial sequences left out, as they follow their table.
    -- why a function of its own: spreadedge migrate locks these tables all at once, waiting
    -- boundedly, and claims them in a transaction of its own before it re-applies functions/
    -- (sqlfiles.apply_functions); claimed at the end of functions/, an ALTER ... OWNER waited for
    -- a fill holding the partition (a generic plan locks them all) that waited for a trigger's lock
    -- migrate held: a deadlock
    select c.oid::regclass
    from pg_catalog.pg_class c
    where c.relnamespace::regnamespace::text = any (array['ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal'])
      and c.relkind in ('r', 'p', 'v', 'm', 'S')
      and c.relowner <> 'spreadedge_owner'::regrole
      -- why: identity and serial sequences follow their table and refuse a change of their own
      and not exists (select from pg_catalog.pg_depend d
                      where d.classid = 'pg_class'::regclass and d.objid = c.oid
                        and d.deptype in ('a', 'i') and c.relkind = 'S')
$$;
comment on function internal.unclaimed_relations() is
    'Tables, views and sequences of the project schemas owned by another role than spreadedge_owner (internal.claim_ownership changes them); spreadedge migrate locks them first.';

create or replace procedure internal.claim_ownership()
    language plpgsql
as $$
-- Give spreadedge_owner every object of the project schemas that another role owns: what migrations,
-- functions/ and partition maintenance create as the superuser. spreadedge migrate calls it last.
declare
    v_schemas constant text[] := array['ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal'];
    v_owner   constant regrole := 'spreadedge_owner';
    v_ddl     text;
begin
    -- why: ALTER ... OWNER needs membership in the new owner, which a superuser has and a database
    -- owner migrating with CREATEROLE (who created spreadedge_owner in migration 0002) has not; a
    -- role with neither was refused before anything by spreadedge migrate (spreadedge.preflight)
    if not pg_catalog.pg_has_role('spreadedge_owner', 'MEMBER') then
        execute format('grant spreadedge_owner to %I', current_user);
    end if;
    for v_ddl in
        select format('alter schema %I owner to spreadedge_owner', n.nspname)
        from pg_catalog.pg_namespace n
        where n.nspname = any (v_schemas) and n.nspowner <> v_owner
        union all
        select format('alter %s %s owner to spreadedge_owner',
                      case c.relkind when 'v' then 'view' when 'm' then 'materialized view'
                                     when 'S' then 'sequence' else 'table' end,
                      c.oid::regclass)
        from internal.unclaimed_relations() r (oid)
        join pg_catalog.pg_class c on c.oid = r.oid
        union all
        select format('alter routine %s owner to spreadedge_owner', p.oid::regprocedure)
        from pg_catalog.pg_proc p
        where p.pronamespace::regnamespace::text = any (v_schemas) and p.proowner <> v_owner
        union all
        select format('alter type %s owner to spreadedge_owner', t.oid::regtype)
        from pg_catalog.pg_type t
        where t.typnamespace::regnamespace::text = any (v_schemas) and t.typowner <> v_owner
          and t.typtype in ('e', 'd')
    loop
        execute v_ddl;
    end loop;
end;
$$;
comment on procedure internal.claim_ownership() is
    'Makes spreadedge_owner the owner of every object in the project schemas (first making the migrating role a member of it where it is not: a database owner with CREATEROLE); run by spreadedge migrate.';

create or replace procedure internal.revoke_partition_privileges()
    language plpgsql
as $$
-- Take every privilege on a partition of a table under row-level security away from every role
-- but its owner: such a partition is read through its parent only.
-- why: row-level security is checked on the table a query names, and a partition has no policy
-- of its own, so a trader scoped to their own strategies who selected from trading.orders_p2026_12
-- (or trades_…, order_events_…, a default partition) read every user's orders and trades. The
-- privileges came from "grant select on all tables in schema trading" (schema/ and migrations),
-- which also reaches the partitions that exist at that moment; partitions pg_partman makes later
-- get none. Reading through the parent checks only the parent's privileges, so nothing else changes.
-- why the columns' privileges too: "grant select (order_id, price) on trading.orders_p2026_12" is
-- kept in the columns' ACLs (pg_attribute.attacl), not the table's, and a scoped trader read those
-- columns of every user's orders; a REVOKE ALL on the table takes back its columns' privileges too
-- why by the root's schema, not the partition's: a partition attached from another schema (an
-- archived month restored and attached again) is read past the parent's policies just the same
declare
    v_schemas constant text[] := array['ref', 'trading', 'market', 'auth', 'monitor', 'audit', 'ops', 'internal'];
    v_ddl     text;
begin
    for v_ddl in
        select distinct format('revoke all on table %s from %s', c.oid::regclass,
                               case when g.grantee = 0 then 'public' else g.grantee::regrole::text end)
        from pg_catalog.pg_class c
        join pg_catalog.pg_class root on root.oid = pg_catalog.pg_partition_root(c.oid)
        cross join lateral (select a.grantee from pg_catalog.aclexplode(c.relacl) a
                            union
                            select a.grantee
                            from pg_catalog.pg_attribute att
                            cross join lateral pg_catalog.aclexplode(att.attacl) a
                            where att.attrelid = c.oid and att.attacl is not null) g
        where c.relispartition
          and root.relnamespace::regnamespace::text = any (v_schemas)
          and root.relrowsecurity
          and g.grantee <> c.relowner
    loop
        execute v_ddl;
    end loop;
end;
$$;
comment on procedure internal.revoke_partition_privileges() is
    'Revokes every privilege (on the table or on any of its columns) on the partitions of row-level-secured tables, wherever they live, from all but their owner (read them through the parent, where the policies apply); run by internal.finish_migrate.';

create or replace procedure internal.apply_database_settings()
    language plpgsql
as $$
-- The settings of this database itself (ALTER DATABASE ... SET), which no dump without --create
-- holds: bind parameters kept out of the server log whatever log_statement or
-- log_min_duration_statement say (secrets reach the API functions only as bind parameters; both
-- settings need a superuser), and sessions in UTC (migration 0028). Run by internal.finish_migrate
-- and by `spreadedge restore logical` on the database it restored into.
-- why a setting already in place is left as it is: the log settings need a superuser (or GRANT
-- SET ON PARAMETER), and a database owner that is neither migrates a database on which a superuser
-- set them beforehand (README, "Using your own PostgreSQL server")
declare
    v_setting text;
begin
    foreach v_setting in array array['log_parameter_max_length=0', 'log_parameter_max_length_on_error=0',
                                     'TimeZone=UTC'] loop
        if not exists (select from pg_catalog.pg_db_role_setting d
                       where d.setdatabase = (select o.oid from pg_catalog.pg_database o
                                              where o.datname = pg_catalog.current_database())
                         and d.setrole = 0
                         and v_setting = any (d.setconfig)) then
            execute format('alter database %I set %s = %L', pg_catalog.current_database(),
                           split_part(v_setting, '=', 1), split_part(v_setting, '=', 2));
        end if;
    end loop;
end;
$$;
comment on procedure internal.apply_database_settings() is
    'The database-level settings (ALTER DATABASE ... SET) a dump does not carry: bind parameters kept out of the server log, TimeZone UTC; a setting already in place is left as it is (a superuser set it for a database owner that may not); run by internal.finish_migrate and by spreadedge restore logical.';

create or replace procedure internal.finish_migrate()
    language plpgsql
as $$
-- The last step of every spreadedge migrate (and schema/ apply): hand every object to
-- spreadedge_owner (and let it read the migration ledger), leave no role a privilege on a partition
-- of a row-level-secured table, and keep bind parameters out of the server log in this database whatever
-- log_statement or log_min_duration_statement say, because secrets (passwords, master keys, API
-- secrets, TOTP codes, session tokens) reach the API functions only as bind parameters. Both
-- settings need a superuser to raise; a database made with CREATE DATABASE ... TEMPLATE does not
-- inherit them until it is migrated.
begin
    call internal.claim_ownership();
    -- why: row-level security does not guard a partition read by its own name
    -- (internal.revoke_partition_privileges); a migration's "grant ... on all tables" reaches them
    call internal.revoke_partition_privileges();
    -- why: rows the migrations seeded before the audit triggers existed get their first image
    if to_regprocedure('audit.record_baseline()') is not null then
        call audit.record_baseline();
    end if;
    -- why: ops.health (security definer, run as spreadedge_owner) compares the applied migrations
    -- with the code's; migrate creates this ledger as the superuser before any migration
    if to_regclass('public._spreadedge_migration_checksum') is not null then
        grant select on public._spreadedge_migration_checksum to spreadedge_owner;
    end if;
    call internal.apply_database_settings();
    -- why last, and in this transaction: the row says this database runs the code just applied
    -- (health judges pg_cron jobs by their runs since); migration 0021 creates the table
    if to_regclass('ops.migrate_runs') is not null then
        insert into ops.migrate_runs default values;
    end if;
end;
$$;
comment on procedure internal.finish_migrate() is
    'Last step of spreadedge migrate: ownership to spreadedge_owner, no privileges on the partitions of row-level-secured tables, baseline audit images, bind parameters kept out of the server log, the run recorded in ops.migrate_runs.';
