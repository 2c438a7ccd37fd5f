-- spreadedge functions: security policy and passwords
-- auth.set_security_policy, and the password rules and hashing every user function shares.

create or replace function internal.check_new_password(p_password text)
    returns void
    stable
    language plpgsql
as $$
-- Raises weak_password (22S11) when p_password breaks the policy. Messages never quote the password.
declare
    v_policy  auth.security_policy;
    v_classes integer;
begin
    select p.* into v_policy from auth.security_policy p;
    if p_password is null or length(p_password) < v_policy.password_min_length then
        raise exception 'the password is shorter than % characters', v_policy.password_min_length
            using errcode = '22S11';
    end if;
    -- why 72: bcrypt reads only the first 72 bytes; a longer password would be silently cut
    if octet_length(p_password) > 72 then
        raise exception 'the password is longer than 72 bytes, which bcrypt cannot use in full'
            using errcode = '22S11';
    end if;
    v_classes := (p_password ~ '[[:lower:]]')::integer + (p_password ~ '[[:upper:]]')::integer
               + (p_password ~ '[[:digit:]]')::integer
               + (p_password ~ '[^[:lower:][:upper:][:digit:]]')::integer;
    if v_classes < v_policy.password_min_classes then
        raise exception 'the password mixes % of the % character classes the policy asks for',
            v_classes, v_policy.password_min_classes
            using errcode = '22S11',
                  hint = 'Mix lower case, upper case, digits and other characters.';
    end if;
end;
$$;
comment on function internal.check_new_password(text) is
    'Raises 22S11 weak_password when a new password breaks the security policy; never quotes it.';

create or replace function internal.hash_password(p_password text)
    returns text
    volatile
    language sql
as $$
    -- A bcrypt hash of the password at the policy's cost (a new random salt each call).
    select public.crypt(p_password, public.gen_salt('bf', p.bcrypt_cost)) from auth.security_policy p
$$;
comment on function internal.hash_password(text) is 'bcrypt hash of a password at the policy''s cost.';

create or replace function internal.password_matches(p_hash text, p_password text)
    returns boolean
    volatile
    language plpgsql
as $$
-- True when p_password matches the bcrypt hash. With no hash (unknown user) it still runs one
-- bcrypt at the policy's cost and answers false, so both cases take the same time. A password
-- longer than 72 bytes never matches.
-- why the 72-byte rule: bcrypt reads only the first 72 bytes, so a 72-byte password followed by
-- anything would match, and the TOTP secret (encrypted under the whole password) would then be
-- decrypted, or re-encrypted, with the wrong password; internal.check_new_password has refused
-- longer passwords from the start, so no stored hash is of one
-- why the padding: a hash keeps the cost it was made at until its user logs in (auth.login upgrades
-- it), so after the policy's cost was raised a known user's wrong password was answered in a
-- fraction of an unknown user's time (cost 4 against 11: 1/128), which told who has an account.
-- A hash made at cost c < the policy's p is followed by one bcrypt at each cost c .. p-1, which
-- together take as long as one at cost p (each costs twice the one before).
-- why the highest stored cost too: after the policy's cost was lowered (12 to 8), a known user not
-- yet upgraded was answered in the time of cost 12 and an unknown user in that of cost 8, 1/16 of
-- it, which told again who has an account; every check now takes as long as one at the highest
-- cost any stored hash or the policy has, until logins have upgraded the hashes made before
declare
    v_setting text := p_hash;
    v_target  integer;
    v_cost    integer;
    v_matches boolean;
