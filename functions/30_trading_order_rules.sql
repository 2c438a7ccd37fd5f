-- spreadedge functions: the rules an order obeys
-- Its quantity and prices for its type (internal.order_price_fault) and its instrument's tick,
-- lot and minimum notional (internal.order_rule_fault), each naming the first fault, and
-- internal.raise_order_fault, which raises its error. trading.place_order (30_trading_orders.sql)
-- and trading.amend_order (30_trading_orders_amend.sql) hold every order to them, so that an
-- amended order obeys exactly the rules a placed one does.

create or replace function internal.order_price_fault(
    p_type       trading.order_type,
    p_quantity   numeric,
    p_price      numeric,
    p_stop_price numeric
)
    returns text
    immutable
    language sql
as $$
    -- The first thing wrong with an order's quantity and prices for its type, or null: 'quantity'
    -- (not positive and finite), 'price' (a limit or stop_limit order's, missing or not positive
    -- and finite), 'no_price' (given to a market or stop_market order), 'stop_price' (a stop
    -- order's, missing or not positive and finite), 'no_stop_price' (given to a market or limit
    -- order). internal.raise_order_fault raises its error. trading.place_order and
    -- trading.amend_order hold every order to it, then to internal.order_rule_fault.
    -- why sql that names the fault, and a raise apart: PostgreSQL inlines this into the caller's
    -- expression, so an order that breaks nothing pays for no function call (as PL/pgSQL
    -- functions that raised, these checks cost a placement 2.9 % more instructions)
    -- why "not (x > 0 and x < 'Infinity')": NaN compares greater than every number, Infinity too
    select case
        when p_quantity is null or not (p_quantity > 0 and p_quantity < 'Infinity') then 'quantity'
        when p_type in ('limit', 'stop_limit') and (p_price is null or not (p_price > 0 and p_price < 'Infinity'))
            then 'price'
        when p_type not in ('limit', 'stop_limit') and p_price is not null then 'no_price'
        when p_type in ('stop_market', 'stop_limit')
             and (p_stop_price is null or not (p_stop_price > 0 and p_stop_price < 'Infinity'))
            then 'stop_price'
        when p_type not in ('stop_market', 'stop_limit') and p_stop_price is not null then 'no_stop_price'
    end
$$;
comment on function internal.order_price_fault(trading.order_type, numeric, numeric, numeric) is
    'The first fault of an order''s quantity, price and stop price for its type (quantity, price, no_price, stop_price, no_stop_price), or null; raised by internal.raise_order_fault.';

create or replace function internal.notional_fits(p_quantity numeric, p_price numeric, p_multiplier numeric)
    returns boolean
    immutable
    language plpgsql
as $$
-- Whether quantity x price x multiplier is a number numeric holds (beyond 10^131072 it is not).
-- why a block: each factor is below numeric's limit, but their product can pass it; only an
-- order with a factor of 10^43690 or more can, and only such an order pays for the block (a
-- subtransaction): internal.order_rule_fault calls this for no other
begin
    perform p_quantity * p_price * p_multiplier;
    return true;
exception when numeric_value_out_of_range then
    return false;
end;
$$;
comment on function internal.notional_fits(numeric, numeric, numeric) is
    'Whether quantity x price x multiplier fits numeric (false when the product overflows).';

create or replace function internal.order_rule_fault(
    p_tick_size    numeric,
    p_lot_size     numeric,
    p_min_notional numeric,
    p_multiplier   numeric,
    p_quantity     numeric,
    p_price        numeric,
    p_stop_price   numeric,
    p_reference    numeric
)
    returns text
    immutable
    language sql
as $$
    -- The first rule of its instrument (tick size, lot size, minimum notional, multiplier) an order
    -- breaks, or null: 'price_off_tick', 'stop_price_off_tick', 'quantity_off_lot',
    -- 'notional_overflow' (quantity x p_reference x multiplier too large for numeric),
    -- 'below_min_notional'. p_reference is the price that values the order (its price, else its
    -- stop price, else the market's; null: the minimum notional is not checked).
    -- internal.raise_order_fault raises its error. Inlined into the caller's expression, as
    -- internal.order_price_fault.
    select case
        when p_price % p_tick_size <> 0 then 'price_off_tick'
        when p_stop_price % p_tick_size <> 0 then 'stop_price_off_tick'
        when p_quantity % p_lot_size <> 0 then 'quantity_off_lot'
        -- factors all below 10^43690 cannot overflow: only an order beyond them is multiplied in
        -- a block
        when (p_quantity >= 1e43690 or p_reference >= 1e43690 or p_multiplier >= 1e43690)
             and not internal.notional_fits(p_quantity, p_reference, p_multiplier) then 'notional_overflow'
        when p_quantity * p_reference * p_multiplier < p_min_notional then 'below_min_notional'
    end
$$;
comment on function internal.order_rule_fault(numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric) is
    'The first rule of its instrument an order breaks (price_off_tick, stop_price_off_tick, quantity_off_lot, notional_overflow, below_min_notional), or null; raised by internal.raise_order_fault.';

create or replace function internal.raise_order_fault(
    p_instrument ref.instruments,
    p_type       trading.order_type,
    p_quantity   numeric,
    p_price      numeric,
    p_stop_price numeric,
    p_reference  numeric,
    p_amending   boolean default false
)
    returns void
    -- why stable: to_char is (it follows lc_numeric)
    stable
    language plpgsql
as $$
-- Raise the error of the first fault of an order: internal.order_price_fault's, else
-- internal.order_rule_fault's against p_instrument valued at p_reference (nothing when it has
-- none). invalid_quantity (22S01), invalid_price (22S02), invalid_order_type (22S07: a price its
-- type takes none of; with p_amending the hint cannot suggest another type, which an amendment
-- keeps), price_off_tick (22S03), quantity_off_lot (22S04), invalid_argument (22S09: a notional
-- too large a number), below_min_notional (22S05).
-- why internal.number_shown: a quantity of 1e-16383 was refused with all 16,383 of its decimals
-- in the message, and a tick of 1e-300 (listed before ref.upsert_instrument refused one below
-- 10^-30) with its 300; a value of at most 40 characters reads as written
declare
    v_fault text := coalesce(internal.order_price_fault(p_type, p_quantity, p_price, p_stop_price),
                             internal.order_rule_fault(p_instrument.tick_size, p_instrument.lot_size,
                                                       p_instrument.min_notional, p_instrument.multiplier,
                                                       p_quantity, p_price, p_stop_price, p_reference));
