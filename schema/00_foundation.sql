-- spreadedge schema: foundation
-- Extensions, the schemas that are the project's namespaces, and the table of project SQLSTATEs.
-- This file (with the rest of schema/) is the canonical current DDL; migrations/ hold its history.

-- ============================================================================
-- Extensions
-- ============================================================================
create extension if not exists pgcrypto;
create extension if not exists pg_stat_statements;
create extension if not exists hypopg;
create schema if not exists partman;
create extension if not exists pg_partman schema partman;

-- why: times are stored and shown in UTC. A server installed with the machine's zone gave every
-- session without a TimeZone of its own (psql, pg_cron's jobs) that zone; the functions whose
-- results depend on it work in UTC whatever the session, and sessions now show UTC by default
do $$
begin
    execute format('alter database %I set timezone = %L', current_database(), 'UTC');
end
$$;

-- ============================================================================
-- Schemas (namespaces)
-- ============================================================================
create schema ref;
comment on schema ref is 'Reference data: exchanges, the markets they offer, instruments and their trading rules.';
create schema trading;
comment on schema trading is 'Trading core: strategies, orders, fills (trades), positions, funding, PnL and snapshots.';
create schema market;
comment on schema market is 'Market data: quotes, ticks, candles and indicators.';
create schema auth;
comment on schema auth is 'Users, sessions, roles and exchange API keys.';
create schema monitor;
comment on schema monitor is 'Metrics, alert rules, alerts, notifications, risk limits and risk events.';
create schema audit;
comment on schema audit is 'The append-only audit log of every change to the business tables.';
create schema ops;
comment on schema ops is 'Operations: error codes, tuning, partitions, backups and health.';
-- why a schema of its own: \df trading.* then lists only what callers use, and roles get EXECUTE
-- on the API schemas without the helpers
create schema internal;
comment on schema internal is 'Helpers of the API functions (lookups, locks, checks); not an interface.';

-- ============================================================================
-- Project SQLSTATEs: the one table every raised error code comes from
-- ============================================================================
-- Codes use standard classes so that clients get meaningful exception classes
-- (psycopg: class 22 -> DataError, 23 -> IntegrityError, 28 -> OperationalError,
-- 42 -> ProgrammingError, 55 -> OperationalError)
-- and a subclass starting with S (implementation-defined range) so they never
-- collide with PostgreSQL's own codes.
create table ops.error_codes (
    sqlstate    char(5) primary key
        -- why: SQLSTATEs are five characters of [0-9A-Z]; ours are S-subclasses of standard classes
        check (sqlstate ~ '^(22|23|28|42|55)S[0-9]{2}$'),
    name        text not null unique
        check (name ~ '^[a-z][a-z0-9_]*$'),
    description text not null
);
comment on table ops.error_codes is
    'Every SQLSTATE a spreadedge function raises for an error a caller can cause; clients branch on these codes.';
comment on column ops.error_codes.sqlstate is 'The five-character SQLSTATE, e.g. 22S03.';
comment on column ops.error_codes.name is 'Stable snake_case name; the Python layer raises the exception class of this name.';
comment on column ops.error_codes.description is 'When the error is raised.';

insert into ops.error_codes (sqlstate, name, description) values
    -- class 22: the value given is invalid
    ('22S01', 'invalid_quantity',       'A quantity is missing, zero, negative, NaN or infinite.'),
    ('22S02', 'invalid_price',          'A price is missing where required, zero, negative, NaN or infinite.'),
    ('22S03', 'price_off_tick',         'An order price (or stop price) is not a multiple of the instrument''s tick size.'),
    ('22S04', 'quantity_off_lot',       'An order quantity is not a multiple of the instrument''s lot size.'),
    ('22S05', 'below_min_notional',     'An order''s notional (quantity x price x multiplier) is below the instrument''s minimum.'),
    ('22S06', 'invalid_side',           'A side is not buy or sell.'),
    ('22S07', 'invalid_order_type',     'An order type is not market, limit, stop_market or stop_limit, or its prices do not fit the type.'),
    ('22S08', 'unpriced_fee',           'A fee in a third currency has no quote value given and none can be priced from market data.'),
    ('22S09', 'invalid_argument',       'Any other argument out of its domain: a null where a value is required, an unknown group_by, a bad range, a call in the wrong isolation level.'),
    ('22S10', 'funding_not_applicable', 'Funding was recorded for an instrument that is not a perpetual.'),
    ('22S11', 'weak_password',          'A new password breaks the security policy (length or character classes).'),
    ('22S23', 'unpriced_asset',         'An amount in one asset cannot be valued in another: no instrument pairing them (or their inverse pair) has a market price.'),
    -- class 23: the value refers to something that does not exist or conflicts with what is stored
    ('23S01', 'unknown_exchange',       'No exchange has this code.'),
    ('23S02', 'unknown_instrument',     'No instrument has this symbol on this exchange.'),
    ('23S03', 'unknown_strategy',       'No strategy has this name.'),
    ('23S04', 'unknown_order',          'No order has this id, or the order has no trade with the exchange trade id given (a fill''s fee set later; a fill delivered again after orders cleanup removed its order).'),
    ('23S05', 'overfill',               'A fill would take an order''s filled quantity above its quantity, or an amendment would set its quantity at or below the filled quantity.'),
    ('23S06', 'conflicting_duplicate',  'A retried order, fill, funding payment or spread trade reuses a key with different values, an order is acknowledged with a second exchange order id or with one another order of its instrument has, a portfolio snapshot is taken twice at one time, a strategy name is another user''s, or a fill''s fee is set to another than the one it has.'),
    ('23S07', 'unknown_user',           'No user has this id or username (or it is not visible to the session''s user).'),
    ('23S08', 'duplicate_api_key',      'This exchange API key is already stored for this exchange.'),
    ('23S09', 'unknown_api_key',        'No API key has this id (or it belongs to another user), or it is revoked.'),
    ('23S10', 'unknown_role',           'No application role has this name.'),
    ('23S11', 'username_taken',         'Another user already has this username.'),
    -- class 28: the caller could not prove who they are
    ('28S01', 'invalid_credentials',    'A password or TOTP code given to confirm an operation is wrong, or the account is locked after failed logins.'),
    ('28S02', 'invalid_session',        'A session token is unknown, expired or revoked, or its user is disabled.'),
    ('28S03', 'wrong_master_key',       'The master key given is not the one the API keys are encrypted under.'),
    -- class 42: the caller is not allowed to do this
    ('42S01', 'permission_denied',      'The application user of the session (spreadedge.user_id) lacks the permission the operation needs.'),
    -- class 55: the object is not in a state that allows the operation
    ('55S01', 'illegal_state_transition', 'The order''s current status does not allow the requested change.'),
    ('55S02', 'append_only',            'An UPDATE, DELETE or TRUNCATE was attempted on an append-only table.'),
    ('55S03', 'totp_state',             'The user''s two-factor state does not allow this (not enrolled, already enabled, nothing pending).'),
    ('55S04', 'user_disabled',          'The user is disabled.'),
    ('55S07', 'instrument_in_use',      'An instrument with orders, trades or funding payments cannot change its base asset, quote asset or market type.');
