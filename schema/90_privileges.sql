-- spreadedge schema: privileges and row-level security
-- What each database role (05_roles.sql) may touch, and which rows a session sees.
-- Function EXECUTE grants live next to the functions, in functions/99_privileges.sql, because
-- functions/ is re-applied; ownership of every object goes to spreadedge_owner at the end of each
-- migrate (internal.claim_ownership). Tables are private: applications call functions and read views.
--
-- Row-level security: spreadedge.user_id, set for a transaction (auth.validate_session sets it),
-- scopes a session to one application user. Then a trader sees only their own strategies' rows and
-- their own API keys; a user with strategies:all (admin, auditor) sees every strategy's rows. A
-- session without spreadedge.user_id is unscoped: its database role alone decides what it reaches
-- (the trading engine acts for every strategy). The API functions run as spreadedge_owner, which
-- RLS does not bind, so they apply the same scope themselves (internal.check_strategy_scope).

-- ============================================================================
-- The session's application user, as RLS policies read it
-- ============================================================================
-- why here and not in functions/: a policy needs its functions to exist when it is created, and
-- schema/ is applied before functions/; change them with a migration, like the policies.
create or replace function internal.session_user_id()
    returns bigint
    stable
    language plpgsql
as $$
-- The application user id in spreadedge.user_id, or null when the session is not scoped to a user.
declare
    v_setting text := current_setting('spreadedge.user_id', true);
begin
    if v_setting is null or v_setting = '' then
        return null;
    end if;
    if v_setting !~ '^[0-9]{1,18}$' then
        raise exception 'spreadedge.user_id must be a user id (digits), got "%"', v_setting
            using errcode = '22S09';
    end if;
    return v_setting::bigint;
end;
$$;
comment on function internal.session_user_id() is
    'The application user id the session is scoped to (setting spreadedge.user_id), or null when unscoped.';

create or replace function internal.session_permissions()
    returns text[]
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Null when the session is unscoped; the permissions of the scoped user's roles, or none when
-- that user does not exist or is disabled.
-- why plpgsql: row-level security calls this once or twice per table a query reads; PL/pgSQL keeps
-- its plan for the session, where a SQL function would be planned again on every call
declare
    v_user_id bigint := internal.session_user_id();
begin
    if v_user_id is null then
        return null;
    end if;
    return coalesce((select array_agg(distinct rp.permission order by rp.permission)
                     from auth.users u
                     join auth.user_roles ur on ur.user_id = u.user_id
                     join auth.role_permissions rp on rp.role_name = ur.role_name
                     where u.user_id = v_user_id and u.disabled_at is null),
                    '{}');
end;
$$;
comment on function internal.session_permissions() is
    'Permissions of the session''s application user; null when the session is unscoped, empty for a disabled user.';

create or replace function internal.visible_strategy_ids()
    returns integer[]
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Null (every strategy) when unscoped or the user has strategies:all; else the user's own
-- strategies, none for a disabled or unknown user.
-- why plpgsql: as for internal.session_permissions, its plans are kept for the session
declare
    v_permissions text[] := internal.session_permissions();
begin
    if v_permissions is null or 'strategies:all' = any (v_permissions) then
        return null;
    end if;
    if v_permissions = '{}' then
        return '{}';
    end if;
    return coalesce((select array_agg(s.strategy_id order by s.strategy_id)
                     from trading.strategies s
                     where s.owner_user_id = internal.session_user_id()),
                    '{}');
end;
$$;
comment on function internal.visible_strategy_ids() is
    'Strategies the session may see: null for all (unscoped, or strategies:all), else the scoped user''s own.';

-- ============================================================================
-- Schemas
-- ============================================================================
grant usage on schema ref, trading, market, monitor, ops, internal to spreadedge_readonly;
grant usage on schema auth to spreadedge_app, spreadedge_auditor;
grant usage on schema audit, ref to spreadedge_auditor;

-- ============================================================================
-- Tables
-- ============================================================================
-- readonly (and so app and engine): the trading, reference and market tables, scoped by RLS below;
-- the key tables only copy order and trade keys across partitions and are not for reading
grant select on all tables in schema ref, trading, market to spreadedge_readonly;
revoke select on trading.order_keys, trading.trade_keys from spreadedge_readonly;
grant select on ops.error_codes to public;
-- app: API key metadata (never the ciphertext or the fingerprint), scoped by RLS below
grant select (key_id, user_id, exchange_id, label, permissions, key_version, created_at, rotated_at,
              last_revealed_at, revoked_at)
    on auth.api_keys to spreadedge_app;
-- auditor: the audit log and the security events
grant select on audit.log, audit.security_events to spreadedge_auditor;