begin
    case v_fault
    when 'quantity' then
        perform internal.check_positive(p_quantity, 'quantity', '22S01');
    when 'price' then
        perform internal.check_positive(p_price, format('price of a %s order', p_type), '22S02');
    when 'no_price' then
        -- why by type: a stop_market order told to use a limit order would lose its stop
        raise exception '% orders take no price, got %', p_type, internal.number_shown(p_price)
            using errcode = '22S07',
                  hint = case when p_amending
                              then format('Omit price: an amendment keeps the order type (%s).', p_type)
                              else format('Omit price for a %s order, or use order_type => ''%s''.', p_type,
                                          case p_type when 'market' then 'limit' else 'stop_limit' end) end;
    when 'stop_price' then
        perform internal.check_positive(p_stop_price, format('stop price of a %s order', p_type), '22S02');
    when 'no_stop_price' then
        -- why the hint: with no order_type a stop price alone made a market order (no price) or a
        -- limit order, and the refusal did not say which type takes one
        raise exception '% orders take no stop price, got %', p_type, internal.number_shown(p_stop_price)
            using errcode = '22S07',
                  hint = case when p_amending
                              then format('Omit stop_price: an amendment keeps the order type (%s).', p_type)
                              else format('Omit stop_price for a %s order, or use order_type => ''%s''.', p_type,
                                          case p_type when 'market' then 'stop_market' else 'stop_limit' end) end;
    when 'price_off_tick' then
        raise exception 'price % is not a multiple of the tick size % of %', internal.number_shown(p_price),
            internal.number_shown(p_instrument.tick_size), p_instrument.symbol
            using errcode = '22S03',
                  hint = format('Round the price to a multiple of %s.', internal.number_shown(p_instrument.tick_size));
    when 'stop_price_off_tick' then
        raise exception 'stop price % is not a multiple of the tick size % of %',
            internal.number_shown(p_stop_price), internal.number_shown(p_instrument.tick_size),
            p_instrument.symbol
            using errcode = '22S03',
                  hint = format('Round the stop price to a multiple of %s.', internal.number_shown(p_instrument.tick_size));
    when 'quantity_off_lot' then
        raise exception 'quantity % is not a multiple of the lot size % of %', internal.number_shown(p_quantity),
            internal.number_shown(p_instrument.lot_size), p_instrument.symbol
            using errcode = '22S04',
                  hint = format('Round the quantity to a multiple of %s.', internal.number_shown(p_instrument.lot_size));
    when 'notional_overflow' then
        -- why: the product failed with a bare numeric overflow (22003) before it was checked
        raise exception 'order notional (quantity % x price % x multiplier %) is too large a number',
            btrim(to_char(p_quantity, '9.999EEEE')), btrim(to_char(p_reference, '9.999EEEE')),
            btrim(to_char(p_instrument.multiplier, '9.999EEEE'))
            using errcode = '22S09',
                  hint = 'Check the quantity and the price: their product overflows numeric.';
    when 'below_min_notional' then
        raise exception 'order notional % is below the minimum % of %',
            internal.number_shown(p_quantity * p_reference * p_instrument.multiplier),
            internal.number_shown(p_instrument.min_notional), p_instrument.symbol
            using errcode = '22S05',
                  hint = 'Increase the quantity.';
    else
        null;  -- the order breaks no rule
    end case;
end;
$$;
comment on function internal.raise_order_fault(ref.instruments, trading.order_type, numeric, numeric, numeric, numeric, boolean) is
    'Raises the error of an order''s first fault (internal.order_price_fault, then internal.order_rule_fault): 22S01, 22S02, 22S07, 22S03, 22S04, 22S09 (notional too large) or 22S05; used by place_order and amend_order.';
