-- spreadedge functions: login and sessions
-- auth.login (password, lockout, 2FA), auth.validate_session, auth.logout, auth.revoke_sessions;
-- internal.session_is_live says what a live session is, for validate_session and logout alike.
-- Session tokens are 32 random bytes, returned once as hex; only their sha256 is stored.

create or replace function internal.count_failed_login(p_user auth.users, p_ip_address inet, p_user_agent text)
    returns void
    volatile
    language plpgsql
as $$
-- Count one failed login in the policy's window; at the threshold, lock the account for the
-- policy's lockout duration and record account_locked.
declare
    v_policy auth.security_policy;
    v_count  integer;
begin
    select p.* into v_policy from auth.security_policy p;
    v_count := case when internal.failures_count(p_user.last_failed_at, v_policy.failed_login_window)
                    then p_user.failed_logins + 1 else 1 end;
    if v_count >= v_policy.max_failed_logins then
        update auth.users u
        set failed_logins = 0, last_failed_at = now(), locked_until = now() + v_policy.lockout_duration
        where u.user_id = p_user.user_id;
        perform internal.security_event('account_locked', p_user.user_id, p_user.username,
            jsonb_build_object('failed_logins', v_count, 'locked_until', now() + v_policy.lockout_duration),
            p_ip_address, p_user_agent);
    else
        update auth.users u
        set failed_logins = v_count, last_failed_at = now()
        where u.user_id = p_user.user_id;
    end if;
end;
$$;
comment on function internal.count_failed_login(auth.users, inet, text) is
    'Counts a failed login and locks the account at the policy''s threshold.';

create or replace function auth.login(
    username   text,
    password   text,
    totp_code  text default null,
    ip_address inet default null,
    user_agent text default null
)
    returns table (success boolean, session_token text, user_id bigint, expires_at timestamptz, message text)
    volatile
    security definer
    set search_path = ''
    set timezone = 'UTC'
    language plpgsql
as $$
-- Log in: one row with the session token on success, or success = false and why. Refusals return
-- (they do not raise) so that the failed-login count and the security event are kept. An unknown
-- user, a wrong password, a locked and a disabled account get the same answer, and an unknown user
-- costs the same bcrypt as a known one. A wrong TOTP code counts as a failed login.
-- why TimeZone UTC: a policy interval in days (a lifetime or lockout of '7 days') added to a time
-- is days of the TimeZone, so across a DST change the session or lockout lasted an hour more or
-- less, by the caller's TimeZone; on UTC's clock a day is always 24 hours
#variable_conflict use_column
declare
    c_refused constant text := 'login refused: wrong username or password, or the account is locked or disabled';
    v_policy  auth.security_policy;
    v_user    auth.users;
    v_matches boolean;
    v_step    bigint;
    v_reason  text;
    v_token   text;
    v_session auth.sessions;
