-- spreadedge schema: audit
-- The audit log: one row per inserted, updated or deleted row of every business table, written by
-- statement-level triggers (functions/80_audit.sql) from transition tables so bulk writes stay cheap.
-- Append-only: UPDATE, DELETE and TRUNCATE on it fail; old partitions leave by retention only.

create sequence audit.log_audit_id_seq as bigint;
comment on sequence audit.log_audit_id_seq is 'Audit row ids, increasing in write order.';

create table audit.log (
    audit_id   bigint not null default nextval('audit.log_audit_id_seq'),
    logged_at  timestamptz not null default now(),
    table_name text not null,
    operation  text not null,
    -- why text: the canonical text of the key's jsonb; a btree on text costs a fraction of one on jsonb
    row_key    text not null,
    old_row    jsonb,
    new_row    jsonb,
    -- why: the application user behind the change; each entry point of the Python layer sets
    -- spreadedge.actor once for its session (README, Audit)
    actor      text default nullif(current_setting('spreadedge.actor', true), ''),
    db_role    text not null default session_user,
    txid       bigint not null default txid_current(),
    -- why no CHECK tying operation to the row images: PostgreSQL parses and plans a table's checks
    -- again in every statement that writes it, and three audit statements run in every fill
    -- (about 6 % of a fill's instructions for this one check). audit.log_changes is the only
    -- writer (spreadedge_owner alone may insert) and tests/test_audit.py pins what it writes.
    primary key (audit_id, logged_at)
) partition by range (logged_at);
comment on table audit.log is
    'Append-only audit log of the business tables, partitioned by month. Read one row''s story with audit.history.';
comment on column audit.log.audit_id is 'Audit row id, increasing in write order.';
comment on column audit.log.logged_at is 'Transaction time of the change.';
comment on column audit.log.table_name is 'Schema-qualified table, e.g. trading.orders.';
comment on column audit.log.operation is
    'INSERT, UPDATE or DELETE; BASELINE for the first image of a row older than its table''s audit triggers.';
comment on column audit.log.row_key is 'The row''s key columns as json text, e.g. {"order_id": 42} (canonical jsonb output).';
comment on column audit.log.old_row is 'The row before the change (null for INSERT).';
comment on column audit.log.new_row is 'The row after the change (null for DELETE).';
comment on column audit.log.actor is 'Application user from the spreadedge.actor setting, if set.';
comment on column audit.log.db_role is 'Database role of the session that made the change.';
comment on column audit.log.txid is 'Transaction id: rows with the same txid changed together.';
create index log_table_key_idx on audit.log (table_name, row_key);

-- ============================================================================
-- Security events
-- ============================================================================
create type audit.security_event_type as enum (
    'user_created',       -- auth.create_user
    'user_disabled',      -- auth.disable_user
    'user_enabled',       -- auth.enable_user
    'login_succeeded',    -- auth.login returned a session
    'login_failed',       -- auth.login refused (details.reason says why; never the password)
    'account_locked',     -- too many failed logins within the policy's window
    'account_unlocked',   -- auth.unlock_user
    'logout',             -- auth.logout
    'session_revoked',    -- auth.revoke_sessions, a password change or a disabled user
    'password_changed',   -- auth.change_password (details.reset: by an admin, without the old one)
    'totp_enrolled',      -- auth.enroll_totp: a secret was generated, not yet confirmed
    'totp_enabled',       -- auth.confirm_totp: the first code was right
    'totp_disabled',      -- auth.disable_totp, or a password reset that drops the secret
    'role_granted',       -- auth.grant_role
    'role_revoked',       -- auth.revoke_role
    'policy_changed',     -- auth.set_security_policy (details: old and new values)
    'api_key_stored',     -- auth.store_api_key
    'api_key_revealed',   -- auth.reveal_api_key
    'api_key_revoked',    -- auth.revoke_api_key
    'master_key_rotated'  -- auth.rotate_master_key (details: versions and key count)
);
comment on type audit.security_event_type is 'Kinds of security event; see the comments in schema/30_audit.sql.';

create table audit.security_events (
    event_id    bigint generated always as identity primary key,
    -- why clock time: events of one transaction (failures, then the lock) keep their order
    occurred_at timestamptz not null default clock_timestamp(),
    event_type  audit.security_event_type not null,
    user_id     bigint,
    username    text,
    actor       text default nullif(current_setting('spreadedge.actor', true), ''),
    db_role     text not null default session_user,
    ip_address  inet,
    user_agent  text,
    details     jsonb not null default '{}'
);
comment on table audit.security_events is
    'Append-only log of security events: logins, lockouts, sessions, passwords, 2FA, roles, policy, API keys. Never holds a secret.';
comment on column audit.security_events.event_id is 'Event id, increasing in write order.';
comment on column audit.security_events.occurred_at is 'When it happened (clock time).';
comment on column audit.security_events.event_type is 'What happened.';
comment on column audit.security_events.user_id is 'The user concerned, when known (null for a login with an unknown username).';
comment on column audit.security_events.username is 'The username concerned, as given at login for failures.';
comment on column audit.security_events.actor is 'Who acted: spreadedge.actor, else the session''s application user (user:<id>), if set.';
comment on column audit.security_events.db_role is 'Database role of the session.';
comment on column audit.security_events.ip_address is 'Client address, when the caller gave one.';
comment on column audit.security_events.user_agent is 'Client user agent, when the caller gave one.';
comment on column audit.security_events.details is 'Event specifics (reason, key id, role, old and new policy values).';
create index security_events_user_idx on audit.security_events (user_id, occurred_at);
create index security_events_type_idx on audit.security_events (event_type, occurred_at);
