-- spreadedge functions: strategies
-- trading.create_strategy (idempotent on name) and the lookup every API function uses.

-- why the drop: create_strategy gained owner_user_id; the old signature must not linger as an overload
drop function if exists trading.create_strategy(text, text, numeric);

create or replace function trading.create_strategy(
    name          text,
    description   text default null,
    capital       numeric default 0,
    owner_user_id bigint default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Create the strategy, or return the id of the existing one with this name (description and capital
-- of an existing strategy are left as they are; one owned by another user than an owner_user_id
-- given is 23S06). In a session scoped to a user the strategy belongs to that user
-- (strategies:write), or to owner_user_id with strategies:all.
#variable_conflict use_column
declare
    v_id             integer;
    v_owner          bigint := coalesce(create_strategy.owner_user_id, internal.session_user_id());
    v_existing_owner bigint;
begin
    perform internal.require_permission('strategies:write');
    if v_owner is distinct from internal.session_user_id() then
        perform internal.require_permission('strategies:all');
    end if;
    if create_strategy.name is null or btrim(create_strategy.name) = '' or length(create_strategy.name) > 100
       or create_strategy.name <> btrim(create_strategy.name) then
        raise exception 'strategy name must be 1 to 100 characters without surrounding spaces, got %',
            coalesce('"' || create_strategy.name || '"', 'null')
            using errcode = '22S09';
    end if;
    -- why: two names that look the same must not be two strategies, so a name must be in Unicode
    -- NFC (cafe + a combining accent is not a second café) and free of invisible control and format
    -- characters (zero-width spaces and joiners, bidirectional overrides, soft hyphen, BOM, tags,
    -- Hangul fillers) and of every space but U+0020: a no-break, ideographic or other Unicode
    -- space (or a line separator) looks like a plain space or like nothing, and btrim above
    -- trims only U+0020, so 'alpha' followed by a no-break space was a second 'alpha'
    -- why every Default_Ignorable_Code_Point of Unicode (variation selectors FE00-FE0F and
    -- E0100-E01EF, FFF0-FFF8, the whole E0000-E0FFF block) and the Braille blank U+2800: each
    -- shows as nothing or as a space, so 'alpha' followed by one was a second 'alpha'
    if create_strategy.name is not nfc normalized
       or create_strategy.name ~ E'[\\x01-\\x1f\\x7f-\\x9f]'
       or internal.has_hidden_characters(create_strategy.name) then
        raise exception 'strategy name "%" is not in Unicode NFC or holds an invisible character or a space other than U+0020',
            create_strategy.name
            using errcode = '22S09',
                  hint = 'Give the name in NFC (normalize(name, NFC)) without zero-width, bidirectional, control or variation-selector characters, and with plain spaces only.';
    end if;
    if not (coalesce(create_strategy.capital, 0) >= 0 and coalesce(create_strategy.capital, 0) < 'Infinity') then
        raise exception 'capital must be zero or positive and finite, got %',
            internal.number_shown(create_strategy.capital)
            using errcode = '22S09';
    end if;
    -- why a bound: a capital near the end of numeric (9.99e131071 is finite) was stored, and with a
    -- second one every portfolio snapshot, which sums the capitals into the total equity, failed
    -- with a bare numeric overflow (22003) for good
    perform internal.check_amount_size(coalesce(create_strategy.capital, 0), 'capital');
    if v_owner is not null and not exists (select from auth.users u where u.user_id = v_owner) then
        raise exception 'user % does not exist', v_owner using errcode = '23S07';
    end if;
    insert into trading.strategies (name, description, capital, owner_user_id)
    values (create_strategy.name, create_strategy.description, coalesce(create_strategy.capital, 0), v_owner)
    on conflict (name) do nothing
    returning strategy_id into v_id;
    if v_id is null then
        select s.strategy_id, s.owner_user_id into v_id, v_existing_owner
        from trading.strategies s where s.name = create_strategy.name;
        if not internal.strategy_in_scope(v_id) then
            raise exception 'strategy name "%" is taken by another user', create_strategy.name
                using errcode = '23S06', hint = 'Strategy names are unique across users; choose another.';
        end if;
        -- why: an operator or admin creating a strategy for a user (owner_user_id) was handed the
        -- id of a strategy of the same name owned by someone else (or by no one); the user never
        -- saw it, and orders placed "for" the user went into the other owner's strategy
        if create_strategy.owner_user_id is not null
           and v_existing_owner is distinct from create_strategy.owner_user_id then
            raise exception 'strategy "%" exists and belongs to %, not to user %', create_strategy.name,
                coalesce('user ' || v_existing_owner, 'no user (platform-owned)'), create_strategy.owner_user_id
                using errcode = '23S06',
                      hint = 'Strategy names are unique across users; choose another name for this user.';
        end if;
    end if;
    return v_id;
end;
$$;
comment on function trading.create_strategy(text, text, numeric, bigint) is
    'Create a strategy (owned by the session''s user, or owner_user_id); idempotent on name (returns the existing id; 23S06 when it belongs to another user than an owner_user_id given). A name is 1 to 100 characters in NFC, with no invisible character and no space but U+0020 (22S09). Capital is zero or more and below 10^100000 (22S09), in the valuation asset of its portfolio snapshots (USDT unless a snapshot names another).';

create or replace function internal.find_strategy(p_name text)
    returns trading.strategies
    stable
    language plpgsql
as $$
-- The strategy with this name, if the session's scope includes it; raises unknown_strategy (23S03).
declare
    v_strategy trading.strategies;
begin
    select s.* into v_strategy from trading.strategies s where s.name = p_name;
    -- why the same error: another user's strategy must not be told apart from a missing one
    if v_strategy.strategy_id is null or not internal.strategy_in_scope(v_strategy.strategy_id) then
        -- why here, after the lookup: a null name finds nothing, and testing it first would cost
        -- every placement
        if p_name is null then
            raise exception 'strategy must be given, got null' using errcode = '22S09';
        end if;
        raise exception 'strategy "%" does not exist', p_name
            using errcode = '23S03',
                  hint = 'Create it with trading.create_strategy.';
    end if;
    return v_strategy;
end;
$$;
comment on function internal.find_strategy(text) is 'The strategy row for a name; raises 23S03 unknown_strategy, or 22S09 for a null name.';
