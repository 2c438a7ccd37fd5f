-- spreadedge functions: order amendments
-- trading.amend_order: a working order's quantity, price or stop price changed in place, keeping
-- its id and its exchange order id, as every exchange lets an order be amended (Binance futures
-- modify order, OKX amend-order, Bybit amend, Gate.io amend, Kraken edit, Coinbase Advanced edit).
-- The amended order obeys the rules of trading.place_order (30_trading_orders.sql) and, when it
-- takes on more risk, the strategy's pre-trade risk limits (69_monitor_risk.sql).
-- Named after 30_trading_orders.sql so that it is applied after it.

create or replace function internal.amendment_text(
    p_order      trading.orders,
    p_quantity   numeric,
    p_price      numeric,
    p_stop_price numeric,
    p_reason     text
)
    returns text
    -- why stable: format and concat_ws are
    stable
    language sql
as $$
    -- The reason of an amendment's order event: what changed from p_order, then ': ' and p_reason
    -- when one is given, e.g. "amended: quantity 1 -> 2, price 60000 -> 60100: chasing the bid".
    -- why trim_scale: 2.000 for 2 read as a change of scale, which numeric equality ignores
    -- why nullif: as for a cancel, an empty or blank reason says nothing
    select 'amended: '
           || concat_ws(', ',
                        case when p_quantity <> p_order.quantity
                             then format('quantity %s -> %s', internal.number_shown(trim_scale(p_order.quantity)),
                                         internal.number_shown(trim_scale(p_quantity))) end,
                        case when p_price is distinct from p_order.price
                             then format('price %s -> %s', internal.number_shown(trim_scale(p_order.price)),
                                         internal.number_shown(trim_scale(p_price))) end,
                        case when p_stop_price is distinct from p_order.stop_price
                             then format('stop price %s -> %s', internal.number_shown(trim_scale(p_order.stop_price)),
                                         internal.number_shown(trim_scale(p_stop_price))) end)
           || coalesce(': ' || nullif(btrim(p_reason, E' \t\n\r'), ''), '')
$$;
comment on function internal.amendment_text(trading.orders, numeric, numeric, numeric, text) is
    'The reason of an amendment''s order event: "amended: " and what changed (quantity, price, stop price: old -> new), then ": " and the reason given.';

create or replace function internal.amend_order(
    p_order_id   bigint,
    p_quantity   numeric,
    p_price      numeric,
    p_stop_price numeric,
    p_reason     text
)
    returns text
    volatile
    language plpgsql
as $$
-- trading.amend_order's work: amend order p_order_id (null arguments keep the current values) and
-- return null, or return the reason a risk limit refused the amendment (the order kept as it was,
-- the breach recorded as a risk event of the order). Raises unknown_order (23S04) as
-- trading.cancel_order does, invalid_argument (22S09) when nothing is given, illegal_state_transition
-- (55S01) for an order that is not working, overfill (23S05) for a quantity not above the filled
-- one, invalid_argument for more risk on an inactive strategy or instrument, and place_order's
-- codes for values that break the order's rules.
declare
    v_order      trading.orders;
    v_strategy   trading.strategies;
    v_instrument ref.instruments;
    v_quantity   numeric;
    v_price      numeric;
    v_stop_price numeric;
    v_reference  numeric;
    v_limits     monitor.risk_limits[];
    v_refusal    text;