-- ============================================================================
-- Row-level security
-- ============================================================================
-- why (select ...): an uncorrelated subquery runs once per query as an InitPlan, not once per row
alter table trading.strategies enable row level security;
create policy strategy_scope on trading.strategies
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.strategies is 'A scoped session sees its user''s strategies (all with strategies:all).';

alter table trading.orders enable row level security;
create policy strategy_scope on trading.orders
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.orders is 'A scoped session sees its user''s strategies'' orders.';

alter table trading.order_events enable row level security;
-- why through orders: events carry no strategy; the subquery is itself bound by the orders policy
create policy strategy_scope on trading.order_events
    using ((select internal.visible_strategy_ids()) is null
           or exists (select from trading.orders o where o.order_id = order_events.order_id));
comment on policy strategy_scope on trading.order_events is 'A scoped session sees the events of the orders it sees.';

alter table trading.exchange_initiated_orders enable row level security;
-- why through orders, as order_events: the row carries no strategy
create policy strategy_scope on trading.exchange_initiated_orders
    using ((select internal.visible_strategy_ids()) is null
           or exists (select from trading.orders o where o.order_id = exchange_initiated_orders.order_id));
comment on policy strategy_scope on trading.exchange_initiated_orders is
    'A scoped session sees the exchange-initiated marks of the orders it sees.';

alter table trading.trades enable row level security;
create policy strategy_scope on trading.trades
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.trades is 'A scoped session sees its user''s strategies'' trades.';

alter table trading.positions enable row level security;
create policy strategy_scope on trading.positions
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.positions is 'A scoped session sees its user''s strategies'' positions.';

alter table trading.funding_payments enable row level security;
create policy strategy_scope on trading.funding_payments
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.funding_payments is 'A scoped session sees its user''s strategies'' funding.';

alter table trading.daily_pnl enable row level security;
create policy strategy_scope on trading.daily_pnl
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.daily_pnl is 'A scoped session sees its user''s strategies'' daily PnL.';

alter table trading.hourly_pnl enable row level security;
create policy strategy_scope on trading.hourly_pnl
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.hourly_pnl is 'A scoped session sees its user''s strategies'' hourly PnL.';

alter table trading.portfolio_snapshots enable row level security;
-- why: the all-strategy total row (strategy_id null) is only for sessions that see every strategy
create policy strategy_scope on trading.portfolio_snapshots
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.portfolio_snapshots is 'A scoped session sees its user''s strategies'' snapshots, not the totals.';

alter table trading.spread_trades enable row level security;
create policy strategy_scope on trading.spread_trades
    using ((select internal.visible_strategy_ids()) is null
           or strategy_id = any ((select internal.visible_strategy_ids())::integer[]));
comment on policy strategy_scope on trading.spread_trades is 'A scoped session sees its user''s strategies'' spread trades.';

alter table auth.api_keys enable row level security;
create policy owner_scope on auth.api_keys
    using ((select internal.session_permissions()) is null
           or 'keys:all' = any ((select internal.session_permissions())::text[])
           or user_id = (select internal.session_user_id()));
comment on policy owner_scope on auth.api_keys is 'A scoped session sees its user''s API keys (all with keys:all).';

-- why: the auditor role reads the audit log and the security events, and a session of it scoped to
-- a user without audit:read (a trader) read every user's order images and logins there, while
-- audit.history refused it (42S01); the audit triggers and the auth functions write as the owner,
-- which the policies do not bind
alter table audit.log enable row level security;
create policy audit_scope on audit.log
    using ((select internal.session_permissions()) is null
           or 'audit:read' = any ((select internal.session_permissions())::text[]));
comment on policy audit_scope on audit.log is 'A scoped session sees the audit log only with audit:read.';

alter table audit.security_events enable row level security;
create policy audit_scope on audit.security_events
    using ((select internal.session_permissions()) is null
           or 'audit:read' = any ((select internal.session_permissions())::text[]));
comment on policy audit_scope on audit.security_events is 'A scoped session sees the security events only with audit:read.';

-- ============================================================================
-- ops (issue 7: operations): the backup catalog and the row retention are readable by people;
-- writing them is the operators' (spreadedge backup, spreadedge partitions maintain, as the
-- database owner or a superuser)
-- ============================================================================
grant select on ops.backup_runs to spreadedge_readonly;
grant select on ops.migrate_runs to spreadedge_readonly;
grant select on ops.row_retention to spreadedge_readonly;

-- ============================================================================
-- monitor (issue 5): metrics, alert rules and alerts, the notification outbox, risk limits
-- ============================================================================
-- The monitor tables are private like the others: no role but spreadedge_owner reads or writes
-- them. People and dashboards read the monitor views, applications call the monitor functions
-- (grants in functions/99_privileges.sql); readonly already has USAGE on schema monitor above.
-- Alert rules, acknowledgements and risk limits are managed by unscoped sessions, or by users
-- with the alerts:manage and risk:manage permissions (admin; schema/70_monitor.sql).