begin
    -- why FOR KEY SHARE: auth.set_security_policy applies a shorter lifetime or a role that comes to
    -- need 2FA to the sessions it sees; a login that had read the policy before it committed made,
    -- after it, a session with the old lifetime or without a code, which it had not seen to end.
    -- The lock makes a policy change wait for the logins under way, and a login wait for the change
    -- (it then reads the new policy); logins share it and never wait for one another
    select p.* into v_policy from auth.security_policy p for key share;
    -- why "C" (auth.users_username_key's expression): a Turkish collation's lower('Ivan') is 'ıvan', so
    -- Ivan could not log in as ivan
    select u.* into v_user from auth.users u where lower(u.username collate "C") = lower(login.username collate "C") for update;
    v_matches := internal.password_matches(v_user.password_hash, login.password);
    if v_user.user_id is null then
        v_reason := 'unknown user';
    elsif v_user.disabled_at is not null then
        v_reason := 'disabled';
    elsif internal.account_is_locked(v_user.locked_until, v_user.last_failed_at) then
        v_reason := 'locked';
    elsif not v_matches then
        v_reason := 'wrong password';
    elsif v_user.totp_enabled_at is not null then
        -- why white space only is no code: as internal.matching_totp_step reads one
        if nullif(regexp_replace(login.totp_code, '[[:space:]]', '', 'g'), '') is null then
            v_reason := 'totp required';
        else
            v_step := internal.matching_totp_step(v_user, login.password, login.totp_code);
            if v_step is null then
                v_reason := 'wrong totp code';
            end if;
        end if;
    elsif exists (select from auth.user_roles ur
                  where ur.user_id = v_user.user_id and ur.role_name = any (v_policy.totp_required_roles)) then
        v_reason := 'totp enrollment required';
    end if;

    if v_reason is not null then
        if v_reason in ('wrong password', 'wrong totp code') then
            perform internal.count_failed_login(v_user, login.ip_address, login.user_agent);
        end if;
        perform internal.security_event('login_failed', v_user.user_id, login.username,
            jsonb_build_object('reason', v_reason), login.ip_address, login.user_agent);
        return query select false, null::text, null::bigint, null::timestamptz,
            case v_reason
                when 'totp required' then 'two-factor code required'
                when 'wrong totp code' then 'two-factor code is wrong or was already used'
                when 'totp enrollment required' then
                    'two-factor authentication is required for this account''s role: enroll first'
                else c_refused
            end;
        return;
    end if;

    v_token := encode(public.gen_random_bytes(32), 'hex');
    insert into auth.sessions (user_id, token_hash, idle_expires_at, expires_at, ip_address, user_agent)
    values (v_user.user_id, public.digest(v_token, 'sha256'),
            now() + least(v_policy.session_idle_timeout, v_policy.session_max_lifetime),
            now() + v_policy.session_max_lifetime, login.ip_address, left(login.user_agent, 500))
    returning * into v_session;
    update auth.users u
    set failed_logins = 0,
        last_failed_at = null,
        locked_until = null,
        last_login_at = now(),
        totp_last_step = coalesce(v_step, u.totp_last_step),
        -- why: a hash made at an older cost is upgraded while the password is at hand
        password_hash = case when substr(u.password_hash, 5, 2)::integer = v_policy.bcrypt_cost then u.password_hash
                             else internal.hash_password(login.password) end
    where u.user_id = v_user.user_id;
    perform internal.security_event('login_succeeded', v_user.user_id, v_user.username,
        jsonb_build_object('session_id', v_session.session_id, 'totp', v_step is not null),
        login.ip_address, login.user_agent);
    return query select true, v_token, v_user.user_id, v_session.expires_at, 'logged in'::text;
end;
$$;
comment on function auth.login(text, text, text, inet, text) is
    'Logs a user in: returns success, the session token (once), user id, expiry and a message. Refusals do not raise. Policy intervals count on UTC''s clock (a day is 24 hours whatever the TimeZone); a login and a policy change wait for each other (the login uses the policy committed).';

create or replace function internal.session_is_live(p_session auth.sessions, p_user auth.users)
    returns boolean
    volatile
    language plpgsql
as $$
-- What a live session is, for auth.validate_session and auth.logout: a session that exists, is not
-- revoked, is within its absolute lifetime and its idle timeout, of a user who is not disabled,
-- and whose last use is not later than the clock now reads.
-- why plpgsql: one expression, evaluated without a query by the callers' PL/pgSQL
-- why the last use: when the server's clock steps back (a clock that ran ahead set right), a session
-- used while it ran ahead has expiries that far ahead too, and lived the whole step longer than its
-- idle timeout and lifetime (hours for a clock set right hours back); how long ago it was really
-- used is unknown (internal.stamped_ahead_of_clock), so it ends, as a forward jump past its
-- expiry ends it: its user logs in again
begin
    return coalesce(p_session.session_id is not null and p_session.revoked_at is null
                    and now() < p_session.expires_at and now() < p_session.idle_expires_at
                    and not internal.stamped_ahead_of_clock(p_session.last_seen_at)
                    and p_user.user_id is not null and p_user.disabled_at is null,
                    false);
end;
$$;
comment on function internal.session_is_live(auth.sessions, auth.users) is
    'True when the session exists, is not revoked, expired or idle-expired, its user is not disabled, and its last use is not over a minute later than the clock (a clock stepped back since ends it).';

create or replace function auth.validate_session(token text)
    returns table (
        session_id  bigint,
        user_id     bigint,
        username    text,
        roles       text[],
        permissions text[],
        expires_at  timestamptz
    )
    volatile
    security definer
    set search_path = ''
    set timezone = 'UTC'
    language plpgsql
as $$
-- The session's user, roles and permissions; slides the idle timeout and scopes the rest of the
-- transaction to the user (spreadedge.user_id). Raises invalid_session (28S02) for an unknown,
-- expired or revoked token or a disabled user.
-- why the slide is at most once a minute (once per half the idle timeout when that is shorter):
-- this runs on every API request, and a write on each would make every read a write transaction
-- waiting for its WAL flush; a session idle for the timeout less up to a minute of its last use may
-- end that much early. With a fixed minute, an idle timeout of a minute or less never slid at all,
-- and a session in constant use expired one idle timeout after login.
-- why no slide in a read-only transaction (a hot standby, default_transaction_read_only on): its
-- locks and update fail there (25006), which made every request of a session last used over a
-- minute ago a 503, so a read-only database served no reads at all. Without the slide the session
-- ends at the idle expiry last written, never later: a session past it is refused as ever.
-- why TimeZone UTC: as in auth.login, an idle timeout in days is whole 24-hour days
#variable_conflict use_column
declare
    v_policy  auth.security_policy;
    v_session auth.sessions;
    v_user    auth.users;
    v_slide   interval;
begin
    select p.* into v_policy from auth.security_policy p;
    v_slide := least(interval '1 minute', v_policy.session_idle_timeout / 2);
    select s.* into v_session
    from auth.sessions s
    where s.token_hash = public.digest(coalesce(validate_session.token, ''), 'sha256');
    select u.* into v_user from auth.users u where u.user_id = v_session.user_id;
    if not internal.session_is_live(v_session, v_user) then
        raise exception 'the session is unknown, expired or revoked'
            using errcode = '28S02', hint = 'Log in again (auth.login).';
    end if;
    if v_session.last_seen_at < now() - v_slide
       and pg_catalog.current_setting('transaction_read_only') = 'off' then
        -- why a slide is only tried: another request of this session whose slide is under way (in
        -- a transaction still open, or whose commit waits for a synchronous standby or a WAL flush)
        -- holds the session's slide lock, and that slide moves the idle timeout. Every request of
        -- the session due its slide used to wait for that one's row lock (a 503 at the statement
        -- deadline each, for as long as a stalled commit lasted), then lock the row itself: a write,
        -- whose commit waited for the standby in turn. Skipped, the request takes no lock and
        -- writes nothing, and is answered from the session as read, like any request not due a
        -- slide; the next request slides if that slide is rolled back. The lock is an advisory one
        -- (the session's id in auth.sessions' key space; two ids that share one only skip a slide),
        -- not SKIP LOCKED on the row: a row lock may be a logout's, a revocation's or a policy
        -- change's, which the slide waits for, to be refused when it ended the session
        if pg_catalog.pg_try_advisory_xact_lock('auth.sessions'::regclass::oid::integer,
                                                (v_session.session_id % 2147483647)::integer) then
            -- why the policy locked and the session read again, locked, before the slide: a slide
            -- that waited for auth.set_security_policy's shortening of this session (or a logout
            -- or revoke) wrote the old idle timeout over the new one, and brought a session the new
            -- timeout had ended back to life. Only a slide takes the locks: a validation without
            -- one writes nothing
            select p.* into v_policy from auth.security_policy p for key share;
            select s.* into v_session from auth.sessions s where s.session_id = v_session.session_id for update;
            if not internal.session_is_live(v_session, v_user) then
                raise exception 'the session is unknown, expired or revoked'
                    using errcode = '28S02', hint = 'Log in again (auth.login).';
            end if;
            update auth.sessions s
            set last_seen_at = now(),
                idle_expires_at = least(now() + v_policy.session_idle_timeout, s.expires_at)
            where s.session_id = v_session.session_id and s.last_seen_at < now() - v_slide;
        end if;
    end if;
    perform set_config('spreadedge.user_id', v_user.user_id::text, true);
    return query
    select v_session.session_id, v_user.user_id, v_user.username,
           array(select ur.role_name from auth.user_roles ur
                 where ur.user_id = v_user.user_id order by ur.role_name),
           array(select distinct rp.permission
                 from auth.user_roles ur
                 join auth.role_permissions rp on rp.role_name = ur.role_name
                 where ur.user_id = v_user.user_id order by rp.permission),
           v_session.expires_at;
