-- spreadedge functions: exchange API keys
-- Stored AES-256 encrypted (pgp_sym_encrypt) under a master key that the Python side holds
-- (SPREADEDGE_MASTER_KEY or a key file) and passes only as a bind parameter. auth.master_keys keeps a
-- keyed verifier per master key version, so a wrong key is refused before anything is decrypted.

create or replace function internal.check_new_master_key(p_master_key text, p_name text)
    returns void
    immutable
    language plpgsql
as $$
-- Raises invalid_argument (22S09) for a key that must not become a master key version: shorter than
-- 32 characters, or with white space at either end. p_name names it in the message; never the key.
-- why the white space: a key file is read without its surrounding white space (spreadedge.masterkey),
-- so a key that had some (a newline kept from an env file or a secret made with echo) would work
-- from SPREADEDGE_MASTER_KEY and never from the key file; only new versions are refused, so keys
-- already in use keep working
begin
    if p_master_key is null or length(p_master_key) < 32 then
        raise exception 'the % must be at least 32 characters', p_name
            using errcode = '22S09', hint = 'spreadedge keys generate makes one.';
    end if;
    if p_master_key ~ '^[[:space:]]|[[:space:]]$' then
        raise exception 'the % starts or ends with white space', p_name
            using errcode = '22S09',
                  hint = 'Remove it (often a newline kept from a file); spreadedge keys generate makes a key without any.';
    end if;
end;
$$;
comment on function internal.check_new_master_key(text, text) is
    'Raises 22S09 for a new master key shorter than 32 characters or with white space at either end; never quotes it.';

create or replace function internal.current_master_key_version(p_master_key text, p_first_use boolean)
    returns integer
    volatile
    language plpgsql
as $$
-- The current master key version if p_master_key is its key; raises wrong_master_key (28S03)
-- otherwise. With p_first_use and no version yet, p_master_key becomes version 1 (if
-- internal.check_new_master_key accepts it).
declare
    v_current  auth.master_keys;
    v_verifier bytea;
begin
    if p_master_key is null or length(p_master_key) < 32 then
        raise exception 'the master key must be at least 32 characters'
            using errcode = '22S09', hint = 'spreadedge keys generate makes one.';
    end if;
    v_verifier := public.hmac('spreadedge master key verifier', p_master_key, 'sha256');
    -- why an advisory lock and not only FOR UPDATE: a row lock cannot serialise the first use (no
    -- row yet) nor a rotation (which retires the row a waiter locked, so the waiter found no current
    -- version and inserted version 1: a raw 23505). Taken first, it makes the select below see what
    -- the other transaction committed.
    perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('spreadedge.master_keys'));
    select m.* into v_current from auth.master_keys m where m.retired_at is null for update;
    if v_current.key_version is null then
        if not p_first_use then
            raise exception 'no master key is in use yet: no API key has been stored'
                using errcode = '28S03';
        end if;
        perform internal.check_new_master_key(p_master_key, 'master key');
        insert into auth.master_keys (key_version, verifier) values (1, v_verifier)
        returning * into v_current;
    elsif v_current.verifier <> v_verifier then
        raise exception 'the master key is not master key version %, which the API keys are encrypted under',
            v_current.key_version
            using errcode = '28S03',
                  hint = 'Use the key from SPREADEDGE_MASTER_KEY or the key file in use when the keys were stored or last rotated.';
    end if;
    return v_current.key_version;
end;
$$;
comment on function internal.current_master_key_version(text, boolean) is
    'Checks a master key against the current version''s verifier (28S03 if wrong) and returns the version; serialises first uses and rotations (advisory lock until commit).';

create or replace function internal.encrypt_secret(p_value text, p_master_key text)
    returns bytea
    volatile
    language sql
as $$
    -- One secret under the master key: OpenPGP symmetric encryption, AES-256, random session key.
    select public.pgp_sym_encrypt(p_value, p_master_key, 'cipher-algo=aes256')