begin
    perform internal.require_permission('orders:write');
    if num_nonnulls(p_quantity, p_price, p_stop_price) = 0 then
        raise exception 'nothing to amend: quantity, price and stop_price are all null'
            using errcode = '22S09',
                  hint = 'Give the new quantity, price or stop_price; null keeps the current one.';
    end if;
    -- why the lock after the check: as in internal.close_order, a user without the permission
    -- must get permission_denied, not learn whether the order exists
    v_order := internal.lock_order(p_order_id);
    v_quantity := coalesce(p_quantity, v_order.quantity);
    v_price := coalesce(p_price, v_order.price);
    v_stop_price := coalesce(p_stop_price, v_order.stop_price);
    -- why before the status and the rules: an exchange's "amended" message delivered again (an
    -- application replaying from a checkpoint, after the order was filled or cancelled, or after
    -- the instrument's tick changed) asks for what the order has; refused, the replay stopped at
    -- a message the order had applied. It writes nothing, not even an order event
    if v_quantity = v_order.quantity and v_price is not distinct from v_order.price
       and v_stop_price is not distinct from v_order.stop_price then
        return null;
    end if;
    if v_order.status not in ('new', 'open', 'partially_filled') then
        raise exception 'order % cannot be amended: it is %', v_order.order_id, v_order.status
            using errcode = '55S01',
                  hint = 'Only a working order (new, open or partially filled) can be amended.';
    end if;
    if internal.order_price_fault(v_order.order_type, v_quantity, v_price, v_stop_price) is not null then
        perform internal.raise_order_fault(null, v_order.order_type, v_quantity, v_price, v_stop_price, null, true);
    end if;
    if v_quantity <= v_order.filled_quantity then
        raise exception 'order % has % filled: an amended quantity of % would leave nothing to fill',
            v_order.order_id, internal.number_shown(v_order.filled_quantity), internal.number_shown(v_quantity)
            using errcode = '23S05',
                  hint = 'Cancel the order instead: nothing would be left to fill.';
    end if;
    -- why: a spread trade's two legs have its one quantity (trading.spread_trades.quantity, which
    -- ops.check_invariants holds them to); one leg resized alone would leave the spread unhedged
    if v_quantity <> v_order.quantity
       and exists (select from trading.spread_trades s
                   where s.buy_order_id = v_order.order_id or s.sell_order_id = v_order.order_id) then
        raise exception 'order % is a leg of a spread trade: its quantity is the spread trade''s', v_order.order_id
            using errcode = '22S09',
                  hint = 'Amend its price only, or cancel both legs and open a new spread trade.';
    end if;
    -- the instrument FOR KEY SHARE, as trading.place_order: the rules are those in force at commit
    select i.* into v_instrument
    from ref.instruments i
    where i.instrument_id = v_order.instrument_id
    for key share;
    select s.* into v_strategy from trading.strategies s where s.strategy_id = v_order.strategy_id;
    -- valued as place_order values an order: its price, else its stop price, else the market
    -- price as the strategy's owner sees it
    v_reference := coalesce(v_price, v_stop_price,
                            internal.owner_mark_price(v_order.instrument_id, v_strategy.owner_user_id));
    if internal.order_rule_fault(v_instrument.tick_size, v_instrument.lot_size, v_instrument.min_notional,
                                 v_instrument.multiplier, v_quantity, v_price, v_stop_price, v_reference) is not null then
        perform internal.raise_order_fault(v_instrument, v_order.order_type, v_quantity, v_price, v_stop_price,
                                           v_reference, true);
    end if;
    -- Pre-trade risk limits, for an amendment that takes on more risk: a larger notional
    -- (quantity x price, or stop price), or a larger quantity of an order without either. It is
    -- checked as the amended order placed anew would be (internal.risk_breach, the whole new
    -- quantity), but for max_open_orders: the count of working orders does not change.
    -- why the whole quantity, not what is left to fill: max_order_notional caps an order's size
    -- on the exchange, which is the whole of it; for the position notional the filled part is
    -- counted twice (it is in the position), which can refuse an amendment a closer count would
    -- pass, never pass one it would refuse
    -- why never the others: a kill switch or a limit already broken must not stop a trader from
    -- shrinking an order, or from moving its price where the order is worth less
    if (case when coalesce(v_price, v_stop_price) is null then v_quantity > v_order.quantity
             else v_quantity * coalesce(v_price, v_stop_price)
                  > v_order.quantity * coalesce(v_order.price, v_order.stop_price) end) then
        -- why: an inactive strategy or instrument places no new order (trading.place_order), and
        -- an amendment that takes on more risk was the way round it: a paused strategy's order
        -- could be doubled, a delisted instrument's order moved where it fills. As for a kill
        -- switch, shrinking an order stays open
        if not v_strategy.is_active then
            raise exception 'strategy "%" is inactive: order % can only be made smaller', v_strategy.name,
                v_order.order_id
                using errcode = '22S09',
                      hint = 'An inactive strategy takes on no new risk: lower the quantity or the price, or cancel the order.';
        end if;
        if not v_instrument.is_active then
            raise exception 'instrument "%" on "%" is inactive: order % can only be made smaller', v_instrument.symbol,
                (select e.code from ref.exchanges e where e.exchange_id = v_instrument.exchange_id), v_order.order_id
                using errcode = '22S09',
                      hint = 'An inactive instrument takes on no new risk: lower the quantity or the price, or cancel the order.';
        end if;
        -- why the shared lock: as in trading.place_order, a change of the strategy's limits
        -- (monitor.set_kill_switch, set_risk_limit) waits for this amendment, and one that comes
        -- after the change is checked against it
        perform pg_advisory_xact_lock_shared('trading.strategies'::regclass::oid::integer, v_order.strategy_id);
        select array_agg(r) into v_limits
        from monitor.risk_limits r where r.strategy_id = v_order.strategy_id;
        if v_limits is not null then
            v_refusal := internal.risk_breach(v_order.strategy_id, v_order.order_id, v_limits, v_instrument,
                                              v_order.side, v_quantity, v_reference, p_amending => true);
            if v_refusal is not null then
                return v_refusal;
            end if;
        end if;
    end if;
    update trading.orders o
    set quantity = v_quantity, price = v_price, stop_price = v_stop_price, updated_at = now()
    where o.order_id = v_order.order_id and o.created_at = v_order.created_at;
    insert into trading.order_events (order_id, from_status, to_status, reason)
    values (v_order.order_id, v_order.status, v_order.status,
            internal.amendment_text(v_order, v_quantity, v_price, v_stop_price, p_reason));
    return null;
