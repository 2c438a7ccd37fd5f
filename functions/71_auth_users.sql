-- spreadedge functions: users and application roles
-- auth.create_user, change_password, disable/enable/unlock, roles, and the auth.user_accounts view.

create or replace function internal.lock_user(p_user_id bigint)
    returns auth.users
    volatile
    language plpgsql
as $$
-- The user row, locked; raises unknown_user (23S07).
declare
    v_user auth.users;
begin
    select u.* into v_user from auth.users u where u.user_id = p_user_id for update;
    if v_user.user_id is null then
        raise exception 'user % does not exist', coalesce(p_user_id::text, 'null')
            using errcode = '23S07';
    end if;
    return v_user;
end;
$$;
comment on function internal.lock_user(bigint) is 'Locks and returns a user by id; raises 23S07 unknown_user.';

create or replace function internal.account_is_locked(p_locked_until timestamptz, p_last_failed_at timestamptz)
    returns boolean
    volatile
    language sql
as $$
    -- True while a lockout lasts: before locked_until, unless the failed login that locked the
    -- account (last_failed_at, written with locked_until) is later than the clock now reads.
    -- why: the server's clock then stepped back since the lockout began (internal.stamped_ahead_of_clock),
    -- and locked_until, written by the clock that ran ahead, would keep the account locked for the
    -- whole step more than the policy's lockout_duration (hours for a clock set right hours back);
    -- the account may be tried again, and failures lock it again
    select coalesce(p_locked_until > now(), false)
           and not coalesce(internal.stamped_ahead_of_clock(p_last_failed_at), false)
$$;
comment on function internal.account_is_locked(timestamptz, timestamptz) is
    'True while an account is locked out: before locked_until, unless the clock stepped back past the failed login that locked it.';

create or replace function internal.failures_count(p_last_failed_at timestamptz, p_window interval)
    returns boolean
    volatile
    language sql
as $$
    -- True when failed logins up to p_last_failed_at still count toward a lockout: the last one is
    -- within the window, and not later than the clock now reads (a clock stepped back would
    -- otherwise keep them counting for the whole step more). now() at UTC: a window in days is
    -- whole 24-hour days whatever the TimeZone
    select coalesce(p_last_failed_at > ((now() at time zone 'UTC') - p_window) at time zone 'UTC'
                    and not internal.stamped_ahead_of_clock(p_last_failed_at), false)
$$;
comment on function internal.failures_count(timestamptz, interval) is
    'True when failed logins up to the last one still count toward a lockout (within the window, not stamped ahead of a clock that stepped back).';

create or replace function internal.verify_password(p_user auth.users, p_password text)
    returns void
    volatile
    language plpgsql
as $$
-- Raises invalid_credentials (28S01) unless p_password is the user's password; for a disabled user
-- (55S04) or a locked one (28S01) it checks nothing, as auth.login does.
-- why: change_password and the TOTP functions check a password (and a code) too; without this a
-- caller holding a session could keep guessing through them after login has locked the account,
-- and could guess a disabled account's password. Their failures cannot be counted like login's: a
-- raised error rolls the count back, and they must raise
begin
    if p_user.disabled_at is not null then
        raise exception 'user % is disabled', p_user.user_id
            using errcode = '55S04', hint = 'An admin can enable the user again (auth.enable_user).';
    end if;
    if internal.account_is_locked(p_user.locked_until, p_user.last_failed_at) then
        raise exception 'user % is locked after too many failed logins', p_user.user_id
            using errcode = '28S01',
                  hint = 'Wait until the lockout ends (auth.user_accounts.locked_until), or have an admin run auth.unlock_user.';
    end if;
    if not internal.password_matches(p_user.password_hash, p_password) then
        raise exception 'wrong password for user %', p_user.user_id
            using errcode = '28S01';
    end if;
end;
$$;
comment on function internal.verify_password(auth.users, text) is
    'Raises 28S01 invalid_credentials unless the password is the user''s; refuses a disabled user (55S04) or a locked one (28S01) without checking it.';

