-- spreadedge functions: two-factor authentication (TOTP, RFC 6238)
-- HOTP/TOTP codes in SQL, and enroll -> confirm -> disable. The secret is stored encrypted under the
-- user's password (pgp_sym_encrypt_bytea, AES-256), so every step that reads it takes the password.

create or replace function internal.base32_encode(p_bytes bytea)
    returns text
    immutable
    strict
    language sql
as $$
    -- RFC 4648 base32 without padding, as otpauth:// URIs and authenticator apps expect.
    select coalesce(string_agg(substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567',
                                      rpad(substr(b.bits, g.i * 5 + 1, 5), 5, '0')::bit(5)::integer + 1, 1),
                               '' order by g.i), '')
    from (select string_agg(get_byte(p_bytes, k)::bit(8)::text, '' order by k) as bits
          from generate_series(0, length(p_bytes) - 1) k) b
    cross join generate_series(0, (length(b.bits) + 4) / 5 - 1) g (i)
$$;
comment on function internal.base32_encode(bytea) is 'RFC 4648 base32 (no padding) of bytes.';

create or replace function auth.hotp_code(
    secret    bytea,
    counter   bigint,
    digits    integer default 6,
    algorithm text default 'sha1'
)
    returns text
    immutable
    strict
    language plpgsql
as $$
-- RFC 4226 HOTP: HMAC of the 8-byte big-endian counter, dynamically truncated to `digits` digits.
declare
    v_mac    bytea;
    v_offset integer;
    v_binary bigint;
begin
    if digits not between 6 and 10 or algorithm not in ('sha1', 'sha256', 'sha512') then
        raise exception 'HOTP needs 6 to 10 digits and sha1, sha256 or sha512, got % digits and "%"',
            digits, algorithm
            using errcode = '22S09';
    end if;
    v_mac := public.hmac(int8send(counter), secret, algorithm);
    v_offset := get_byte(v_mac, length(v_mac) - 1) & 15;
    v_binary := ((get_byte(v_mac, v_offset) & 127)::bigint << 24)
              | (get_byte(v_mac, v_offset + 1)::bigint << 16)
              | (get_byte(v_mac, v_offset + 2)::bigint << 8)
              | get_byte(v_mac, v_offset + 3)::bigint;
    return lpad((v_binary % (10::numeric ^ digits)::bigint)::text, digits, '0');
end;
$$;
comment on function auth.hotp_code(bytea, bigint, integer, text) is 'RFC 4226 HOTP code of a secret and counter.';

create or replace function auth.totp_code(
    secret       bytea,
    at           timestamptz,
    digits       integer default 6,
    step_seconds integer default 30,
    algorithm    text default 'sha1'
)
    returns text
    immutable
    strict
    language plpgsql
as $$
-- RFC 6238 TOTP: the HOTP code of the time step (Unix time / step_seconds, rounded down) at `at`.
begin
    if step_seconds <= 0 then
        raise exception 'the TOTP time step must be a positive number of seconds, got %', step_seconds
            using errcode = '22S09';
    end if;
    -- why: infinity has no time step; it raised a bare 0A000 "cannot convert infinity to bigint"
    if not isfinite(at) then
        raise exception 'a TOTP code needs a finite time, got %', at using errcode = '22S09';
    end if;
    return auth.hotp_code(secret, floor(extract(epoch from at) / step_seconds)::bigint, digits, algorithm);
end;
$$;
comment on function auth.totp_code(bytea, timestamptz, integer, integer, text) is
    'RFC 6238 TOTP code of a secret at a time (default: 6 digits, 30-second steps, HMAC-SHA1); a step of 0 or less or an infinite time raises 22S09.';

create or replace function internal.matching_totp_step(p_user auth.users, p_password text, p_code text)
    returns bigint
    stable
    language plpgsql
as $$
-- The time step (now, or one step either side) whose code is p_code and that is newer than the last
-- step accepted (a used code is a replay); null when none. p_password decrypts the secret.
-- White space in the code is ignored, at login and everywhere else: around it (pasted from an
-- authenticator, with a newline) and inside it.
-- why inside too: authenticator apps show a code in two groups ("123 456"); typed as shown it was
-- refused, and at login counted as a failed login toward a lockout
declare
    v_secret bytea;
    v_now    bigint := floor(extract(epoch from now()) / 30)::bigint;
    v_step   bigint;
    v_code   text := regexp_replace(p_code, '[[:space:]]', '', 'g');
begin
    if p_user.totp_secret is null or v_code is null or v_code !~ '^[0-9]{6}$' then
        return null;
    end if;
    v_secret := public.pgp_sym_decrypt_bytea(p_user.totp_secret, p_password);
    for v_step in v_now - 1 .. v_now + 1 loop
        if v_step > coalesce(p_user.totp_last_step, -1)
           and auth.hotp_code(v_secret, v_step) = v_code then
            return v_step;
        end if;
    end loop;
    return null;
end;
$$;
comment on function internal.matching_totp_step(auth.users, text, text) is
    'The unused time step (now +/- 1) a TOTP code (white space in it ignored, "123 456" is 123456) matches, or null.';