end;
$$;
comment on function internal.amend_order(bigint, numeric, numeric, numeric, text) is
    'Amends a working order (trading.amend_order''s work); returns null, or the reason a risk limit refused the amendment.';

create or replace function trading.amend_order(
    order_id   bigint,
    quantity   numeric default null,
    price      numeric default null,
    stop_price numeric default null,
    reason     text default null
)
    returns table (amended boolean, reason text)
    volatile
    security definer
    set search_path = ''
    -- why sql over internal.amend_order: PL/pgSQL refuses an argument and a result column of one
    -- name (reason), which the API gives both, as cancel_order names its argument
    language sql
as $$
    -- Amend a working order (new, open or partially filled) in place: null keeps the current
    -- quantity, price or stop price; the order keeps its id, status and exchange order id. One
    -- row: (true, null) when amended, or when the order already has these values (a replayed
    -- amendment writes nothing); (false, the reason) when a risk limit refuses an amendment that
    -- takes on more risk (the order keeps its values; the risk event and its notification are
    -- recorded). Raises as internal.amend_order says.
    select r is null, r
    from internal.amend_order(amend_order.order_id, amend_order.quantity, amend_order.price,
                              amend_order.stop_price, amend_order.reason) r
$$;
comment on function trading.amend_order(bigint, numeric, numeric, numeric, text) is
    'Amend a working order''s quantity, price or stop price in place (null keeps one), held to place_order''s rules (22S01-22S05, 22S07, 22S09), to a quantity above the filled one (23S05) and, when it takes on more risk, to the strategy''s risk limits but max_open_orders: returns (amended, reason), (false, the limit''s reason) on a breach; the values the order has already change nothing; 55S01 for an order that is not working, 22S09 for nothing to amend, a spread trade leg''s quantity, or more risk on an inactive strategy or instrument.';
