-- spreadedge schema: auth
-- Application users, their roles and permissions, login sessions, two-factor secrets, the security
-- policy and exchange API keys. Logic lives in functions/70_auth_*.sql; these tables are private.
-- Secrets are never stored in clear: passwords as bcrypt hashes, session tokens as sha256 digests,
-- TOTP secrets encrypted under the user's password, API keys under a master key that never enters
-- the database except as a bind parameter.

-- ============================================================================
-- Security policy (one row)
-- ============================================================================
create table auth.security_policy (
    -- why: the policy is one row; a boolean key that must be true allows exactly one
    singleton               boolean primary key default true check (singleton),
    password_min_length     integer not null default 12 check (password_min_length between 8 and 256),
    password_min_classes    integer not null default 3 check (password_min_classes between 1 and 4),
    -- why 4..16: gen_salt('bf') takes 4..31, and past 16 one login costs seconds
    bcrypt_cost             integer not null default 10 check (bcrypt_cost between 4 and 16),
    max_failed_logins       integer not null default 5 check (max_failed_logins between 1 and 100),
    failed_login_window     interval not null default '15 minutes' check (failed_login_window > '0'),
    lockout_duration        interval not null default '30 minutes' check (lockout_duration > '0'),
    session_idle_timeout    interval not null default '30 minutes' check (session_idle_timeout > '0'),
    session_max_lifetime    interval not null default '12 hours' check (session_max_lifetime > '0'),
    totp_required_roles     text[] not null default '{admin}',
    updated_at              timestamptz not null default now(),
    check (session_idle_timeout <= session_max_lifetime)
);
comment on table auth.security_policy is
    'The security policy (one row): passwords, lockout, sessions, 2FA. Change it with auth.set_security_policy.';
comment on column auth.security_policy.singleton is 'Always true: the table holds one row.';
comment on column auth.security_policy.password_min_length is 'Minimum password length in characters.';
comment on column auth.security_policy.password_min_classes is
    'Minimum number of character classes (lower case, upper case, digit, other) a password mixes.';
comment on column auth.security_policy.bcrypt_cost is 'bcrypt cost of new password hashes (2^cost rounds); older hashes are upgraded at login.';
comment on column auth.security_policy.max_failed_logins is 'Failed logins within failed_login_window that lock the account.';
comment on column auth.security_policy.failed_login_window is 'Window in which failed logins are counted together.';
comment on column auth.security_policy.lockout_duration is 'How long a locked account stays locked.';
comment on column auth.security_policy.session_idle_timeout is 'A session unused this long expires; each validation slides it.';
comment on column auth.security_policy.session_max_lifetime is 'A session expires this long after login, used or not.';
comment on column auth.security_policy.totp_required_roles is 'Application roles whose users must log in with a TOTP code.';
comment on column auth.security_policy.updated_at is 'When the policy last changed.';
insert into auth.security_policy default values;

-- ============================================================================
-- Application roles and permissions
-- ============================================================================
create table auth.roles (
    role_name   text primary key check (role_name ~ '^[a-z][a-z_]{0,30}$'),
    description text not null
);
comment on table auth.roles is 'Application roles (admin, trader, viewer, auditor); users get permissions through them.';
comment on column auth.roles.role_name is 'Role name, e.g. trader.';
comment on column auth.roles.description is 'Who the role is for.';

create table auth.permissions (
    permission  text primary key check (permission ~ '^[a-z_]+:[a-z_]+$'),
    description text not null
);
comment on table auth.permissions is 'Named permissions the API functions check, e.g. orders:write.';
comment on column auth.permissions.permission is 'resource:action, e.g. orders:write.';
comment on column auth.permissions.description is 'What the permission allows.';

create table auth.role_permissions (
    role_name  text not null references auth.roles on delete cascade,
    permission text not null references auth.permissions on delete cascade,
    primary key (role_name, permission)
);
comment on table auth.role_permissions is 'Which permissions each application role grants.';
comment on column auth.role_permissions.role_name is 'The role.';
comment on column auth.role_permissions.permission is 'A permission the role grants.';

insert into auth.roles (role_name, description) values
    ('admin',   'Runs the platform: users, keys, policy, every strategy.'),
    ('trader',  'Trades their own strategies and manages their own exchange API keys.'),
    ('viewer',  'Reads their own strategies'' orders, positions and PnL.'),
    ('auditor', 'Reads everything, including the audit log; changes nothing.');
insert into auth.permissions (permission, description) values
    ('orders:read',       'Read orders and trades.'),
    ('orders:write',      'Place, cancel and fill orders; record funding.'),
    ('positions:read',    'Read positions.'),
    ('pnl:read',          'Read PnL summaries and portfolio snapshots.'),
    ('strategies:write',  'Create strategies (owned by the creating user).'),
    ('strategies:all',    'See and act on every user''s strategies, not only one''s own.'),
    ('instruments:write', 'Create and change instruments.'),
    ('keys:manage',       'Store, list and revoke one''s own exchange API keys.'),
    ('keys:all',          'See and manage every user''s exchange API keys.'),
    ('users:manage',      'Create, disable and unlock users; grant roles; reset passwords and 2FA.'),
    ('policy:manage',     'Change the security policy.'),
    ('audit:read',        'Read the audit log and the security events.');