create or replace function auth.enroll_totp(user_id bigint, password text)
    returns table (secret text, otpauth_uri text)
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Generate a new 160-bit TOTP secret, store it encrypted under the password (pending until
-- auth.confirm_totp), and return it once as base32 and as an otpauth:// URI for authenticator apps.
#variable_conflict use_column
declare
    v_user   auth.users;
    v_secret bytea := public.gen_random_bytes(20);
    v_base32 text := internal.base32_encode(v_secret);
begin
    perform internal.require_self_or_permission(enroll_totp.user_id, 'users:manage');
    v_user := internal.lock_user(enroll_totp.user_id);
    perform internal.verify_password(v_user, enroll_totp.password);
    if v_user.totp_enabled_at is not null then
        raise exception 'two-factor authentication is already enabled for user %', v_user.user_id
            using errcode = '55S03', hint = 'Disable it first with auth.disable_totp.';
    end if;
    update auth.users u
    set totp_secret = public.pgp_sym_encrypt_bytea(v_secret, enroll_totp.password, 'cipher-algo=aes256'),
        totp_enabled_at = null,
        totp_last_step = null
    where u.user_id = v_user.user_id;
    perform internal.security_event('totp_enrolled', v_user.user_id, v_user.username);
    return query
    select v_base32,
           format('otpauth://totp/spreadedge:%s?secret=%s&issuer=spreadedge&algorithm=SHA1&digits=6&period=30',
                  replace(v_user.username, '@', '%40'), v_base32);
end;
$$;
comment on function auth.enroll_totp(bigint, text) is
    'Starts 2FA enrollment: returns a new TOTP secret (base32) and otpauth:// URI once; confirm with auth.confirm_totp.';

create or replace function auth.confirm_totp(user_id bigint, password text, totp_code text)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Turn on 2FA with the first code from the authenticator: from now on, login needs a code, and
-- the user's live sessions end (reason 2FA required), this call's own session too: all were
-- logged in with the password alone, as login asked no code before.
-- why: a session stolen before the enrollment would otherwise outlive it, with no code ever
-- asked of it; the user logs in again with a code (as after auth.change_password)
#variable_conflict use_column
declare
    v_user auth.users;
    v_step bigint;
begin
    perform internal.require_self_or_permission(confirm_totp.user_id, 'users:manage');
    v_user := internal.lock_user(confirm_totp.user_id);
    perform internal.verify_password(v_user, confirm_totp.password);
    if v_user.totp_secret is null or v_user.totp_enabled_at is not null then
        raise exception 'user % has no two-factor enrollment waiting for confirmation', v_user.user_id
            using errcode = '55S03', hint = 'Start one with auth.enroll_totp.';
    end if;
    v_step := internal.matching_totp_step(v_user, confirm_totp.password, confirm_totp.totp_code);
    if v_step is null then
        raise exception 'wrong two-factor code for user %', v_user.user_id
            using errcode = '28S01', hint = 'Use the current code of the authenticator the secret was added to.';
    end if;
    update auth.users u
    set totp_enabled_at = now(), totp_last_step = v_step
    where u.user_id = v_user.user_id;
    perform internal.security_event('totp_enabled', v_user.user_id, v_user.username);
    -- v_user as read before the update, 2FA not yet confirmed: every live session goes
    perform internal.revoke_sessions_without_totp(v_user, '2FA required');
end;
$$;
comment on function auth.confirm_totp(bigint, text, text) is
    'Enables 2FA after auth.enroll_totp, with a first code from the authenticator; revokes the user''s live sessions, all logged in without a code (the calling one too), reason 2FA required.';

create or replace function auth.disable_totp(user_id bigint, password text default null, totp_code text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Turn 2FA off. The user proves the password and a current code; without a password it is an
-- admin reset (users:manage), for a user who lost the authenticator.
#variable_conflict use_column
declare
    v_user auth.users;
begin
    -- why the permission first: a session without it must not learn which user ids exist (23S07)
    -- nor hold another user's row locked
    if disable_totp.password is null then
        perform internal.require_permission('users:manage');
    else
        perform internal.require_self_or_permission(disable_totp.user_id, 'users:manage');
    end if;
    v_user := internal.lock_user(disable_totp.user_id);
    if disable_totp.password is not null then
        perform internal.verify_password(v_user, disable_totp.password);
        if v_user.totp_enabled_at is not null
           and internal.matching_totp_step(v_user, disable_totp.password, disable_totp.totp_code) is null then
            raise exception 'wrong two-factor code for user %', v_user.user_id
                using errcode = '28S01';
        end if;
    end if;
    if v_user.totp_secret is null then
        raise exception 'user % has no two-factor authentication to disable', v_user.user_id
            using errcode = '55S03';
    end if;
    update auth.users u
    set totp_secret = null, totp_enabled_at = null, totp_last_step = null
    where u.user_id = v_user.user_id;
    perform internal.security_event('totp_disabled', v_user.user_id, v_user.username,
        jsonb_build_object('reason', case when disable_totp.password is null then 'admin reset' else 'by user' end));
end;
$$;
comment on function auth.disable_totp(bigint, text, text) is
    'Disables 2FA: with the password and a current code, or as an admin reset without them (users:manage).';