begin
    select greatest(p.bcrypt_cost,
                    (select max(substr(u.password_hash, 5, 2)::integer) from auth.users u
                     where u.password_hash ~ E'^\\$2[abxy]\\$[0-9]{2}\\$'))
    into v_target
    from auth.security_policy p;
    if v_setting is null then
        v_setting := format('$2a$%s$%s', lpad(v_target::text, 2, '0'), 'spreadedgetimingsalt..');
    end if;
    v_matches := coalesce(public.crypt(coalesce(p_password, ''), v_setting) = p_hash, false)
                 and coalesce(octet_length(p_password), 0) <= 72;
    if v_setting ~ E'^\\$2[abxy]\\$[0-9]{2}\\$' then
        v_cost := substr(v_setting, 5, 2)::integer;
        while v_cost < v_target loop
            perform public.crypt(coalesce(p_password, ''),
                                 format('$2a$%s$%s', lpad(v_cost::text, 2, '0'), 'spreadedgetimingsalt..'));
            v_cost := v_cost + 1;
        end loop;
    end if;
    return v_matches;
end;
$$;
comment on function internal.password_matches(text, text) is
    'Checks a password against a bcrypt hash, in the time of one bcrypt at the highest of the policy''s cost and any stored hash''s cost (a hash made at a lower cost is padded); with a null hash, spends that time and returns false; a password over 72 bytes never matches.';

create or replace function auth.set_security_policy(
    password_min_length  integer default null,
    password_min_classes integer default null,
    bcrypt_cost          integer default null,
    max_failed_logins    integer default null,
    failed_login_window  interval default null,
    lockout_duration     interval default null,
    session_idle_timeout interval default null,
    session_max_lifetime interval default null,
    totp_required_roles  text[] default null
)
    returns auth.security_policy
    volatile
    security definer
    set search_path = ''
    set timezone = 'UTC'
    language plpgsql