-- the two-argument form before internal.revoke_user_sessions took p_created_before: a call with two
-- arguments would match both
drop function if exists internal.revoke_user_sessions(bigint, text);

create or replace function internal.revoke_user_sessions(p_user_id bigint, p_reason text,
                                                         p_created_before timestamptz default null)
    returns integer
    volatile
    language plpgsql
as $$
-- Revoke every live session of the user (created before p_created_before when given); record one
-- session_revoked event when there were some.
-- why the times and not internal.session_is_live: a session past its lifetime or idle timeout is
-- over already (auth.logout refuses it too); marking it revoked would count it and rewrite why and
-- when it ended. The user's disabled_at is left out: auth.disable_user sets it before calling this
declare
    v_count integer;
begin
    update auth.sessions s
    set revoked_at = now(), revoked_reason = p_reason
    where s.user_id = p_user_id and s.revoked_at is null
      and now() < s.expires_at and now() < s.idle_expires_at
      and (p_created_before is null or s.created_at < p_created_before);
    get diagnostics v_count = row_count;
    if v_count > 0 then
        perform internal.security_event('session_revoked', p_user_id, null,
            jsonb_build_object('sessions', v_count, 'reason', p_reason));
    end if;
    return v_count;
end;
$$;
comment on function internal.revoke_user_sessions(bigint, text, timestamptz) is
    'Revokes every live (unexpired, unrevoked) session of a user (created before a time, when given), with a session_revoked event; returns how many.';

create or replace function internal.revoke_sessions_without_totp(p_user auth.users, p_reason text)
    returns integer
    volatile
    language sql
as $$
    -- Revoke the user's live sessions that were logged in without a TOTP code: all of them while
    -- 2FA is not confirmed, else those older than its confirmation (auth.login asks for a code from
    -- then on). One session_revoked event when there were some; returns how many.
    -- why: auth.grant_role and auth.set_security_policy call it when the user's role comes to need
    -- 2FA; a session logged in with the password alone would otherwise carry that role's
    -- permissions until it expires, though the policy lets no such login happen; and
    -- auth.confirm_totp calls it when the user turns 2FA on (with the row before, so all of them)
    select internal.revoke_user_sessions(p_user.user_id, p_reason,
                                         coalesce(p_user.totp_enabled_at, 'infinity'))
$$;
comment on function internal.revoke_sessions_without_totp(auth.users, text) is
    'Revokes a user''s live sessions logged in without a TOTP code (all while 2FA is not confirmed), with a session_revoked event; returns how many.';

create or replace function auth.user_id_of(username text)
    returns bigint
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- The id of the user with this username (any case); raises unknown_user (23S07). A session scoped
-- to a user without users:manage finds only itself, as auth.user_accounts shows it.
#variable_conflict use_column
declare
    v_id bigint;
begin
    select u.user_id into v_id
    from auth.users u
    -- why "C" (the expression of auth.users_username_key): usernames are ASCII, and a Turkish
    -- collation's lower('IVAN') is 'ıvan' (dotless ı)
    where lower(u.username collate "C") = lower(user_id_of.username collate "C")
      -- why: another user's id (and that the name exists) is not a trader's to learn
      and (internal.session_user_id() is null or u.user_id = internal.session_user_id()
           or 'users:manage' = any (internal.session_permissions()));
    if v_id is null then
        raise exception 'user "%" does not exist', user_id_of.username
            using errcode = '23S07';
    end if;
    return v_id;
end;
$$;
comment on function auth.user_id_of(text) is 'The user id of a username (case-insensitive); raises 23S07 unknown_user, also for another user in a session scoped to a user without users:manage.';

