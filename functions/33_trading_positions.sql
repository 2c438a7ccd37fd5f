-- spreadedge functions: positions
-- trading.get_position: one position with realized and unrealized PnL at a mark price.

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
    v_strategy   trading.strategies := internal.find_strategy(get_position.strategy);
    v_instrument ref.instruments := internal.find_instrument(get_position.exchange, get_position.symbol);
begin
    perform internal.require_permission('positions:read');
    if get_position.mark_price is not null then
        perform internal.check_positive(get_position.mark_price, 'mark price', '22S02');
    end if;
    return query
    select coalesce(p.quantity, 0),
           p.avg_entry_price,
           coalesce(p.realized_pnl_gross, 0),
           coalesce(p.fees_paid, 0),
           coalesce(p.funding, 0),
           coalesce(p.realized_pnl, 0),
           case when coalesce(p.quantity, 0) = 0 then 0
                else round(p.quantity * v_instrument.multiplier * (m.price - p.avg_entry_price), 12) end,
           m.price
    from (select coalesce(get_position.mark_price, trading.mark_price(v_instrument.instrument_id)) as price) m
    left join trading.positions p
        on p.strategy_id = v_strategy.strategy_id and p.instrument_id = v_instrument.instrument_id;
end;
$$;
comment on function trading.get_position(text, text, text, numeric) is
    'One position: quantity, average entry, realized PnL parts and unrealized PnL at a mark price (given, else trading.mark_price), and that mark.';