end;
$$;
comment on function auth.validate_session(text) is
    'Validates a session token: returns the user, roles and permissions, slides the idle timeout (at most once a minute, or per half the idle timeout when shorter; never in a read-only transaction, as on a standby; not while another request of the session is sliding it, in a transaction still open or a commit that waits: this one then waits for nothing and writes nothing), sets spreadedge.user_id for the transaction. Raises 28S02, also when a slide waited for a policy change, logout or revoke that ended the session.';

create or replace function auth.logout(token text)
    returns boolean
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- End the session of this token; false when it was not live (internal.session_is_live: unknown,
-- revoked, past its lifetime or idle timeout, or of a disabled user), which then writes nothing.
-- why in the update's condition: a concurrent logout of the same token waits for the first, sees
-- it revoked and returns false
#variable_conflict use_column
declare
    v_session auth.sessions;
begin
    update auth.sessions s
    set revoked_at = now(), revoked_reason = 'logout'
    from auth.users u
    where s.token_hash = public.digest(coalesce(logout.token, ''), 'sha256') and u.user_id = s.user_id
      and internal.session_is_live(s, u)
    returning s.* into v_session;
    if v_session.session_id is null then
        return false;
    end if;
    perform internal.security_event('logout', v_session.user_id, null,
        jsonb_build_object('session_id', v_session.session_id));
    return true;
end;
$$;
comment on function auth.logout(text) is
    'Ends a live session by its token; false (and nothing written) if it was unknown, revoked, expired or idle-expired, or its user is disabled.';

create or replace function auth.revoke_sessions(user_id bigint)
    returns integer
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Revoke every live session of a user (oneself, or anyone with users:manage); returns how many.
#variable_conflict use_column
declare
    v_user auth.users;
begin
    perform internal.require_self_or_permission(revoke_sessions.user_id, 'users:manage');
    v_user := internal.lock_user(revoke_sessions.user_id);
    return internal.revoke_user_sessions(v_user.user_id, 'revoked');
end;
$$;
comment on function auth.revoke_sessions(bigint) is 'Revokes every live session of a user; returns how many. Needs users:manage for another user.';
