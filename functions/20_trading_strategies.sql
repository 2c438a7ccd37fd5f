-- spreadedge functions: strategies
-- trading.create_strategy (idempotent on name) and the lookup every API function uses.

create or replace function trading.create_strategy(
    name        text,
    description text default null,
    capital     numeric default 0
)
    returns bigint
    volatile
    language plpgsql
as $$
-- Create the strategy, or return the id of the existing one with this name (description and capital
-- of an existing strategy are left as they are).
#variable_conflict use_column
declare
    v_id integer;
begin
    if create_strategy.name is null or btrim(create_strategy.name) = '' or length(create_strategy.name) > 100
       or create_strategy.name <> btrim(create_strategy.name) then
        raise exception 'strategy name must be 1 to 100 characters without surrounding spaces, got "%"',
            create_strategy.name
            using errcode = '22S09';
    end if;
    if not (coalesce(create_strategy.capital, 0) >= 0 and coalesce(create_strategy.capital, 0) < 'Infinity') then
        raise exception 'capital must be zero or positive and finite, got %', create_strategy.capital
            using errcode = '22S09';
    end if;
    insert into trading.strategies (name, description, capital)
    values (create_strategy.name, create_strategy.description, coalesce(create_strategy.capital, 0))
    on conflict (name) do nothing
    returning strategy_id into v_id;
    if v_id is null then
        select s.strategy_id into v_id from trading.strategies s where s.name = create_strategy.name;
    end if;
    return v_id;
end;
$$;
comment on function trading.create_strategy(text, text, numeric) is
    'Create a strategy; idempotent on name (returns the existing id). Capital is in quote units.';

create or replace function internal.find_strategy(p_name text)
    returns trading.strategies
    stable
    language plpgsql
as $$
-- The strategy with this name; raises unknown_strategy (23S03).
declare
    v_strategy trading.strategies;
begin
    select s.* into v_strategy from trading.strategies s where s.name = p_name;
    if v_strategy.strategy_id is null then
        raise exception 'strategy "%" does not exist', p_name
            using errcode = '23S03',
                  hint = 'Create it with trading.create_strategy.';
    end if;
    return v_strategy;
end;
$$;
comment on function internal.find_strategy(text) is 'The strategy row for a name; raises 23S03 unknown_strategy.';
