-- spreadedge functions: fills the exchange makes
-- trading.record_exchange_fill: a liquidation, an auto-deleveraging (ADL), the settlement of a dated
-- future or a close at delisting, stored as an order of the strategy marked with that kind
-- (trading.exchange_initiated_orders) and recorded through trading.record_fill, so that positions,
-- PnL, fees, rollups, audit and invariants are exactly those of any fill. Such an order is a fact
-- the exchange reports, not a request: no risk limit, kill switch, minimum notional, tick or lot
-- rule, and no inactive strategy or delisted instrument refuses it.

create or replace function internal.describe_exchange_fill(
    p_strategy_id       integer,
    p_kind              trading.exchange_fill_kind,
    p_side              trading.order_side,
    p_quantity          numeric,
    p_price             numeric,
    p_fee               numeric,
    p_fee_currency      text,
    p_exchange_order_id text
)
    returns text
    stable
    language sql
as $$
    -- An exchange fill in one line for an error detail, e.g. "alpha liquidation sell 2 @ 60000,
    -- fee 1 USDT, exchange order L-1" (a kind of null: a fill of an order the strategy placed).
    select format('%s %s %s %s @ %s, fee %s %s%s',
                  (select s.name from trading.strategies s where s.strategy_id = p_strategy_id),
                  coalesce(p_kind::text, 'placed order:'), p_side, p_quantity, p_price, p_fee, p_fee_currency,
                  ', exchange order ' || p_exchange_order_id)
$$;
comment on function internal.describe_exchange_fill(integer, trading.exchange_fill_kind, trading.order_side, numeric, numeric, numeric, text, text) is
    'One line describing an exchange-initiated fill (strategy, kind, side, quantity, price, fee, exchange order id) for error details.';

create or replace function internal.exchange_fill_again(
    p_trade             trading.trades,
    p_strategy_id       integer,
    p_kind              trading.exchange_fill_kind,
    p_quantity          numeric,
    p_price             numeric,
    p_fee               numeric,
    p_fee_currency      text,
    p_exchange_order_id text
)
    returns bigint
    stable
    language plpgsql
as $$
-- An exchange fill whose (instrument, side, exchange trade id) is already trade p_trade: its id
-- when it is the same fill (strategy, kind, quantity, price, fee as internal.same_fill compares
-- it, exchange order id), else conflicting_duplicate (23S06), with both versions in the detail
-- when the stored trade is in the session's scope. p_fee_currency is upper case, the quote asset
-- when none was given. executed_at is not compared, as in trading.record_fill.
declare
    v_kind              trading.exchange_fill_kind;
    v_exchange_order_id text;
