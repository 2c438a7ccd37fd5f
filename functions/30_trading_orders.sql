-- spreadedge functions: orders
-- trading.place_order with its validation and idempotent client_order_id, and the order state
-- machine: acknowledge, cancel, reject, expire. The rules an order obeys live in
-- 30_trading_order_rules.sql, amendments (trading.amend_order) in 30_trading_orders_amend.sql,
-- fills in 31_trading_fills.sql.

create or replace function trading.is_legal_transition(
    p_from trading.order_status,
    p_to   trading.order_status
)
    returns boolean
    immutable
    language sql
as $$
    -- The order state machine. Terminal: filled and rejected. A cancelled or expired order can
    -- still become filled when a late fill completes it (the cancel lost the race on the exchange).
    -- An amendment (trading.amend_order) changes no status, and its order event goes from the
    -- order's status to the same one without asking this.
    select case p_from
        when 'new'              then p_to in ('open', 'partially_filled', 'filled', 'cancelled', 'rejected', 'expired')
        when 'open'             then p_to in ('partially_filled', 'filled', 'cancelled', 'expired')
        when 'partially_filled' then p_to in ('filled', 'cancelled', 'expired')
        when 'cancelled'        then p_to = 'filled'
        when 'expired'          then p_to = 'filled'
        else false
    end
$$;
comment on function trading.is_legal_transition(trading.order_status, trading.order_status) is
    'True when an order may move from the first status to the second.';

-- the one-argument form: a call with one argument would match both
drop function if exists internal.lock_order(bigint);

create or replace function internal.lock_order(p_order_id bigint, p_removed_ok boolean default false)
    returns trading.orders
    volatile
    language plpgsql