create or replace function auth.create_user(
    username text,
    password text,
    roles    text[] default '{trader}'
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Create an application user with a bcrypt-hashed password and the given roles. Needs users:manage.
#variable_conflict use_column
declare
    v_id      bigint;
    v_unknown text;
begin
    perform internal.require_permission('users:manage');
    if create_user.username is null or create_user.username !~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$' then
        raise exception 'username "%" is not 1 to 63 letters, digits and . _ @ - (starting with a letter or digit)',
            coalesce(create_user.username, 'null')
            using errcode = '22S09';
    end if;
    if coalesce(cardinality(create_user.roles), 0) = 0 then
        raise exception 'a user needs at least one role'
            using errcode = '22S09', hint = 'auth.roles lists the roles: admin, trader, viewer, auditor.';
    end if;
    select r into v_unknown from unnest(create_user.roles) r
    where r is null or not exists (select from auth.roles ar where ar.role_name = r)
    limit 1;
    if found then
        raise exception 'role "%" does not exist', coalesce(v_unknown, 'null')
            using errcode = '23S10', hint = 'auth.roles lists the roles: admin, trader, viewer, auditor.';
    end if;
    perform internal.check_new_password(create_user.password);
    insert into auth.users (username, password_hash)
    values (create_user.username, internal.hash_password(create_user.password))
    -- the expression of auth.users_username_key (see migration 0066)
    on conflict ((lower(username collate "C"))) do nothing
    returning user_id into v_id;
    if v_id is null then
        raise exception 'username "%" is taken', create_user.username
            using errcode = '23S11';
    end if;
    insert into auth.user_roles (user_id, role_name)
    select distinct v_id, r from unnest(create_user.roles) r;
    perform internal.security_event('user_created', v_id, create_user.username,
        jsonb_build_object('roles', create_user.roles));
    return v_id;
end;
$$;
comment on function auth.create_user(text, text, text[]) is
    'Creates a user (password checked against the policy, stored as bcrypt) with roles; returns the user id. Needs users:manage.';

create or replace function auth.change_password(
    user_id      bigint,
    new_password text,
    old_password text default null
)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- With old_password: a user changes their own password; the TOTP secret is re-encrypted under the
-- new one. Without: an admin reset (users:manage), which also drops 2FA and unlocks the account.
-- Either way every session of the user is revoked.
#variable_conflict use_column
declare
    v_user  auth.users;
    v_reset boolean := change_password.old_password is null;
begin
    if v_reset then
        perform internal.require_permission('users:manage');
    else
        perform internal.require_self_or_permission(change_password.user_id, 'users:manage');
    end if;
    v_user := internal.lock_user(change_password.user_id);
    if not v_reset then
        perform internal.verify_password(v_user, change_password.old_password);
    end if;
    perform internal.check_new_password(change_password.new_password);
    if internal.password_matches(v_user.password_hash, change_password.new_password) then
        raise exception 'the new password is the current one'
            using errcode = '22S11';
    end if;
    update auth.users u
    set password_hash = internal.hash_password(change_password.new_password),
        password_changed_at = now(),
        totp_secret = case when v_reset or u.totp_secret is null then null
                           else public.pgp_sym_encrypt_bytea(
                                    public.pgp_sym_decrypt_bytea(u.totp_secret, change_password.old_password),
                                    change_password.new_password, 'cipher-algo=aes256') end,
        totp_enabled_at = case when v_reset then null else u.totp_enabled_at end,
        totp_last_step = case when v_reset then null else u.totp_last_step end,
        failed_logins = case when v_reset then 0 else u.failed_logins end,
        locked_until = case when v_reset then null else u.locked_until end
    where u.user_id = v_user.user_id;
    perform internal.security_event('password_changed', v_user.user_id, v_user.username,
        jsonb_build_object('reset', v_reset));
    if v_reset and v_user.totp_secret is not null then
        perform internal.security_event('totp_disabled', v_user.user_id, v_user.username,
            jsonb_build_object('reason', 'password reset'));
    end if;
    perform internal.revoke_user_sessions(v_user.user_id, 'password changed');
end;
$$;
comment on function auth.change_password(bigint, text, text) is
    'Changes a password (with the old one), or resets it (without; users:manage; drops 2FA). Revokes the user''s sessions.';

create or replace function auth.disable_user(user_id bigint)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Disable a user: no more logins, every session revoked. Idempotent. Needs users:manage.
#variable_conflict use_column
declare
    v_user auth.users;
begin
    perform internal.require_permission('users:manage');
    v_user := internal.lock_user(disable_user.user_id);
    if v_user.disabled_at is null then
        update auth.users u set disabled_at = now() where u.user_id = v_user.user_id;
        perform internal.security_event('user_disabled', v_user.user_id, v_user.username);
    end if;
    perform internal.revoke_user_sessions(v_user.user_id, 'user disabled');
end;
$$;
comment on function auth.disable_user(bigint) is 'Disables a user and revokes their sessions; idempotent. Needs users:manage.';

create or replace function auth.enable_user(user_id bigint)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Enable a disabled user again; the sessions they had before are not live again. Idempotent.
-- Needs users:manage.
#variable_conflict use_column
declare
    v_user auth.users;
begin
    perform internal.require_permission('users:manage');
    v_user := internal.lock_user(enable_user.user_id);
    if v_user.disabled_at is not null then
        -- why: a disabled user's sessions are over (internal.session_is_live), but one the disable
        -- left unrevoked (an operator's UPDATE, a restore of an older auth.sessions) came back to
        -- life with the user, so a token from before the disable opened the account again; every
        -- session still unrevoked now was logged in before the disable (auth.login refuses them)
        perform internal.revoke_user_sessions(v_user.user_id, 'user disabled');
        update auth.users u set disabled_at = null where u.user_id = v_user.user_id;
        perform internal.security_event('user_enabled', v_user.user_id, v_user.username);
    end if;
end;
$$;
comment on function auth.enable_user(bigint) is
    'Enables a disabled user; sessions from before the disable stay ended (any left unrevoked are revoked); idempotent. Needs users:manage.';

create or replace function auth.unlock_user(user_id bigint)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Lift a lockout before it expires and clear the failed-login count. Needs users:manage.
#variable_conflict use_column
declare
    v_user auth.users;
begin
    perform internal.require_permission('users:manage');
    v_user := internal.lock_user(unlock_user.user_id);
    update auth.users u
    set locked_until = null, failed_logins = 0, last_failed_at = null
    where u.user_id = v_user.user_id;
    perform internal.security_event('account_unlocked', v_user.user_id, v_user.username,
        jsonb_build_object('was_locked', internal.account_is_locked(v_user.locked_until, v_user.last_failed_at)));
end;
$$;
comment on function auth.unlock_user(bigint) is 'Unlocks a locked account and clears its failed logins. Needs users:manage.';

create or replace function auth.grant_role(user_id bigint, role_name text)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Give a user an application role; idempotent. Needs users:manage. A role the policy says must
-- use 2FA ends the user's sessions that were logged in without a code.
#variable_conflict use_column
declare
    v_user   auth.users;
    v_policy auth.security_policy;
begin
    perform internal.require_permission('users:manage');
    -- why FOR KEY SHARE (before the user's row, in auth.login's order): auth.set_security_policy
    -- revokes the password-only sessions of the users it sees holding a role that comes to need
    -- 2FA; a grant of that role under way was not seen, and it had read the policy before the
    -- change, so neither revoked the user's sessions. The lock makes one wait for the other
    select p.* into v_policy from auth.security_policy p for key share;
    v_user := internal.lock_user(grant_role.user_id);
    if not exists (select from auth.roles r where r.role_name = grant_role.role_name) then
        raise exception 'role "%" does not exist', coalesce(grant_role.role_name, 'null')
            using errcode = '23S10', hint = 'auth.roles lists the roles: admin, trader, viewer, auditor.';
    end if;
    insert into auth.user_roles (user_id, role_name)
    values (v_user.user_id, grant_role.role_name)
    on conflict do nothing;
    if found then
        perform internal.security_event('role_granted', v_user.user_id, v_user.username,
            jsonb_build_object('role', grant_role.role_name));
        -- why: the policy's 2FA roles are logged in with a code; a session logged in with the
        -- password alone would otherwise hold the new role's permissions at once
        if grant_role.role_name = any (v_policy.totp_required_roles) then
            perform internal.revoke_sessions_without_totp(v_user, '2FA required');
        end if;
    end if;
end;
$$;
comment on function auth.grant_role(bigint, text) is
    'Grants an application role to a user; idempotent; a role that must use 2FA revokes the user''s sessions logged in without a code. Needs users:manage.';

create or replace function auth.revoke_role(user_id bigint, role_name text)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Take an application role from a user; idempotent. Needs users:manage. An unknown role raises
-- unknown_role (23S10), as auth.grant_role does.
-- why: a mistyped role ('Admin') would otherwise do nothing and say nothing, and the user would
-- keep the role the operator meant to take away
#variable_conflict use_column
declare
    v_user auth.users;
begin
    perform internal.require_permission('users:manage');
    v_user := internal.lock_user(revoke_role.user_id);
    if not exists (select from auth.roles r where r.role_name = revoke_role.role_name) then
        raise exception 'role "%" does not exist', coalesce(revoke_role.role_name, 'null')
            using errcode = '23S10', hint = 'auth.roles lists the roles: admin, trader, viewer, auditor.';
    end if;
    delete from auth.user_roles ur
    where ur.user_id = v_user.user_id and ur.role_name = revoke_role.role_name;
    if found then
        perform internal.security_event('role_revoked', v_user.user_id, v_user.username,
            jsonb_build_object('role', revoke_role.role_name));
    end if;
end;
$$;
comment on function auth.revoke_role(bigint, text) is 'Revokes an application role from a user; idempotent; an unknown role raises 23S10. Needs users:manage.';

create or replace view auth.user_accounts
    with (security_barrier = true)
as
    -- Users without secrets. Runs as its owner; shows a scoped session only its own user unless
    -- the user has users:manage.
    select u.user_id,
           u.username,
           array(select ur.role_name from auth.user_roles ur
                 where ur.user_id = u.user_id order by ur.role_name) as roles,
           u.disabled_at is null as is_enabled,
           -- why written out, as internal.account_is_locked and internal.failures_count say: a
           -- view's functions run with its reader's privileges, and no reader runs internal helpers
           -- that are not read helpers; a lockout or failures stamped over a minute later than the
           -- clock (it stepped back since) are over
           coalesce(u.locked_until > now(), false)
           and not coalesce(u.last_failed_at > clock_timestamp() + interval '1 minute', false) as is_locked,
           u.locked_until,
           -- why: failures older than the policy's window no longer count toward a lockout
           -- (internal.count_failed_login starts again at one), so they are not shown as if they did
           -- (on UTC's clock, as auth.login counts them, whatever the reader's TimeZone)
           case when u.last_failed_at > (now() at time zone 'UTC'
                                         - (select p.failed_login_window from auth.security_policy p))
                                        at time zone 'UTC'
                     and u.last_failed_at <= clock_timestamp() + interval '1 minute'
                then u.failed_logins else 0 end as failed_logins,
           u.totp_enabled_at is not null as totp_enabled,
           u.created_at,
           u.password_changed_at,
           u.last_login_at
    from auth.users u
    -- why (select ...): evaluated once per query as an InitPlan, not once per row
    where (select internal.session_permissions()) is null
       or 'users:manage' = any ((select internal.session_permissions())::text[])
       or u.user_id = (select internal.session_user_id());
comment on view auth.user_accounts is 'Application users, their roles and login state; no secrets.';
comment on column auth.user_accounts.user_id is 'User id.';
comment on column auth.user_accounts.username is 'Login name.';
comment on column auth.user_accounts.roles is 'Application roles held.';
comment on column auth.user_accounts.is_enabled is 'False once disabled.';
comment on column auth.user_accounts.is_locked is 'True while locked out after failed logins.';
comment on column auth.user_accounts.locked_until is 'End of the current or last lockout.';
comment on column auth.user_accounts.failed_logins is
    'Failed logins that count toward a lockout: those within the policy''s failed_login_window of the last one (0 once it has passed).';
comment on column auth.user_accounts.totp_enabled is 'True when 2FA is confirmed.';
comment on column auth.user_accounts.created_at is 'When the user was created.';
comment on column auth.user_accounts.password_changed_at is 'When the password last changed.';
comment on column auth.user_accounts.last_login_at is 'Last successful login.';