as $$
-- Change the settings given (null leaves one as it is) and record a policy_changed security event
-- with the old and new values. A shorter session lifetime or idle timeout applies to the live
-- sessions too, and a role that comes to need 2FA ends its users' sessions logged in without a
-- code. Needs policy:manage in a scoped session.
-- why FOR UPDATE on the policy row below (not only the UPDATE's weaker lock): auth.login,
-- auth.grant_role and the slide in auth.validate_session hold it FOR KEY SHARE while they make or
-- extend a session under the policy they read; the change waits for them, so the sessions it
-- shortens or revokes include theirs, and they wait for it and read the new policy
-- why TimeZone UTC: live sessions are measured against the policy as auth.login sets them, with a
-- day of 24 hours whatever the caller's TimeZone
#variable_conflict use_variable
declare
    v_old      auth.security_policy;
    v_new      auth.security_policy;
    v_unknown  text;
    v_setting  text;
    v_too_long interval;
    v_user     auth.users;
begin
    perform internal.require_permission('policy:manage');
    -- why: bcrypt uses at most 72 bytes (internal.check_new_password refuses longer passwords), so a
    -- longer minimum would refuse every new password; the table's check allows up to 256
    if set_security_policy.password_min_length > 72 then
        raise exception 'security policy value out of range (password_min_length % is over 72, the most bcrypt uses)',
            set_security_policy.password_min_length
            using errcode = '22S09',
                  hint = 'A password is at most 72 bytes; choose a minimum length from 8 to 72.';
    end if;
    -- why at most 100 years: auth.login adds the lifetimes and the lockout to now() and subtracts
    -- the window from it; past the timestamps' range each failed with a bare 22008 (a lifetime:
    -- every login; a window: every wrong password), and a lockout of '1000000 years', meant as
    -- "until an admin unlocks it", failed at the threshold, rolling that failed login's count back:
    -- the account never locked and its password could be guessed without end
    select s.setting, s.value into v_setting, v_too_long
    from (values ('failed_login_window', set_security_policy.failed_login_window),
                 ('lockout_duration', set_security_policy.lockout_duration),
                 ('session_idle_timeout', set_security_policy.session_idle_timeout),
                 ('session_max_lifetime', set_security_policy.session_max_lifetime)) s (setting, value)
    where s.value > interval '100 years'
       -- why no negative part: '1 mon -29 days' compares as 1 day, but added to 1 February it
       -- ends before it starts: no lockout, or a session expired when made
       or internal.interval_has_negative_part(s.value)
    limit 1;
    if v_too_long is not null then
        raise exception 'security policy value out of range (% % is over 100 years or has a negative part)',
            v_setting, v_too_long
            using errcode = '22S09',
                  hint = 'A window, lockout, idle timeout or lifetime is at most 100 years, without a negative part; a lockout of 100 years lasts until an admin unlocks the account.';
    end if;
    select r into v_unknown
    from unnest(totp_required_roles) r
    where not exists (select from auth.roles ar where ar.role_name = r)
    limit 1;
    if v_unknown is not null or array_position(totp_required_roles, null) is not null then
        raise exception 'role "%" does not exist', coalesce(v_unknown, 'null')
            using errcode = '23S10', hint = 'auth.roles lists the roles.';
    end if;
    select p.* into v_old from auth.security_policy p for update;
    begin
        update auth.security_policy p
        set password_min_length  = coalesce(set_security_policy.password_min_length, p.password_min_length),
            password_min_classes = coalesce(set_security_policy.password_min_classes, p.password_min_classes),
            bcrypt_cost          = coalesce(set_security_policy.bcrypt_cost, p.bcrypt_cost),
            max_failed_logins    = coalesce(set_security_policy.max_failed_logins, p.max_failed_logins),
            failed_login_window  = coalesce(set_security_policy.failed_login_window, p.failed_login_window),
            lockout_duration     = coalesce(set_security_policy.lockout_duration, p.lockout_duration),
            session_idle_timeout = coalesce(set_security_policy.session_idle_timeout, p.session_idle_timeout),
            session_max_lifetime = coalesce(set_security_policy.session_max_lifetime, p.session_max_lifetime),
            totp_required_roles  = coalesce(set_security_policy.totp_required_roles, p.totp_required_roles),
            updated_at           = now()
        returning p.* into v_new;
    exception when check_violation then
        raise exception 'security policy value out of range (%)', sqlerrm
            using errcode = '22S09',
                  hint = E'See the check constraints of auth.security_policy (\\d auth.security_policy).';
    end;
    -- why: a shorter lifetime or idle timeout is a decision about the sessions open now as well; a
    -- live session keeps the expiry it was given only as far as the new policy allows (a longer one
    -- extends none)
    update auth.sessions s
    set expires_at = least(s.expires_at, s.created_at + v_new.session_max_lifetime),
        idle_expires_at = least(s.idle_expires_at, s.last_seen_at + v_new.session_idle_timeout,
                                s.created_at + v_new.session_max_lifetime)
    where s.revoked_at is null and s.expires_at > now()
      and (s.expires_at > s.created_at + v_new.session_max_lifetime
           or s.idle_expires_at > s.last_seen_at + v_new.session_idle_timeout);
    -- why: as for the lifetimes, a role that comes to need 2FA ends its users' sessions that were
    -- logged in without a code (internal.revoke_sessions_without_totp)
    for v_user in
        select u.* from auth.users u
        where exists (select from auth.user_roles ur
                      where ur.user_id = u.user_id
                        and ur.role_name = any (v_new.totp_required_roles)
                        and not ur.role_name = any (v_old.totp_required_roles))
        order by u.user_id
    loop
        perform internal.revoke_sessions_without_totp(v_user, '2FA required');
    end loop;
    perform internal.security_event('policy_changed', null, null,
        jsonb_build_object('old', to_jsonb(v_old) - 'singleton' - 'updated_at',
                           'new', to_jsonb(v_new) - 'singleton' - 'updated_at'));
    return v_new;
end;
$$;
comment on function auth.set_security_policy(integer, integer, integer, integer, interval, interval, interval, interval, text[]) is
    'Changes the security policy (arguments given by name; null keeps a setting) and records the change; a shorter session lifetime or idle timeout also shortens the live sessions, and a role added to totp_required_roles revokes its users'' sessions logged in without a TOTP code; a minimum password length over 72 (bcrypt''s limit) and an interval over 100 years or with a negative part are refused with 22S09. Waits for the logins, role grants and idle-timeout slides under way (and they for it). Needs policy:manage.';