as $$
-- The order row, locked FOR UPDATE; raises unknown_order (23S04), also for an order outside the
-- session's scope, and invalid_argument (22S09) for a null id. With p_removed_ok, an order that
-- orders cleanup removed (its key stays while trades refer to it) in the session's scope is a row
-- of nulls instead (trading.record_fill then looks for the fill among its trades).
-- why two statements: a join from trading.order_keys to the partitioned orders table finds the
-- partition only while it runs, so every partition is opened, locked and given a row mark first
-- (over 4 % of a fill's instructions); with the partition key read first, the locking query
-- prunes to the order's partition when it starts. created_at never changes, so reading it
-- without a lock is safe.
declare
    v_created_at timestamptz;
    v_strategy   integer;
    v_order      trading.orders;
begin
    select k.created_at, k.strategy_id into v_created_at, v_strategy
    from trading.order_keys k
    where k.order_id = p_order_id;
    if found then
        select o.* into v_order
        from trading.orders o
        where o.order_id = p_order_id and o.created_at = v_created_at
        for update;
    end if;
    -- why the same error: another user's order must not be told apart from a missing one
    if v_order.order_id is null or not internal.strategy_in_scope(v_order.strategy_id) then
        -- why here, after the lookup: a null id finds nothing, and testing it first would cost
        -- every fill
        if p_order_id is null then
            raise exception 'order_id must be given, got null' using errcode = '22S09';
        end if;
        if p_removed_ok and v_created_at is not null and v_order.order_id is null
           and internal.strategy_in_scope(v_strategy) then
            return v_order;
        end if;
        raise exception 'order % does not exist', p_order_id
            using errcode = '23S04';
    end if;
    return v_order;
end;
$$;
comment on function internal.lock_order(bigint, boolean) is 'Locks and returns an order by id; raises 23S04 unknown_order (22S09 for a null id); with p_removed_ok, an order removed by cleanup is a row of nulls.';

create or replace function internal.change_order_status(
    p_order     trading.orders,
    p_to        trading.order_status,
    p_reason    text default null,
    p_trade_id  bigint default null
)
    returns void
    volatile
    language plpgsql
as $$
-- Move a locked order to p_to and record the order event; raises illegal_state_transition (55S01).
begin
    if not trading.is_legal_transition(p_order.status, p_to) then
        raise exception 'order % cannot go from % to %', p_order.order_id, p_order.status, p_to
            using errcode = '55S01';
    end if;
    update trading.orders o
    set status = p_to,
        status_reason = coalesce(p_reason, o.status_reason),
        updated_at = now()
    where o.order_id = p_order.order_id and o.created_at = p_order.created_at;
    insert into trading.order_events (order_id, from_status, to_status, trade_id, reason)
    values (p_order.order_id, p_order.status, p_to, p_trade_id, p_reason);
end;
$$;
comment on function internal.change_order_status(trading.orders, trading.order_status, text, bigint) is
    'Moves a locked order to a new status and records the event; raises 55S01 on an illegal transition.';

create or replace function internal.describe_order(
    p_strategy_id   integer,
    p_instrument_id integer,
    p_side          trading.order_side,
    p_order_type    trading.order_type,
    p_quantity      numeric,
    p_price         numeric,
    p_stop_price    numeric
)
    returns text
    stable
    language sql
as $$
    -- An order in one line for an error detail: strategy, side, quantity, symbol, type, price and
    -- stop price, e.g. "alpha buy 1 BTCUSDT stop_limit @ 100 stop 99".
    select format('%s %s %s %s %s @ %s%s',
                  (select s.name from trading.strategies s where s.strategy_id = p_strategy_id),
                  p_side, p_quantity,
                  (select i.symbol from ref.instruments i where i.instrument_id = p_instrument_id),
                  p_order_type, coalesce(p_price::text, 'market'), ' stop ' || p_stop_price)
$$;
comment on function internal.describe_order(integer, integer, trading.order_side, trading.order_type, numeric, numeric, numeric) is
    'One line describing an order (strategy, side, quantity, symbol, type, price, stop price) for error details.';

create or replace function internal.match_retried_order(
    p_exchange_id     smallint,
    p_client_order_id text,
    p_strategy_id     integer,
    p_instrument_id   integer,
    p_side            trading.order_side,
    p_order_type      trading.order_type,
    p_quantity        numeric,
    p_price           numeric,
    p_stop_price      numeric
)
    returns bigint
    stable
    language plpgsql
as $$
-- For a placement retried with a client_order_id already used on the exchange: the stored order's
-- id when the retry asks for the same order, conflicting_duplicate (23S06) when it differs, null
-- when the id is new. An order of a strategy outside the session's scope is never returned nor
-- described: its id raises 23S06 without details (a leg of trading.open_spread_trade included).
-- An id whose order cleanup removed (its key stays while trades refer to it) raises 23S06 too.
declare
    v_order trading.orders;
    v_key   trading.order_keys;
begin
    -- why a left join: a key without its order (cleanup keeps the keys trades or risk events refer
    -- to) gave no row, so the id looked new, the key insert then conflicted, and place_order
    -- returned null with nothing stored and no error
    select o.* into v_order
    from trading.order_keys k
    left join trading.orders o on o.order_id = k.order_id and o.created_at = k.created_at
    where k.exchange_id = p_exchange_id and k.client_order_id = p_client_order_id;
    if not found then
        return null;
    end if;
    if v_order.order_id is null then
        select k.* into v_key
        from trading.order_keys k
        where k.exchange_id = p_exchange_id and k.client_order_id = p_client_order_id;
        if not internal.strategy_in_scope(v_key.strategy_id) then
            raise exception 'client order id "%" is already used', p_client_order_id
                using errcode = '23S06',
                      hint = 'A client order id names one order; use a new id for a new order.';
        end if;
        raise exception 'client order id "%" is already used by order %, which cleanup has removed',
            p_client_order_id, v_key.order_id
            using errcode = '23S06',
                  detail = format('order %s was placed at %s; its trades are kept', v_key.order_id, v_key.created_at),
                  hint = 'A client order id names one order; use a new id for a new order.';
    end if;
    if (v_order.strategy_id, v_order.instrument_id, v_order.side, v_order.order_type, v_order.quantity)
       is distinct from (p_strategy_id, p_instrument_id, p_side, p_order_type, p_quantity)
       or v_order.price is distinct from p_price or v_order.stop_price is distinct from p_stop_price then
        -- why no id and no detail: another user's order must not be told apart from, or described
        -- to, this session; the id stays taken (it is unique per exchange across strategies).
        -- why only here: p_strategy_id passed internal.find_strategy, so an order that matches it
        -- is in scope, and a retry that returns its order pays nothing for this check
        if not internal.strategy_in_scope(v_order.strategy_id) then
            raise exception 'client order id "%" is already used', p_client_order_id
                using errcode = '23S06',
                      hint = 'A client order id names one order; use a new id for a new order.';
        end if;
        -- why the strategy, symbol and stop price too: a retry that differs only in them showed
        -- two identical sides ("stored: buy 1 limit @ 100; retried: buy 1 limit @ 100")
        raise exception 'client order id "%" is already used by order % with different values',
            p_client_order_id, v_order.order_id
            using errcode = '23S06',
                  detail = format('stored: %s; retried: %s',
                                  internal.describe_order(v_order.strategy_id, v_order.instrument_id, v_order.side,
                                                          v_order.order_type, v_order.quantity, v_order.price,
                                                          v_order.stop_price),
                                  internal.describe_order(p_strategy_id, p_instrument_id, p_side, p_order_type,
                                                          p_quantity, p_price, p_stop_price)),
                  hint = 'A client order id names one order; use a new id for a new order.';
    end if;
    return v_order.order_id;
end;
$$;
comment on function internal.match_retried_order(smallint, text, integer, integer, trading.order_side, trading.order_type, numeric, numeric, numeric) is
    'Id of the order a retried placement refers to (null if new); raises 23S06 when the retry differs, the id is another user''s or its order was removed by cleanup.';

create or replace function trading.place_order(
    strategy        text,
    exchange        text,
    symbol          text,
    side            text,
    quantity        numeric,
    price           numeric default null,
    order_type      text default null,
    client_order_id text default null,
    stop_price      numeric default null,
    placed_at       timestamptz default now()
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Validate and store a new order (status new) and its placement event; returns its id. order_type
-- defaults to limit when a price is given, market otherwise. A retry with the same client_order_id
-- on the same exchange returns the same order, writes nothing and locks nothing (also once its strategy or
-- instrument is inactive, which refuses new orders with invalid_argument). An order that breaks a pre-trade
-- risk limit of its strategy is stored as rejected with the reason (see functions/69_monitor_risk.sql).
-- The order's rules (internal.order_price_fault, internal.order_rule_fault) are those
-- trading.amend_order holds an amended order to.
#variable_conflict use_column
declare
    v_strategy   trading.strategies := internal.find_strategy(place_order.strategy);
    -- locked once the placement is known to be new (below)
    v_instrument ref.instruments := internal.find_instrument(place_order.exchange, place_order.symbol);
    v_side       trading.order_side;
    v_type       trading.order_type;
    v_reference  numeric;
    v_order_id   bigint;
    v_status     trading.order_status := 'new';
    v_reason     text;
    v_limits     monitor.risk_limits[];
begin
    perform internal.require_permission('orders:write');
    if place_order.side is null or place_order.side not in ('buy', 'sell') then
        raise exception 'side must be buy or sell, got "%"', coalesce(place_order.side, 'null')
            using errcode = '22S06';
    end if;
    v_side := place_order.side::trading.order_side;
    if place_order.order_type is not null
       and place_order.order_type not in ('market', 'limit', 'stop_market', 'stop_limit') then
        raise exception 'order type must be market, limit, stop_market or stop_limit, got "%"', place_order.order_type
            using errcode = '22S07';
    end if;
    v_type := coalesce(place_order.order_type,
                       case when place_order.price is null then 'market' else 'limit' end)::trading.order_type;
    -- why the check first: internal.raise_order_fault is a call, which an order that breaks nothing
    -- does not pay for (the check is inlined); the instrument's rules are checked below
    if internal.order_price_fault(v_type, place_order.quantity, place_order.price, place_order.stop_price) is not null then
        perform internal.raise_order_fault(v_instrument, v_type, place_order.quantity, place_order.price,
                                           place_order.stop_price, null);
    end if;
    perform internal.check_time(place_order.placed_at, 'placed_at');
    if place_order.client_order_id is not null then
        -- why the length: the id is an index key, and a btree entry over about 2.7 kB fails with
        -- an internal error (54000); exchanges take 32 to 64 characters
        if place_order.client_order_id = '' or length(place_order.client_order_id) > 128 then
            raise exception 'client_order_id must be 1 to 128 characters, got %',
                length(place_order.client_order_id)
                using errcode = '22S09',
                      hint = 'Omit client_order_id (null) for an order without one.';
        end if;
        v_order_id := internal.match_retried_order(
            v_instrument.exchange_id, place_order.client_order_id, v_strategy.strategy_id,
            v_instrument.instrument_id, v_side, v_type, place_order.quantity, place_order.price,
            place_order.stop_price);
        if v_order_id is not null then
            return v_order_id;
        end if;
    end if;
    -- The instrument FOR KEY SHARE (as internal.lock_instrument): the rules checked below are those
    -- in force when the order commits, since ref.upsert_instrument locks the row FOR UPDATE first.
    -- why only now: a row lock is a write, and a retry that took it was a write transaction whose
    -- commit waits for its WAL flush and for a synchronous standby: with the standby gone, the
    -- retry of a placement whose outcome was unknown hung as the placement had, never returning
    -- the order that was there
    select i.* into v_instrument
    from ref.instruments i
    where i.instrument_id = v_instrument.instrument_id
    for key share;
    -- why after the retry: an inactive strategy or instrument places no new order, but a retry of
    -- one placed before returns it; refused, the caller took its stored order for one never placed
    if not v_strategy.is_active then
        raise exception 'strategy "%" is inactive', v_strategy.name using errcode = '22S09';
    end if;
    if not v_instrument.is_active then
        raise exception 'instrument "%" on "%" is inactive', v_instrument.symbol, place_order.exchange
            using errcode = '22S09';
    end if;

    -- why: a market order has no price of its own; check it at the market price when one is known,
    -- as the strategy's owner sees it: trading.mark_price in an unscoped session (the engine) fell
    -- back to any trader's latest fill, and a risk limit's reason told the owner that price
    v_reference := coalesce(place_order.price, place_order.stop_price,
                            internal.owner_mark_price(v_instrument.instrument_id, v_strategy.owner_user_id));
    if internal.order_rule_fault(v_instrument.tick_size, v_instrument.lot_size, v_instrument.min_notional,
                                 v_instrument.multiplier, place_order.quantity, place_order.price,
                                 place_order.stop_price, v_reference) is not null then
        perform internal.raise_order_fault(v_instrument, v_type, place_order.quantity, place_order.price,
                                           place_order.stop_price, v_reference);
    end if;

    v_order_id := nextval('trading.order_id_seq');
    -- the key carries the strategy and instrument the order and its trades are held to
    insert into trading.order_keys (order_id, created_at, exchange_id, client_order_id, strategy_id, instrument_id)
    values (v_order_id, place_order.placed_at, v_instrument.exchange_id, place_order.client_order_id,
            v_strategy.strategy_id, v_instrument.instrument_id)
    on conflict (exchange_id, client_order_id) do nothing;
    if not found then
        -- why: a concurrent placement with the same client_order_id committed first
        return internal.match_retried_order(
            v_instrument.exchange_id, place_order.client_order_id, v_strategy.strategy_id,
            v_instrument.instrument_id, v_side, v_type, place_order.quantity, place_order.price,
            place_order.stop_price);
    end if;
    -- Pre-trade risk limits (monitor.risk_limits): a breach stores the order as rejected, records
    -- a risk event and queues its notification, and returns the id like any placement.
    -- why after the key: a retried placement returns its order above without paying for the check
    -- why the lock first: monitor.set_kill_switch and set_risk_limit take this lock exclusively,
    -- so a change of the strategy's limits waits for the placements in flight to commit, and a
    -- placement that comes meanwhile waits for it and then reads the new limits (the read is a
    -- statement of its own, so its snapshot is taken once the lock is held). Without it, a
    -- placement that read the limits just before a kill switch was turned on committed its order
    -- after the switch had returned, and after the operator's sweep of working orders.
    -- why every placement, limits or none: the most urgent kill switch is the first one, of a
    -- strategy that had no limit row (taken only with limits, the lock let that one through)
    -- why an advisory lock, not a row lock on the limits or the strategy: row lockers that share
    -- do not queue behind a waiting FOR UPDATE, so a busy strategy could hold its kill switch off
    -- for ever; placements share this lock and never wait for one another
    perform pg_advisory_xact_lock_shared('trading.strategies'::regclass::oid::integer, v_strategy.strategy_id);
    select array_agg(r) into v_limits
    from monitor.risk_limits r where r.strategy_id = v_strategy.strategy_id;
    if v_limits is not null then
        v_reason := internal.risk_breach(v_strategy.strategy_id, v_order_id, v_limits, v_instrument, v_side,
                                         place_order.quantity, v_reference);
        if v_reason is not null then
            v_status := 'rejected';
        end if;
    end if;
    insert into trading.orders
        (order_id, created_at, strategy_id, instrument_id, side, order_type, quantity, price,
         stop_price, client_order_id, updated_at, status, status_reason)
    values
        (v_order_id, place_order.placed_at, v_strategy.strategy_id, v_instrument.instrument_id, v_side,
         v_type, place_order.quantity, place_order.price, place_order.stop_price,
         place_order.client_order_id, place_order.placed_at, v_status, v_reason);
    insert into trading.order_events (order_id, occurred_at, from_status, to_status)
    values (v_order_id, place_order.placed_at, null, 'new');
    if v_status = 'rejected' then
        insert into trading.order_events (order_id, occurred_at, from_status, to_status, reason)
        values (v_order_id, place_order.placed_at, 'new', 'rejected', v_reason);
    end if;
    return v_order_id;
end;
$$;
comment on function trading.place_order(text, text, text, text, numeric, numeric, text, text, numeric, timestamptz) is
    'Place an order (status new, or rejected with the reason when it breaks a risk limit): validates side, type, quantity, tick, lot and minimum notional (a notional too large for numeric is 22S09); idempotent on (exchange, client_order_id): a retry writes and locks nothing, so its commit waits for no synchronous standby. A placement checked against risk limits waits for a change of them in progress (monitor.set_risk_limit, set_kill_switch). Returns the order id.';

create or replace function internal.lock_exchange_order_id(p_instrument_id integer, p_exchange_order_id text)
    returns void
    volatile
    language sql
as $$
    -- Wait for, then hold until commit, the turn to give an order of the instrument this exchange
    -- order id: trading.acknowledge_order and trading.record_exchange_fill both take it before
    -- they look whether an order has the id, so that two of them cannot both find it free.
    -- why one function: the two must take the same lock, and a key written out in each could drift
    select pg_advisory_xact_lock('trading.order_keys'::regclass::oid::integer,
                                 hashtext(p_instrument_id || '/' || p_exchange_order_id))
$$;
comment on function internal.lock_exchange_order_id(integer, text) is
    'Takes the transaction''s advisory lock on an exchange order id of an instrument (acknowledge_order, record_exchange_fill).';

create or replace function internal.refuse_taken_exchange_order_id(p_order trading.orders, p_exchange_order_id text)
    returns void
    stable
    language plpgsql
as $$
-- Raise conflicting_duplicate (23S06) for an acknowledgement of order p_order with an exchange
-- order id another order of its instrument has (trading.order_keys' unique key): the order that
-- has it is named when the session may see it, never when it is another user's.
-- why refused: one exchange order is one order; two orders claiming it are an adapter that mixed
-- up two placements (replies matched to the wrong requests), and an engine that finds its order
-- by the exchange's id after a restart could not tell which one a fill or a cancel is for
declare
    v_holder trading.order_keys;
begin
    select k.* into v_holder
    from trading.order_keys k
    where k.instrument_id = p_order.instrument_id and k.exchange_order_id = p_exchange_order_id;
    if not internal.strategy_in_scope(v_holder.strategy_id) then
        raise exception 'exchange order id "%" is already recorded', p_exchange_order_id
            using errcode = '23S06',
                  hint = 'An exchange order id names one order of its instrument; check which order the exchange acknowledged.';
    end if;
    raise exception 'exchange order id "%" is already recorded for order %', p_exchange_order_id, v_holder.order_id
        using errcode = '23S06',
              detail = format('order %s was acknowledged with it; order %s is another order of the same instrument',
                              v_holder.order_id, p_order.order_id),
              hint = 'An exchange order id names one order of its instrument; check which order the exchange acknowledged.';
end;
$$;
comment on function internal.refuse_taken_exchange_order_id(trading.orders, text) is
    'Raises 23S06 conflicting_duplicate for an acknowledgement with an exchange order id another order of the instrument has (named when in the session''s scope).';

create or replace function internal.refuse_unseen_exchange_order_id(p_instrument_id integer, p_exchange_order_id text)
    returns void
    stable
    language plpgsql
as $$
-- Raise serialization_failure (40001) for a key write of an exchange order id that the unique key
-- of trading.order_keys refused although the look before it found no order with the id: the
-- transaction is REPEATABLE READ or SERIALIZABLE, and another one gave the id to an order and
-- committed after this one's snapshot was taken (while this one waited for the id's advisory lock).
-- why 40001, not 23505 nor 23S06: the order holding the id is not in the snapshot, so it can be
-- neither named nor told apart from a race; a retry in a new transaction sees it and answers as
-- READ COMMITTED does (23S06, or for an exchange fill the order it belongs to). The README's
-- promise for these isolation levels is 40001, which such an application retries
begin
    raise exception 'exchange order id "%" of instrument % was recorded by a transaction that committed after this one''s snapshot',
        p_exchange_order_id, p_instrument_id
        using errcode = '40001',
              hint = 'Retry the transaction; at READ COMMITTED (the default) it waits for the other and sees it.';
end;
$$;
comment on function internal.refuse_unseen_exchange_order_id(integer, text) is
    'Raises 40001 serialization_failure for an exchange order id a REPEATABLE READ or SERIALIZABLE transaction found free in its snapshot but another transaction took and committed since.';

create or replace function trading.acknowledge_order(order_id bigint, exchange_order_id text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- The exchange accepted the order: new -> open, and remember its exchange order id. Idempotent.
-- Exchange messages arrive out of order (a fill or a cancel before the acknowledgement), so an
-- order already past new keeps its status and only records the exchange id; a rejected order
-- cannot be acknowledged (55S01). An order keeps the first exchange order id it is given: another
-- one is conflicting_duplicate (23S06) and changes nothing, and so is an id another order of the
-- instrument has (internal.refuse_taken_exchange_order_id).
#variable_conflict use_column
declare
    v_order      trading.orders;
    v_constraint text;
begin
    perform internal.require_permission('orders:write');
    -- why the lock after the check: a declare initializer runs before the body, so a user without
    -- the permission who named an unknown order got 23S04 (and locked the order when it existed)
    -- instead of permission_denied
    v_order := internal.lock_order(acknowledge_order.order_id);
    -- why: an empty id stored here made the exchange's real one a conflict (23S06) ever after
    if acknowledge_order.exchange_order_id = '' or length(acknowledge_order.exchange_order_id) > 128 then
        raise exception 'exchange_order_id must be 1 to 128 characters, got %',
            length(acknowledge_order.exchange_order_id)
            using errcode = '22S09',
                  hint = 'Omit exchange_order_id (null) when the acknowledgement carries none.';
    end if;
    -- why refused: one order is one order on the exchange; a second id is an adapter that mixed
    -- up two orders, and overwriting the first would lose the link reconciliation needs
    if v_order.exchange_order_id <> acknowledge_order.exchange_order_id then
        raise exception 'order % is already acknowledged with exchange order id "%"',
            v_order.order_id, v_order.exchange_order_id
            using errcode = '23S06',
                  detail = format('given: "%s"', acknowledge_order.exchange_order_id),
                  hint = 'An order has one exchange order id; check which order the exchange acknowledged.';
    end if;
    if v_order.status = 'new' then
        perform internal.change_order_status(v_order, 'open');
    elsif v_order.status = 'rejected' then
        raise exception 'order % cannot be acknowledged: it was rejected', v_order.order_id
            using errcode = '55S01';
    end if;
    if acknowledge_order.exchange_order_id is not null and v_order.exchange_order_id is null then
        -- why the key row: it holds the id unique per instrument (a unique index cannot span the
        -- orders partitions)
        -- why a lock on the id, then a look, not a block catching unique_violation: such a block
        -- is a subtransaction, and a reconciliation acknowledging more than 64 orders in one
        -- transaction would overflow its subtransaction cache and slow every snapshot of the
        -- server while it ran. An acknowledgement of another order with the same id at the same
        -- time waits here, then finds it taken (the unique index stays the guarantee)
        perform internal.lock_exchange_order_id(v_order.instrument_id, acknowledge_order.exchange_order_id);
        if exists (select from trading.order_keys k
                   where k.instrument_id = v_order.instrument_id
                     and k.exchange_order_id = acknowledge_order.exchange_order_id) then
            perform internal.refuse_taken_exchange_order_id(v_order, acknowledge_order.exchange_order_id);
        end if;
        -- why a block under REPEATABLE READ and SERIALIZABLE only: their snapshot predates the
        -- turn the lock above gave, so the look misses an id another acknowledgement committed
        -- meanwhile, and the unique index refused it with a bare 23505; READ COMMITTED sees it and
        -- pays for no subtransaction
        if pg_catalog.current_setting('transaction_isolation') in ('read committed', 'read uncommitted') then
            update trading.order_keys k
            set exchange_order_id = acknowledge_order.exchange_order_id
            where k.order_id = v_order.order_id;
        else
            begin
                update trading.order_keys k
                set exchange_order_id = acknowledge_order.exchange_order_id
                where k.order_id = v_order.order_id;
            exception when unique_violation then
                get stacked diagnostics v_constraint = constraint_name;
                if v_constraint is distinct from 'order_keys_exchange_order_id_key' then
                    raise;
                end if;
                perform internal.refuse_unseen_exchange_order_id(v_order.instrument_id,
                                                                 acknowledge_order.exchange_order_id);
            end;
        end if;
        update trading.orders o
        set exchange_order_id = acknowledge_order.exchange_order_id, updated_at = now()
        where o.order_id = v_order.order_id and o.created_at = v_order.created_at;
    end if;
end;
$$;
comment on function trading.acknowledge_order(bigint, text) is
    'The exchange accepted the order: new -> open (later statuses kept), recording the exchange order id; a different id than the one recorded, or one another order of the instrument has, raises 23S06, an empty or overlong one 22S09.';

create or replace function internal.close_order(p_order_id bigint, p_to trading.order_status, p_reason text)
    returns void
    volatile
    language plpgsql
as $$
-- Move an order to cancelled, rejected or expired, recording the reason; a no-op when it already
-- has that status (so a repeated cancel is safe), and when a late fill completed it after it had
-- it (a filled order that was cancelled or expired); illegal_state_transition (55S01) otherwise.
declare
    v_order trading.orders;
begin
    perform internal.require_permission('orders:write');
    -- why the lock after the check: a declare initializer runs before the body, so a user without
    -- the permission who named an unknown order got 23S04 (and locked the order when it existed)
    -- instead of permission_denied
    v_order := internal.lock_order(p_order_id);
    -- why: the cancel or expiry delivered again (an application replaying the exchange's messages
    -- from a checkpoint after a restart) once a late fill completed the order was 55S01, though it
    -- was applied: the replay stopped at a message the order had. Its order event says it was.
    -- why only here: a first cancel of a filled order pays nothing for the look, and stays 55S01
    if v_order.status = 'filled' and p_to in ('cancelled', 'expired')
       and exists (select from trading.order_events e
                   where e.order_id = v_order.order_id and e.to_status = p_to) then
        return;
    end if;
    if v_order.status <> p_to then
        -- why nullif: an empty or blank reason was stored on the order and its event, a reason
        -- that says nothing where none (null) is what was meant
        perform internal.change_order_status(v_order, p_to, nullif(btrim(p_reason, E' \t\n\r'), ''));
    end if;
end;
$$;
comment on function internal.close_order(bigint, trading.order_status, text) is
    'Moves an order to cancelled, rejected or expired (idempotent, also once a late fill completed the cancelled or expired order), with the reason (an empty or blank one is none); raises 55S01 when its status forbids it.';

create or replace function trading.cancel_order(order_id bigint, reason text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language sql
as $$
    -- Cancel a working order (new, open or partially filled); a cancelled order stays as it is,
    -- also once a late fill completed it (filled).
    select internal.close_order(cancel_order.order_id, 'cancelled', cancel_order.reason)
$$;
comment on function trading.cancel_order(bigint, text) is
    'Cancel a working order (idempotent, also once a late fill completed the cancelled order); raises 55S01 for rejected, expired or filled orders (but one filled after its cancel).';

create or replace function trading.reject_order(order_id bigint, reason text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language sql
as $$
    -- The exchange refused the order: new -> rejected. Only a new order can be rejected.
    -- why reason defaults to null, as for cancel_order and expire_order: without a default,
    -- trading.reject_order(order_id => 42) in psql was 42883 "function does not exist", though
    -- a null reason was accepted when written out
    select internal.close_order(reject_order.order_id, 'rejected', reject_order.reason)
$$;
comment on function trading.reject_order(bigint, text) is
    'The exchange refused a new order: new -> rejected (idempotent); raises 55S01 otherwise.';

create or replace function trading.expire_order(order_id bigint, reason text default null)
    returns void
    volatile
    security definer
    set search_path = ''
    language sql
as $$
    -- The order's time in force ran out: working -> expired. Late fills are still recorded.
    select internal.close_order(expire_order.order_id, 'expired', expire_order.reason)
$$;
comment on function trading.expire_order(bigint, text) is
    'A working order expired (idempotent, also once a late fill completed the expired order); raises 55S01 for rejected, cancelled or filled orders (but one filled after its expiry).';