insert into auth.role_permissions (role_name, permission)
select 'admin', p.permission from auth.permissions p
union all
select 'trader', unnest(array['orders:read', 'orders:write', 'positions:read', 'pnl:read',
                              'strategies:write', 'keys:manage'])
union all
select 'viewer', unnest(array['orders:read', 'positions:read', 'pnl:read'])
union all
select 'auditor', unnest(array['orders:read', 'positions:read', 'pnl:read', 'strategies:all', 'audit:read']);

-- ============================================================================
-- Users
-- ============================================================================
create table auth.users (
    user_id             bigint generated always as identity primary key,
    username            text not null check (username ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$'),
    password_hash       text not null,
    created_at          timestamptz not null default now(),
    password_changed_at timestamptz not null default now(),
    disabled_at         timestamptz,
    failed_logins       integer not null default 0 check (failed_logins >= 0),
    last_failed_at      timestamptz,
    locked_until        timestamptz,
    last_login_at       timestamptz,
    -- why encrypted under the password: the database can verify a code only while the user proves
    -- the password, so a stolen dump or an admin cannot mint codes
    totp_secret         bytea,
    totp_enabled_at     timestamptz,
    totp_last_step      bigint,
    check (totp_enabled_at is null or totp_secret is not null)
);
comment on table auth.users is 'Application users. Create with auth.create_user; list with auth.user_accounts.';
comment on column auth.users.user_id is 'Surrogate key; spreadedge.user_id names it.';
comment on column auth.users.username is 'Login name, unique without regard to case.';
comment on column auth.users.password_hash is 'bcrypt hash (crypt/gen_salt(''bf'')); never the password.';
comment on column auth.users.created_at is 'When the user was created.';
comment on column auth.users.password_changed_at is 'When the password last changed.';
comment on column auth.users.disabled_at is 'When the user was disabled; disabled users cannot log in.';
comment on column auth.users.failed_logins is 'Failed logins counted in the current window.';
comment on column auth.users.last_failed_at is 'When the last failed login happened.';
comment on column auth.users.locked_until is 'The account is locked until this time after too many failed logins.';
comment on column auth.users.last_login_at is 'When the user last logged in.';
comment on column auth.users.totp_secret is 'TOTP secret, pgp_sym_encrypt''ed (AES-256) under the user''s password.';
comment on column auth.users.totp_enabled_at is 'When 2FA was confirmed; null while not enrolled or pending confirmation.';
comment on column auth.users.totp_last_step is 'The last TOTP time step accepted; a code of this step or older is a replay.';
-- why "C": usernames are ASCII, and lower() in a Turkish default collation folds I to a dotless ı
create unique index users_username_key on auth.users (lower(username collate "C"));
comment on index auth.users_username_key is
    'One user per username without regard to ASCII case (the "C" collation: the same on a server of any locale).';

create table auth.user_roles (
    user_id    bigint not null references auth.users,
    role_name  text not null references auth.roles,
    granted_at timestamptz not null default now(),
    primary key (user_id, role_name)
);
comment on table auth.user_roles is 'Application roles held by each user.';
comment on column auth.user_roles.user_id is 'The user.';
comment on column auth.user_roles.role_name is 'A role the user holds.';
comment on column auth.user_roles.granted_at is 'When the role was granted.';

-- ============================================================================
-- Sessions
-- ============================================================================
create table auth.sessions (
    session_id      bigint generated always as identity primary key,
    user_id         bigint not null references auth.users,
    -- why a digest: a leaked table or backup must not hand out live sessions
    token_hash      bytea not null unique,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    idle_expires_at timestamptz not null,
    expires_at      timestamptz not null,
    revoked_at      timestamptz,
    revoked_reason  text,
    ip_address      inet,
    user_agent      text,
    check (idle_expires_at <= expires_at)
);
comment on table auth.sessions is 'Login sessions. The token is returned once by auth.login; only its sha256 is kept.';
comment on column auth.sessions.session_id is 'Surrogate key.';
comment on column auth.sessions.user_id is 'The logged-in user.';
comment on column auth.sessions.token_hash is 'sha256 of the session token.';
comment on column auth.sessions.created_at is 'Login time.';
comment on column auth.sessions.last_seen_at is 'Last successful auth.validate_session.';
comment on column auth.sessions.idle_expires_at is 'Expiry by idleness; slides at each validation, never past expires_at.';
comment on column auth.sessions.expires_at is 'Absolute expiry (login time + the policy''s session_max_lifetime).';
comment on column auth.sessions.revoked_at is 'When the session was logged out or revoked.';
comment on column auth.sessions.revoked_reason is 'Why: logout, revoked, password changed, user disabled, 2FA required.';
comment on column auth.sessions.ip_address is 'Client address given at login.';
comment on column auth.sessions.user_agent is 'Client user agent given at login.';
create index sessions_user_idx on auth.sessions (user_id) where revoked_at is null;
-- why: the row retention finds the sessions that ended before its cutoff by this expression
-- (internal.row_retention_rules); without it each hourly run read every session kept (migration 0063)
create index sessions_ended_idx on auth.sessions ((least(revoked_at, idle_expires_at)));
comment on index auth.sessions_ended_idx is
    'Sessions by when they ended (revoked or idle-expired): the row retention''s search for those that ended before its cutoff.';

-- ============================================================================
-- Exchange API keys
-- ============================================================================
create table auth.master_keys (
    key_version integer primary key check (key_version > 0),
    -- why: tells a wrong master key from the right one before anything is decrypted or written
    verifier    bytea not null,
    created_at  timestamptz not null default now(),
    retired_at  timestamptz
);
comment on table auth.master_keys is
    'Versions of the API-key master key: a keyed verifier each, never the key. One version is current (retired_at null).';
comment on column auth.master_keys.key_version is 'Version number, 1 for the first master key; rotation adds one.';
comment on column auth.master_keys.verifier is 'HMAC-SHA256 of a fixed label under the master key.';
comment on column auth.master_keys.created_at is 'When the version was first used.';
comment on column auth.master_keys.retired_at is 'When a rotation replaced it; null for the current version.';
create unique index master_keys_current_key on auth.master_keys ((true)) where retired_at is null;

create table auth.api_keys (
    key_id           bigint generated always as identity primary key,
    user_id          bigint not null references auth.users,
    exchange_id      smallint not null references ref.exchanges,
    label            text not null check (label <> '' and length(label) <= 100),
    api_key          bytea not null,
    api_secret       bytea not null,
    passphrase       bytea,
    permissions      text[] not null default '{read,trade}'
        check (permissions <@ array['read', 'trade', 'withdraw'] and cardinality(permissions) > 0),
    -- why keyed: a plain hash of a short API key could be brute-forced from a dump
    fingerprint      bytea not null,
    key_version      integer not null references auth.master_keys,
    created_at       timestamptz not null default now(),
    rotated_at       timestamptz,
    last_revealed_at timestamptz,
    revoked_at       timestamptz
);
comment on table auth.api_keys is
    'Exchange API keys, AES-256 encrypted under the master key. Store with auth.store_api_key; list with auth.api_key_list.';
comment on column auth.api_keys.key_id is 'Surrogate key.';
comment on column auth.api_keys.user_id is 'The user the key belongs to.';
comment on column auth.api_keys.exchange_id is 'The exchange that issued the key.';
comment on column auth.api_keys.label is 'Name the user gives the key, unique per user and exchange among live keys.';
comment on column auth.api_keys.api_key is 'pgp_sym_encrypt(api key, master key, cipher-algo=aes256); empty once the key is revoked.';
comment on column auth.api_keys.api_secret is 'pgp_sym_encrypt(api secret, master key, cipher-algo=aes256); empty once the key is revoked.';
comment on column auth.api_keys.passphrase is 'pgp_sym_encrypt(passphrase, master key, cipher-algo=aes256), for exchanges that use one; null once the key is revoked.';
comment on column auth.api_keys.permissions is 'What the exchange lets the key do: read, trade, withdraw.';
comment on column auth.api_keys.fingerprint is 'HMAC-SHA256 of the API key under the master key: finds duplicates without decrypting.';
comment on column auth.api_keys.key_version is 'Master key version the row is encrypted under.';
comment on column auth.api_keys.created_at is 'When the key was stored.';
comment on column auth.api_keys.rotated_at is 'When the row was last re-encrypted under a new master key.';
comment on column auth.api_keys.last_revealed_at is 'When auth.reveal_api_key last decrypted it.';
comment on column auth.api_keys.revoked_at is 'When the key was revoked; a revoked key cannot be revealed, and its encrypted key, secret and passphrase are wiped.';
-- why live keys only: a revoked key frees its label (an exchange key rotated under the same label)
-- and may itself be stored again (migration 0020)
create unique index api_keys_live_label_key on auth.api_keys (user_id, exchange_id, label)
    where revoked_at is null;
comment on index auth.api_keys_live_label_key is
    'A label names one live key per user and exchange; a revoked key frees its label.';
create unique index api_keys_live_fingerprint_key on auth.api_keys (exchange_id, fingerprint)
    where revoked_at is null;
comment on index auth.api_keys_live_fingerprint_key is
    'An API key is stored live once per exchange; a revoked one may be stored again.';
create index api_keys_user_idx on auth.api_keys (user_id);