begin
    -- why no detail: another user's trade must not be told apart from, or described to, this session
    if not internal.strategy_in_scope(p_trade.strategy_id) then
        raise exception 'exchange trade id "%" is already recorded', p_trade.exchange_trade_id
            using errcode = '23S06',
                  hint = 'An exchange trade id names one fill of its instrument per side; check the id the fill came with.';
    end if;
    -- why from the key: it stays while the trade refers to it, also once orders cleanup removed
    -- the order row (the kind's row refers to the key)
    select x.kind, k.exchange_order_id into v_kind, v_exchange_order_id
    from trading.order_keys k
    left join trading.exchange_initiated_orders x on x.order_id = k.order_id
    where k.order_id = p_trade.order_id;
    -- a fill of an order the strategy placed has no kind, and is never the same exchange fill
    if p_trade.strategy_id = p_strategy_id and v_kind = p_kind
       and v_exchange_order_id is not distinct from p_exchange_order_id
       and internal.same_fill(p_trade, p_trade.order_id, p_quantity, p_price, p_fee, p_fee_currency) then
        return p_trade.trade_id;
    end if;
    raise exception 'exchange trade id "%" is already recorded as trade % with different values',
        p_trade.exchange_trade_id, p_trade.trade_id
        using errcode = '23S06',
              detail = format('stored: %s (order %s); retried: %s',
                              internal.describe_exchange_fill(p_trade.strategy_id, v_kind,
                                                              p_trade.side, p_trade.quantity, p_trade.price,
                                                              p_trade.fee, p_trade.fee_currency,
                                                              v_exchange_order_id),
                              p_trade.order_id,
                              internal.describe_exchange_fill(p_strategy_id, p_kind, p_trade.side, p_quantity,
                                                              p_price, p_fee, p_fee_currency, p_exchange_order_id)),
              hint = 'Trades are immutable: the fill stands as first recorded. Compare the two sources.';
end;
$$;
comment on function internal.exchange_fill_again(trading.trades, integer, trading.exchange_fill_kind, numeric, numeric, numeric, text, text) is
    'An exchange fill delivered again: the stored trade''s id when strategy, kind, quantity, price, fee and exchange order id agree, else raises 23S06 conflicting_duplicate.';

create or replace function internal.exchange_order_to_fill_again(
    p_instrument        ref.instruments,
    p_exchange_order_id text,
    p_strategy_id       integer,
    p_side              trading.order_side,
    p_kind              trading.exchange_fill_kind,
    p_quantity          numeric
)
    returns bigint
    volatile
    language plpgsql
as $$
-- For an exchange fill with an exchange order id: null when no order of the instrument has the id
-- (the caller stores a new order with it); the id of the exchange-initiated order of the same
-- strategy, side and kind that has it, its quantity raised by p_quantity so that the fill
-- completes it again (an exchange's liquidation order may fill in several trades: its quantity is
-- what its fills add up to); conflicting_duplicate (23S06) when another order has the id.
-- why the lock (internal.lock_exchange_order_id): trading.acknowledge_order takes the same one
-- before it gives an order this id, so the two cannot both take it; the unique index on the key
-- rows stays the guarantee
declare
    v_key   trading.order_keys;
    v_order trading.orders;
    v_kind  trading.exchange_fill_kind;
begin
    perform internal.lock_exchange_order_id(p_instrument.instrument_id, p_exchange_order_id);
    select k.* into v_key
    from trading.order_keys k
    where k.instrument_id = p_instrument.instrument_id and k.exchange_order_id = p_exchange_order_id;
    if not found then
        return null;
    end if;
    if not internal.strategy_in_scope(v_key.strategy_id) then
        raise exception 'exchange order id "%" is already recorded', p_exchange_order_id
            using errcode = '23S06',
                  hint = 'An exchange order id names one order of its instrument; check the id the fill came with.';
    end if;
    select o.* into v_order
    from trading.orders o
    where o.order_id = v_key.order_id and o.created_at = v_key.created_at
    for update;
    select x.kind into v_kind from trading.exchange_initiated_orders x where x.order_id = v_key.order_id;
    if v_order.order_id is null or v_order.strategy_id <> p_strategy_id or v_order.side <> p_side
       or v_kind is distinct from p_kind then
        raise exception 'exchange order id "%" is already recorded for order %', p_exchange_order_id, v_key.order_id
            using errcode = '23S06',
                  detail = format('order %s is %s; the fill is %s %s %s of strategy %s', v_key.order_id,
                                  case when v_order.order_id is null then 'removed by orders cleanup'
                                       when v_kind is null then 'an order the strategy placed'
                                       -- why the article by kind: "a adl sell" read wrong
                                       else format('%s %s %s of strategy %s',
                                                   case v_kind when 'adl' then 'an' else 'a' end, v_kind, v_order.side,
                                                   (select s.name from trading.strategies s
                                                    where s.strategy_id = v_order.strategy_id))
                                  end,
                                  case p_kind when 'adl' then 'an' else 'a' end, p_kind, p_side,
                                  (select s.name from trading.strategies s where s.strategy_id = p_strategy_id)),
                  hint = 'An exchange order id names one order of its instrument; check the id the fill came with.';
    end if;
    update trading.orders o
    set quantity = o.quantity + p_quantity, updated_at = now()
    where o.order_id = v_order.order_id and o.created_at = v_order.created_at;
    return v_order.order_id;
end;
$$;
comment on function internal.exchange_order_to_fill_again(ref.instruments, text, integer, trading.order_side, trading.exchange_fill_kind, numeric) is
    'The exchange-initiated order (same strategy, side, kind) that has an exchange order id, its quantity raised by a new fill''s; null when no order has the id; 23S06 when another order has it.';

create or replace function internal.record_exchange_fill_event(
    p_order_id   bigint,
    p_trade_id   bigint,
    p_kind       trading.exchange_fill_kind,
    p_strategy   trading.strategies,
    p_instrument ref.instruments
)
    returns bigint
    volatile
    language plpgsql
as $$
-- Record a risk event (limit_kind exchange_fill, no limit) for an exchange-initiated order's first
-- fill, and queue its notification on every channel of the strategy's risk limits whose scope the
-- instrument falls in (strategy-wide, its exchange, itself), each channel once; none when the
-- strategy has no such limit. observed_value is the fill's realized PnL net of its fee, in the
-- instrument's quote asset. Returns the event's id.
declare
    v_trade    trading.trades;
    v_exchange text := (select e.code from ref.exchanges e where e.exchange_id = p_instrument.exchange_id);
    v_reason   text;
    v_id       bigint;
    v_channels monitor.notification_channel[];
begin
    select t.* into v_trade from trading.trades t where t.trade_id = p_trade_id;
    -- why trim_scale: the realized PnL has 12 decimals (trading.position_after_fill), most of them
    -- zeros a person reads past
    v_reason := format('%s by %s: %s %s %s @ %s (trade %s), realized %s %s', p_kind, v_exchange, v_trade.side,
                       trim_scale(v_trade.quantity), p_instrument.symbol, trim_scale(v_trade.price), p_trade_id,
                       trim_scale(v_trade.realized_pnl), p_instrument.quote_asset);
    insert into monitor.risk_events (strategy_id, instrument_id, order_id, limit_id, limit_kind, limit_value,
                                     observed_value, reason)
    values (p_strategy.strategy_id, p_instrument.instrument_id, p_order_id, null, 'exchange_fill', null,
            v_trade.realized_pnl, v_reason)
    returning risk_event_id into v_id;
    select array_agg(distinct c.channel order by c.channel) into v_channels
    from monitor.risk_limits l
    cross join unnest(l.channels) c(channel)
    where l.strategy_id = p_strategy.strategy_id
      and (l.exchange_id is null or l.exchange_id = p_instrument.exchange_id)
      and (l.instrument_id is null or l.instrument_id = p_instrument.instrument_id);
    if v_channels is not null then
        perform internal.queue_notifications(
            v_channels,
            jsonb_build_object('source', 'risk', 'subject', format('[RISK] %s: %s', p_strategy.name, v_reason),
                               'text', format('[RISK] %s: %s', p_strategy.name, v_reason), 'risk_event_id', v_id,
                               'strategy', p_strategy.name, 'exchange', v_exchange,
                               'instrument', v_exchange || '/' || p_instrument.symbol,
                               'order_id', p_order_id, 'trade_id', p_trade_id, 'exchange_fill_kind', p_kind,
                               'limit_kind', 'exchange_fill', 'limit_value', null,
                               'observed_value', v_trade.realized_pnl, 'reason', v_reason,
                               'at', internal.iso_utc(now())),
            v_id);
    end if;
    return v_id;
end;
$$;
comment on function internal.record_exchange_fill_event(bigint, bigint, trading.exchange_fill_kind, trading.strategies, ref.instruments) is
    'Records the risk event (exchange_fill) of an exchange-initiated order''s first fill and queues its notification on the channels of the strategy''s risk limits in scope.';

create or replace function trading.record_exchange_fill(
    strategy          text,
    exchange          text,
    symbol            text,
    side              text,
    quantity          numeric,
    price             numeric,
    kind              text,
    exchange_trade_id text,
    fee               numeric default 0,
    fee_currency      text default null,
    executed_at       timestamptz default now(),
    fee_quote         numeric default null,
    exchange_order_id text default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Record a fill the exchange made (kind: liquidation, adl, settlement, delisting) and return its
-- trade id. In one transaction: an order of the strategy (market, no client order id, created at
-- executed_at, its kind in trading.exchange_initiated_orders, its placement event's reason
-- "exchange-initiated: kind"), its fill through trading.record_fill (new -> filled), and for a
-- liquidation, an ADL or a close at delisting a notified risk event
-- (internal.record_exchange_fill_event). A settlement is the
-- contract's scheduled end: in the order history, not a risk event.
-- Not held to risk limits, the kill switch, minimum notional, tick or lot size, nor to the
-- strategy or the instrument being active: the exchange's numbers are facts. Checked: side,
-- kind, quantity and price positive and finite, the strategy and instrument exist, and what
-- record_fill checks (fee, fee currency, executed_at, exchange trade id).
-- Idempotent on (instrument, side, exchange_trade_id) as record_fill: the same fill again
-- returns its trade id and writes nothing; other values are conflicting_duplicate (23S06), and
-- so is an id a fill of an order the strategy placed has. With exchange_order_id, fills of one
-- exchange order are fills of one order, whose quantity is what they add up to.
#variable_conflict use_column
declare
    v_strategy   trading.strategies;
    v_instrument ref.instruments;
    v_side       trading.order_side;
    v_kind       trading.exchange_fill_kind;
    -- why "C": an asset code is ASCII (as in trading.record_fill)
    v_fee_ccy    text := upper(record_exchange_fill.fee_currency collate "C");
    v_existing   trading.trades;
    v_order_id   bigint;
    v_trade_id   bigint;
    v_checked    numeric;
    v_constraint text;
begin
    perform internal.require_permission('orders:write');
    v_strategy := internal.find_strategy(record_exchange_fill.strategy);
    v_instrument := internal.find_instrument(record_exchange_fill.exchange, record_exchange_fill.symbol);
    if record_exchange_fill.side is null or record_exchange_fill.side not in ('buy', 'sell') then
        raise exception 'side must be buy or sell, got "%"', coalesce(record_exchange_fill.side, 'null')
            using errcode = '22S06';
    end if;
    v_side := record_exchange_fill.side::trading.order_side;
    if record_exchange_fill.kind is null
       or not record_exchange_fill.kind = any (enum_range(null::trading.exchange_fill_kind)::text[]) then
        raise exception 'kind must be liquidation, adl, settlement or delisting, got "%"',
            coalesce(left(record_exchange_fill.kind, 80), 'null')
            using errcode = '22S09',
                  hint = 'kind says why the exchange made the fill: liquidation, adl (auto-deleveraging), settlement (a future''s expiry), delisting.';
    end if;
    v_kind := record_exchange_fill.kind::trading.exchange_fill_kind;
    -- why here, though record_fill checks them too: the values are compared with a stored trade
    -- and stored in an order before record_fill runs (executed_at is the order's partition key)
    v_checked := internal.check_positive(record_exchange_fill.quantity, 'fill quantity', '22S01');
    v_checked := internal.check_positive(record_exchange_fill.price, 'fill price', '22S02');
    -- why, as trading.place_order checks an order's: each factor is below numeric's limit, but a
    -- fill's notional (the rollups' notional, the position's cost) can pass it, and the fill failed
    -- in record_fill with a bare numeric overflow (22003); a placed order's fill is bounded by its
    -- order's notional, checked at placement, but an exchange fill has no placement. Factors all
    -- below 10^43690 cannot overflow, so only a fill beyond them pays for the block
    if record_exchange_fill.quantity >= 1e43690 or record_exchange_fill.price >= 1e43690
       or v_instrument.multiplier >= 1e43690 then
        begin
            perform record_exchange_fill.quantity * record_exchange_fill.price * v_instrument.multiplier;
        exception when numeric_value_out_of_range then
            raise exception 'fill notional (quantity % x price % x multiplier %) is too large a number',
                btrim(to_char(record_exchange_fill.quantity, '9.999EEEE')),
                btrim(to_char(record_exchange_fill.price, '9.999EEEE')),
                btrim(to_char(v_instrument.multiplier, '9.999EEEE'))
                using errcode = '22S09',
                      hint = 'Check the quantity and the price: their product overflows numeric.';
        end;
    end if;
    v_checked := internal.check_amount_size(record_exchange_fill.fee, 'fee');
    perform internal.check_time(record_exchange_fill.executed_at, 'executed_at');
    if record_exchange_fill.exchange_trade_id is null or record_exchange_fill.exchange_trade_id = ''
       or length(record_exchange_fill.exchange_trade_id) > 128 then
        raise exception 'exchange_trade_id must be 1 to 128 characters, got %',
            coalesce(length(record_exchange_fill.exchange_trade_id)::text, 'null') using errcode = '22S09';
    end if;
    if record_exchange_fill.exchange_order_id = '' or length(record_exchange_fill.exchange_order_id) > 128 then
        raise exception 'exchange_order_id must be 1 to 128 characters, got %',
            length(record_exchange_fill.exchange_order_id)
            using errcode = '22S09',
                  hint = 'Omit exchange_order_id (null) when the exchange gave none.';
    end if;
    if v_fee_ccy is not null and v_fee_ccy !~ '^[A-Z0-9]{1,32}$' then
        raise exception 'fee currency must be an alphanumeric asset code of at most 32 characters, got "%"',
            left(record_exchange_fill.fee_currency, 80)
            using errcode = '22S09';
    end if;
    -- why a lock on the fill's key: two deliveries of one exchange fill at once would each store
    -- an order, and the second's record_fill would then find the first's trade under another
    -- order and refuse the same fill as a conflict (23S06); taken in turn, the second finds the
    -- trade below and returns it. Fills recorded with record_fill do not take it: the trade key's
    -- unique index still refuses those that collide with an exchange fill.
    perform pg_advisory_xact_lock('trading.trade_keys'::regclass::oid::integer,
                                  hashtext(v_instrument.instrument_id || '/' || v_side || '/'
                                           || record_exchange_fill.exchange_trade_id));
    select t.* into v_existing
    from trading.trade_keys tk
    join trading.trades t on t.trade_id = tk.trade_id and t.executed_at = tk.executed_at
    where tk.instrument_id = v_instrument.instrument_id
      and tk.exchange_trade_id = record_exchange_fill.exchange_trade_id and tk.side = v_side;
    if found then
        return internal.exchange_fill_again(v_existing, v_strategy.strategy_id, v_kind, record_exchange_fill.quantity,
                                            record_exchange_fill.price, record_exchange_fill.fee,
                                            coalesce(v_fee_ccy, v_instrument.quote_asset),
                                            record_exchange_fill.exchange_order_id);
    end if;

    if record_exchange_fill.exchange_order_id is not null then
        v_order_id := internal.exchange_order_to_fill_again(v_instrument, record_exchange_fill.exchange_order_id,
                                                            v_strategy.strategy_id, v_side, v_kind,
                                                            record_exchange_fill.quantity);
    end if;
    if v_order_id is null then
        v_order_id := nextval('trading.order_id_seq');
        -- the key carries the strategy and instrument the order and its trade are held to, and the
        -- exchange order id unique per instrument (as trading.acknowledge_order keeps it)
        -- why a block under REPEATABLE READ and SERIALIZABLE only, with an exchange order id: their
        -- snapshot predates the turn the id's lock gave, so internal.exchange_order_to_fill_again
        -- missed the order another fill of the exchange order committed meanwhile, and the unique
        -- index refused this key with a bare 23505 (as in trading.acknowledge_order)
        if record_exchange_fill.exchange_order_id is null
           or pg_catalog.current_setting('transaction_isolation') in ('read committed', 'read uncommitted') then
            insert into trading.order_keys (order_id, created_at, exchange_id, client_order_id, strategy_id,
                                            instrument_id, exchange_order_id)
            values (v_order_id, record_exchange_fill.executed_at, v_instrument.exchange_id, null,
                    v_strategy.strategy_id, v_instrument.instrument_id, record_exchange_fill.exchange_order_id);
        else
            begin
                insert into trading.order_keys (order_id, created_at, exchange_id, client_order_id, strategy_id,
                                                instrument_id, exchange_order_id)
                values (v_order_id, record_exchange_fill.executed_at, v_instrument.exchange_id, null,
                        v_strategy.strategy_id, v_instrument.instrument_id, record_exchange_fill.exchange_order_id);
            exception when unique_violation then
                get stacked diagnostics v_constraint = constraint_name;
                if v_constraint is distinct from 'order_keys_exchange_order_id_key' then
                    raise;
                end if;
                perform internal.refuse_unseen_exchange_order_id(v_instrument.instrument_id,
                                                                 record_exchange_fill.exchange_order_id);
            end;
        end if;
        -- why market: the exchange set the price, the strategy none
        insert into trading.orders
            (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price, stop_price,
             client_order_id, exchange_order_id, updated_at, status, status_reason)
        values
            (v_order_id, record_exchange_fill.executed_at, v_strategy.strategy_id, v_instrument.instrument_id, v_side,
             'market', record_exchange_fill.quantity, null, null, null, record_exchange_fill.exchange_order_id,
             record_exchange_fill.executed_at, 'new', null);
        insert into trading.exchange_initiated_orders (order_id, kind) values (v_order_id, v_kind);
        insert into trading.order_events (order_id, occurred_at, from_status, to_status, reason)
        values (v_order_id, record_exchange_fill.executed_at, null, 'new', format('exchange-initiated: %s', v_kind));
        v_trade_id := trading.record_fill(
            order_id => v_order_id, exchange_trade_id => record_exchange_fill.exchange_trade_id,
            quantity => record_exchange_fill.quantity, price => record_exchange_fill.price,
            fee => record_exchange_fill.fee, fee_currency => record_exchange_fill.fee_currency,
            executed_at => record_exchange_fill.executed_at, fee_quote => record_exchange_fill.fee_quote);
        if v_kind <> 'settlement' then
            perform internal.record_exchange_fill_event(v_order_id, v_trade_id, v_kind, v_strategy, v_instrument);
        end if;
        return v_trade_id;
    end if;
    -- another fill of an exchange order already recorded: notified with its first fill
    return trading.record_fill(
        order_id => v_order_id, exchange_trade_id => record_exchange_fill.exchange_trade_id,
        quantity => record_exchange_fill.quantity, price => record_exchange_fill.price,
        fee => record_exchange_fill.fee, fee_currency => record_exchange_fill.fee_currency,
        executed_at => record_exchange_fill.executed_at, fee_quote => record_exchange_fill.fee_quote);
end;
$$;
comment on function trading.record_exchange_fill(text, text, text, text, numeric, numeric, text, text, numeric, text, timestamptz, numeric, text) is
    'Record a fill the exchange made (kind liquidation, adl, settlement or delisting) as an exchange-initiated order of the strategy filled through trading.record_fill; never held to risk limits, the kill switch, minimum notional, tick or lot, nor to an active strategy or instrument. Idempotent on (instrument, side, exchange_trade_id); other values are 23S06. A liquidation, an ADL or a close at delisting is a notified risk event (exchange_fill). Returns the trade id.';