$$;
comment on function internal.encrypt_secret(text, text) is 'pgp_sym_encrypt with AES-256 under the master key.';

create or replace function auth.store_api_key(
    user_id     bigint,
    exchange    text,
    label       text,
    api_key     text,
    api_secret  text,
    passphrase  text default null,
    permissions text[] default '{read,trade}',
    master_key  text default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Encrypt and store a user's exchange API key; returns its id. A key already stored for the exchange
-- (found by its keyed fingerprint, without decrypting anything) is refused. Needs keys:manage, and
-- keys:all for another user's key.
#variable_conflict use_column
declare
    v_user        auth.users;
    v_exchange_id smallint;
    v_version     integer;
    v_fingerprint bytea;
    v_bad         text;
    v_key_id      bigint;
begin
    -- why: stores and rotations take turns through the master key's advisory lock
    -- (internal.current_master_key_version), but a REPEATABLE READ or SERIALIZABLE snapshot is taken
    -- before it: a first store racing another inserted master key version 1 again, and a store of a
    -- key stored meanwhile missed it, both raw unique violations (the second quoting the key's
    -- fingerprint)
    perform internal.require_read_committed('auth.store_api_key',
        'Call it in a transaction of its own at the default isolation level: it must see every API key and master key version committed before its turn.');
    perform internal.require_permission('keys:manage');
    perform internal.require_self_or_permission(store_api_key.user_id, 'keys:all');
    v_user := internal.lock_user(store_api_key.user_id);
    if v_user.disabled_at is not null then
        raise exception 'user % is disabled', v_user.user_id using errcode = '55S04';
    end if;
    v_exchange_id := internal.exchange_id(store_api_key.exchange);
    -- why btrim: a label of spaces was stored while an empty one was refused; the owner's list of
    -- keys then showed a key with no name
    if store_api_key.label is null or btrim(store_api_key.label, E' \t\n\r') = ''
       or length(store_api_key.label) > 100 then
        raise exception 'the label must be 1 to 100 characters, not all blank' using errcode = '22S09';
    end if;
    -- why: a label names one live key of the user on the exchange, and people tell keys apart
    -- by it (keys list, before a revoke); "main " and "main" followed by a zero-width space, a
    -- no-break space or a combining accent's decomposed twin were stored as other labels that
    -- read exactly as "main" (internal.has_hidden_characters, as for a symbol or a strategy
    -- name); a control character inside a label stays allowed, as the lists show it escaped
    if store_api_key.label ~ '^[[:space:]]|[[:space:]]$' then
        raise exception 'the label "%" starts or ends with white space', store_api_key.label
            using errcode = '22S09', hint = 'Give the label without the white space around it.';
    end if;
    if store_api_key.label is not nfc normalized
       or internal.has_hidden_characters(store_api_key.label) then
        raise exception 'the label "%" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
            store_api_key.label
            using errcode = '22S09',
                  hint = 'Give the label in NFC (normalize(label, NFC)) without zero-width, bidirectional or variation-selector characters, and with plain spaces only.';
    end if;
    if coalesce(store_api_key.api_key, '') = '' or coalesce(store_api_key.api_secret, '') = '' then
        raise exception 'the API key and the API secret must not be empty' using errcode = '22S09';
    end if;
    -- why: no exchange issues an API key with white space, so some at an end was pasted with it (a
    -- newline from a file or an environment variable); kept, the key's fingerprint differed from the
    -- same key's, so the key was stored live twice, and the engine sent the exchange a key it refuses.
    -- The secret is left as given: a PEM private key (Coinbase) ends with a newline
    if store_api_key.api_key ~ '^[[:space:]]|[[:space:]]$' then
        raise exception 'the API key starts or ends with white space' using errcode = '22S09',
            hint = 'Remove it (often a newline kept from a file or a variable); no exchange issues keys with any.';
    end if;
    select p into v_bad from unnest(store_api_key.permissions) p
    where p is null or p not in ('read', 'trade', 'withdraw') limit 1;
    if found or coalesce(cardinality(store_api_key.permissions), 0) = 0 then
        raise exception 'API key permissions must be some of read, trade, withdraw, got "%"',
            coalesce(v_bad, 'nothing')
            using errcode = '22S09';
    end if;
    v_version := internal.current_master_key_version(store_api_key.master_key, true);
    v_fingerprint := public.hmac(store_api_key.api_key, store_api_key.master_key, 'sha256');
    -- why live keys only: a revoked key frees its label and may itself be stored again
    if exists (select from auth.api_keys k
               where k.exchange_id = v_exchange_id and k.fingerprint = v_fingerprint and k.revoked_at is null) then
        raise exception 'this API key is already stored for exchange %', store_api_key.exchange
            using errcode = '23S08';
    end if;
    if exists (select from auth.api_keys k
               where k.user_id = v_user.user_id and k.exchange_id = v_exchange_id and k.label = store_api_key.label
                 and k.revoked_at is null) then
        raise exception 'user % already has an API key labelled "%" on %', v_user.user_id, store_api_key.label,
            store_api_key.exchange
            using errcode = '23S06';
    end if;
    insert into auth.api_keys (user_id, exchange_id, label, api_key, api_secret, passphrase, permissions,
                               fingerprint, key_version)
    values (v_user.user_id, v_exchange_id, store_api_key.label,
            internal.encrypt_secret(store_api_key.api_key, store_api_key.master_key),
            internal.encrypt_secret(store_api_key.api_secret, store_api_key.master_key),
            internal.encrypt_secret(nullif(store_api_key.passphrase, ''), store_api_key.master_key),
            (select array_agg(distinct p order by p) from unnest(store_api_key.permissions) p),
            v_fingerprint, v_version)
    returning key_id into v_key_id;
    perform internal.security_event('api_key_stored', v_user.user_id, v_user.username,
        jsonb_build_object('key_id', v_key_id, 'exchange', store_api_key.exchange, 'label', store_api_key.label,
                           'key_version', v_version));
    return v_key_id;
end;
$$;
comment on function auth.store_api_key(bigint, text, text, text, text, text, text[], text) is
    'Stores an exchange API key encrypted (AES-256) under the master key; returns its id. A live key''s label or key cannot be stored twice (23S06, 23S08); a revoked one frees both; a label is 1 to 100 characters in NFC, not all blank, without white space at either end, invisible characters or spaces but U+0020 (22S09); an API key with white space at either end is refused (22S09), and so is a call outside READ COMMITTED (22S09). Needs keys:manage.';

create or replace function internal.visible_api_key(p_key_id bigint)
    returns auth.api_keys
    volatile
    language plpgsql
as $$
-- The API key row, locked, if the session may use it (its owner, or keys:all); else unknown_api_key.
declare
    v_key auth.api_keys;
begin
    select k.* into v_key from auth.api_keys k where k.key_id = p_key_id for update;
    if v_key.key_id is null
       or (internal.session_user_id() is not null
           and v_key.user_id <> internal.session_user_id()
           and not 'keys:all' = any (internal.session_permissions())) then
        raise exception 'API key % does not exist', coalesce(p_key_id::text, 'null')
            using errcode = '23S09';
    end if;
    return v_key;
end;
$$;
comment on function internal.visible_api_key(bigint) is 'Locks an API key the session may use; raises 23S09 unknown_api_key.';

create or replace function auth.reveal_api_key(key_id bigint, master_key text)
    returns table (exchange text, label text, api_key text, api_secret text, passphrase text, permissions text[])
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Decrypt an API key for the trading engine (granted to spreadedge_engine only). Every reveal is
-- recorded. A wrong master key raises wrong_master_key (28S03) before any key is read; a revoked
-- key, unknown_api_key (23S09); a key of a disabled user, user_disabled (55S04).
#variable_conflict use_column
declare
    v_key     auth.api_keys;
    v_version integer;
    v_user    auth.users;
begin
    -- why the master key first: auth.rotate_master_key takes the master key's locks and then every
    -- key row; a reveal that locked its key row first and then waited for the master key could
    -- deadlock with a rotation (40P01)
    v_version := internal.current_master_key_version(reveal_api_key.master_key, false);
    v_key := internal.visible_api_key(reveal_api_key.key_id);
    if v_key.revoked_at is not null then
        raise exception 'API key % is revoked', v_key.key_id using errcode = '23S09';
    end if;
    select u.* into v_user from auth.users u where u.user_id = v_key.user_id;
    -- why: disabling a user stops the use of their exchange keys, as it ends their sessions
    if v_user.disabled_at is not null then
        raise exception 'user % is disabled', v_user.user_id
            using errcode = '55S04',
                  detail = format('API key %s belongs to a disabled user and cannot be revealed.', v_key.key_id),
                  hint = 'Enable the user again (auth.enable_user) or store the keys under another user.';
    end if;
    update auth.api_keys k set last_revealed_at = now() where k.key_id = v_key.key_id;
    perform internal.security_event('api_key_revealed', v_key.user_id, v_user.username,
        jsonb_build_object('key_id', v_key.key_id, 'key_version', v_version));
    return query
    select e.code, v_key.label,
           public.pgp_sym_decrypt(v_key.api_key, reveal_api_key.master_key),
           public.pgp_sym_decrypt(v_key.api_secret, reveal_api_key.master_key),
           public.pgp_sym_decrypt(v_key.passphrase, reveal_api_key.master_key),
           v_key.permissions
    from ref.exchanges e
    where e.exchange_id = v_key.exchange_id;
exception
    -- why: pgcrypto says only "Wrong key or corrupt data" (39000, external_routine_invocation_exception,
    -- not 38000 external_routine_exception); callers need the project code
    when external_routine_invocation_exception then
        raise exception 'API key % cannot be decrypted with this master key', reveal_api_key.key_id
            using errcode = '28S03';
end;
$$;
comment on function auth.reveal_api_key(bigint, text) is
    'Decrypts an API key (spreadedge_engine only); every reveal is audited. Raises 28S03 for a wrong master key, 23S09 for an unknown or revoked key, 55S04 for a key of a disabled user.';

create or replace function auth.revoke_api_key(key_id bigint)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Revoke an API key: it can no longer be revealed, and its encrypted key, secret and passphrase are
-- wiped (the fingerprint stays). Idempotent. Needs keys:manage (keys:all for others').
-- why wiped: a key revoked here may still be live at its exchange; kept, its ciphertext stayed in
-- every later dump and backup, and anyone who also held the master key could read it
#variable_conflict use_column
declare
    v_key  auth.api_keys;
    v_user auth.users;
begin
    perform internal.require_permission('keys:manage');
    v_key := internal.visible_api_key(revoke_api_key.key_id);
    if v_key.revoked_at is null then
        update auth.api_keys k
        set revoked_at = now(), api_key = ''::bytea, api_secret = ''::bytea, passphrase = null
        where k.key_id = v_key.key_id;
        select u.* into v_user from auth.users u where u.user_id = v_key.user_id;
        perform internal.security_event('api_key_revoked', v_key.user_id, v_user.username,
            jsonb_build_object('key_id', v_key.key_id));
    end if;
end;
$$;
comment on function auth.revoke_api_key(bigint) is 'Revokes an API key and wipes its encrypted key, secret and passphrase; idempotent. Needs keys:manage.';

create or replace function auth.rotate_master_key(old_master_key text, new_master_key text)
    returns integer
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Re-encrypt every live API key (a revoked one was wiped) under a new master key, in this one transaction, and make it
-- the current version; returns how many keys were re-encrypted. A wrong old key changes nothing.
-- Needs keys:all in a scoped session.
#variable_conflict use_column
declare
    v_old   integer;
    v_new   integer;
    v_count integer;
begin
    -- why: as in auth.store_api_key; under a snapshot taken before the lock, a key stored while
    -- this waited is not re-encrypted, and is lost under the retired master key
    perform internal.require_read_committed('auth.rotate_master_key',
        'Call it in a transaction of its own at the default isolation level: it must see every API key and master key version committed before its turn.');
    perform internal.require_permission('keys:all');
    perform internal.check_new_master_key(new_master_key, 'new master key');
    if new_master_key = old_master_key then
        raise exception 'the new master key is the old one' using errcode = '22S09';
    end if;
    v_old := internal.current_master_key_version(old_master_key, false);
    v_new := v_old + 1;
    update auth.master_keys m set retired_at = now() where m.key_version = v_old;
    insert into auth.master_keys (key_version, verifier)
    values (v_new, public.hmac('spreadedge master key verifier', new_master_key, 'sha256'));
    begin
        update auth.api_keys k
        set api_key = internal.encrypt_secret(public.pgp_sym_decrypt(k.api_key, old_master_key), new_master_key),
            api_secret = internal.encrypt_secret(public.pgp_sym_decrypt(k.api_secret, old_master_key), new_master_key),
            passphrase = internal.encrypt_secret(public.pgp_sym_decrypt(k.passphrase, old_master_key), new_master_key),
            fingerprint = public.hmac(public.pgp_sym_decrypt(k.api_key, old_master_key), new_master_key, 'sha256'),
            key_version = v_new,
            rotated_at = now()
        -- a revoked key holds nothing to re-encrypt (auth.revoke_api_key wiped it)
        where k.key_version = v_old and k.revoked_at is null;
        get diagnostics v_count = row_count;
    -- why 39000: what pgcrypto raises for a wrong key or corrupt data
    exception when external_routine_invocation_exception then
        raise exception 'a stored API key cannot be decrypted with the old master key; nothing was changed'
            using errcode = '28S03';
    end;
    perform internal.security_event('master_key_rotated', null, null,
        jsonb_build_object('from_version', v_old, 'to_version', v_new, 'keys', v_count));
    return v_count;
end;
$$;
comment on function auth.rotate_master_key(text, text) is
    'Re-encrypts every live API key under a new master key in one transaction (a revoked one was wiped); returns the count. A wrong old key changes nothing (28S03); a new key shorter than 32 characters or with white space at either end is refused (22S09), and so is a call outside READ COMMITTED (22S09), whose snapshot would miss a key stored while it waited.';

create or replace view auth.api_key_list
    with (security_invoker = true)
as
    -- API keys without any secret, read with the caller's rights: row-level security shows a
    -- scoped session its own keys (every key with keys:all).
    select k.key_id, k.user_id, e.code as exchange, k.label, k.permissions, k.key_version,
           k.created_at, k.rotated_at, k.last_revealed_at, k.revoked_at
    from auth.api_keys k
    join ref.exchanges e on e.exchange_id = k.exchange_id;
comment on view auth.api_key_list is 'Exchange API keys without secrets; row-level security scopes them to the session''s user.';
comment on column auth.api_key_list.key_id is 'API key id.';
comment on column auth.api_key_list.user_id is 'Owner.';
comment on column auth.api_key_list.exchange is 'Exchange code.';
comment on column auth.api_key_list.label is 'The owner''s name for the key.';
comment on column auth.api_key_list.permissions is 'What the exchange lets the key do.';
comment on column auth.api_key_list.key_version is 'Master key version it is encrypted under.';
comment on column auth.api_key_list.created_at is 'When it was stored.';
comment on column auth.api_key_list.rotated_at is 'When it was last re-encrypted.';
comment on column auth.api_key_list.last_revealed_at is 'When it was last revealed.';
comment on column auth.api_key_list.revoked_at is 'When it was revoked.';
