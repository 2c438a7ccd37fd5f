-- spreadedge functions: positions
-- trading.get_position: one position with realized and unrealized PnL at a mark price.

create or replace function internal.checked_unrealized_pnl(
    p_quantity   numeric,
    p_multiplier numeric,
    p_mark       numeric,
    p_entry      numeric
)
    returns numeric
    immutable
    language plpgsql
as $$
-- quantity x multiplier x (mark - entry) rounded to 12 decimals, the unrealized PnL of
-- trading.get_position and trading.pnl_summary, for a position whose factors are so large that the
-- product may overflow numeric: then 22S09 naming the factors instead of a bare 22003.
-- why a function of its own: each factor is within numeric, but a mark far from the entry (a
-- mark price of 9e131071 for a position of 2) took the product past numeric's limit; factors all
-- below 10^43690 cannot overflow, so only such a position or mark is given to it, and pays for
-- the block that catches the overflow (its callers compute every other one inline)
begin
    return round(p_quantity * p_multiplier * (p_mark - p_entry), 12);
exception when numeric_value_out_of_range then
    raise exception 'unrealized PnL (quantity % x multiplier % x (mark % - entry %)) is too large a number',
        btrim(to_char(p_quantity, '9.999EEEE')), btrim(to_char(p_multiplier, '9.999EEEE')),
        btrim(to_char(p_mark, '9.999EEEE')), btrim(to_char(p_entry, '9.999EEEE'))
        using errcode = '22S09',
              hint = 'Check the mark price: the position''s value at it overflows numeric.';
end;
$$;
comment on function internal.checked_unrealized_pnl(numeric, numeric, numeric, numeric) is
    'Unrealized PnL of a position (quantity x multiplier x (mark - entry), 12 decimals); 22S09 naming the factors when it overflows numeric.';

create or replace function trading.get_position(
    strategy   text,
    exchange   text,
    symbol     text,
    mark_price numeric default null
)
    returns table (
        quantity           numeric,
        avg_entry_price    numeric,
        realized_pnl_gross numeric,
        fees_paid          numeric,
        funding            numeric,
        realized_pnl       numeric,
        unrealized_pnl     numeric,
        mark               numeric
    )
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- The position of a strategy in an instrument (zeros when it never traded). Unrealized PnL is
-- quantity x multiplier x (mark - avg_entry_price), at the given mark price, else the latest market
-- price; null when the position is open and no price is known.
#variable_conflict use_column
declare
    v_strategy   trading.strategies;
    v_instrument ref.instruments;
    v_position   trading.positions;
    v_mark       numeric;
begin
    perform internal.require_permission('positions:read');
    -- why the lookups after the check: a declare initializer runs before the body, so a user
    -- without the permission who named an unknown (or unseen) strategy or instrument got its lookup's error,
    -- an answer that depends on data the caller may not see, instead of permission_denied
    v_strategy := internal.find_strategy(get_position.strategy);
    v_instrument := internal.find_instrument(get_position.exchange, get_position.symbol);
    if get_position.mark_price is not null then
        perform internal.check_positive(get_position.mark_price, 'mark price', '22S02');
    end if;
    v_mark := coalesce(get_position.mark_price, trading.mark_price(v_instrument.instrument_id));
    select p.* into v_position
    from trading.positions p
    where p.strategy_id = v_strategy.strategy_id and p.instrument_id = v_instrument.instrument_id;
    -- why the factors tested first: only a position or mark whose product may overflow numeric
    -- pays for internal.checked_unrealized_pnl, which turns that into 22S09
    if v_position.quantity <> 0
       and (abs(v_position.quantity) >= 1e43690 or v_mark >= 1e43690 or v_position.avg_entry_price >= 1e43690
            or v_instrument.multiplier >= 1e43690) then
        perform internal.checked_unrealized_pnl(v_position.quantity, v_instrument.multiplier, v_mark,
                                                v_position.avg_entry_price);
    end if;
    return query
    select coalesce(v_position.quantity, 0),
           v_position.avg_entry_price,
           coalesce(v_position.realized_pnl_gross, 0),
           coalesce(v_position.fees_paid, 0),
           coalesce(v_position.funding, 0),
           coalesce(v_position.realized_pnl, 0),
           case when coalesce(v_position.quantity, 0) = 0 then 0
                else round(v_position.quantity * v_instrument.multiplier * (v_mark - v_position.avg_entry_price), 12)
           end,
           v_mark;
end;
$$;
comment on function trading.get_position(text, text, text, numeric) is
    'One position: quantity, average entry, realized PnL parts and unrealized PnL at a mark price (given, else trading.mark_price), and that mark.';
