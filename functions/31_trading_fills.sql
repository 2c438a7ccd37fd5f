-- spreadedge functions: fills
-- trading.record_fill: one fill recorded as a trade, applied to its order, its position and the
-- hourly and daily PnL rollups, all in the caller's transaction. Locks are taken in one order (order row, then
-- instrument row (key share), then position row, then trade key, then rollup rows) so concurrent
-- fills never deadlock one another, nor with a change of the instrument's multiplier (which locks
-- the instrument row, then its positions).

create or replace function internal.fee_value(p_fee numeric, p_fee_currency text, p_rate numeric, p_quote_asset text)
    returns numeric
    immutable
    language plpgsql
as $$
-- The value in p_quote_asset of a fee of p_fee p_fee_currency at p_rate (the fill price for a fee
-- in the base asset, else the fee currency's market price): p_fee x p_rate, when below 10^100000
-- in magnitude as every stored fee and fee_quote is (internal.check_amount_size); otherwise
-- invalid_argument (22S09) naming the fee and the rate.
-- why: the fee and the rate are each within numeric, but their product was not checked: a fee of
-- 1e99999 BNB at a BNB price of 1e40000 failed with a bare numeric overflow (22003), and one of
-- 1e70000 was stored as a fee_quote of 1e110000, past the bound that keeps the position's
-- fees_paid and the rollups' sums within numeric
-- why the first test: factors below 10^50000 give a product below 10^100000, so a real fee never
-- pays for the block that catches the overflow
declare
    v_value numeric;
begin
    if abs(p_fee) < 1e50000 and abs(p_rate) < 1e50000 then
        return p_fee * p_rate;
    end if;
    begin
        v_value := p_fee * p_rate;
    exception when numeric_value_out_of_range then
        v_value := null;
    end;
    if v_value is null or abs(v_value) >= 1e100000 then
        raise exception 'fee value in % (fee % % x price %) must be below 10^100000 in magnitude',
            p_quote_asset, btrim(to_char(p_fee, '9.999EEEE')), p_fee_currency, btrim(to_char(p_rate, '9.999EEEE'))
            using errcode = '22S09',
                  hint = 'Check the fee and the price it is valued at: fees are sums of money in their currency.';
    end if;
    return v_value;
end;
$$;
comment on function internal.fee_value(numeric, text, numeric, text) is
    'A fee''s value in the quote asset at a rate (fee x rate) when below 10^100000 in magnitude, else raises 22S09 invalid_argument naming the fee and the rate.';

-- why the drop: fee_in_quote gained the fill's strategy (whose owner's marks value a fee)
drop function if exists internal.fee_in_quote(ref.instruments, numeric, text, numeric, numeric);

create or replace function internal.fee_in_quote(
    p_instrument  ref.instruments,
    p_fee         numeric,
    p_fee_currency text,
    p_price       numeric,
    p_fee_quote   numeric,
    p_strategy_id integer,
    out fee_quote numeric,
    out base_fee  numeric
)
    stable
    language plpgsql
as $$
-- Value of a fee in the instrument's quote asset, and the part of it that reduces the base
-- quantity received or delivered. A base-asset fee on a spot or margin instrument is that quantity
-- and counts at fee x price (any p_fee_quote is ignored). On a perpetual or futures contract, whose
-- price is the base asset's, it counts at p_fee_quote when given, else at fee x price. On an option,
-- whose price is a premium and not the base asset's price, it is valued like a fee in a third
-- currency: at p_fee_quote when given, else from market data as the owner of strategy
-- p_strategy_id sees it (internal.asset_price_as), else refused (22S08).
declare
    v_rate numeric;
begin
    base_fee := 0;
    if p_fee = 0 then
        fee_quote := 0;
    elsif p_fee_currency = p_instrument.quote_asset then
        fee_quote := p_fee;
    elsif p_fee_currency = p_instrument.base_asset and p_instrument.market_type in ('spot', 'margin') then
        fee_quote := internal.fee_value(p_fee, p_fee_currency, p_price, p_instrument.quote_asset);
        base_fee := p_fee;
    elsif p_fee_currency = p_instrument.base_asset and p_instrument.market_type in ('perpetual', 'futures')
          and p_fee_quote is null then
        fee_quote := internal.fee_value(p_fee, p_fee_currency, p_price, p_instrument.quote_asset);
    elsif p_fee_quote is not null then
        fee_quote := internal.check_amount_size(p_fee_quote, 'fee_quote');
        -- why: a fee valued as a rebate (or a rebate as a fee) would count the wrong way in PnL;
        -- a fee_quote of 0 is a tiny fee rounded to the quote asset's precision
        if sign(fee_quote) * sign(p_fee) < 0 then
            raise exception 'fee_quote % and the fee % % differ in sign', fee_quote, p_fee, p_fee_currency
                using errcode = '22S09',
                      hint = 'fee_quote is the fee''s value in the quote asset: positive for a fee, negative for a rebate.';
        end if;
    else
        -- why the owner's marks: the engine records fills unscoped, where an asset without market
        -- data is priced at any strategy's latest fill, and the fee's value is stored in the
        -- trade: its owner read another trader's private fill price as fee_quote / fee
        v_rate := internal.asset_price_as(
            p_instrument.exchange_id, p_fee_currency, p_instrument.quote_asset, true,
            (select s.owner_user_id from trading.strategies s where s.strategy_id = p_strategy_id));
        if v_rate is null then
            raise exception 'fee of % % cannot be valued in %: no market price for %/%',
                p_fee, p_fee_currency, p_instrument.quote_asset, p_fee_currency, p_instrument.quote_asset
                using errcode = '22S08',
                      hint = format('Pass fee_quote => the fee''s value in %s.', p_instrument.quote_asset);
        end if;
        fee_quote := internal.fee_value(p_fee, p_fee_currency, v_rate, p_instrument.quote_asset);
    end if;
end;
$$;
comment on function internal.fee_in_quote(ref.instruments, numeric, text, numeric, numeric, integer) is
    'Quote value of a fee of a strategy''s fill (quote, base or third currency, a third currency at the market price its owner sees; an option''s base-asset fee as a third currency''s) and the base quantity it takes (spot and margin); raises 22S08 unpriced_fee, and 22S09 for a value of 10^100000 or more.';

create or replace function internal.same_fill(
    p_trade        trading.trades,
    p_order_id     bigint,
    p_quantity     numeric,
    p_price        numeric,
    p_fee          numeric,
    p_fee_currency text
)
    returns boolean
    immutable
    language sql
as $$
    -- Whether a fill delivered again (order, quantity, price, fee and its currency, the quote
    -- asset when none was given) is the stored trade p_trade: a zero fee is zero in any currency,
    -- and executed_at is not compared (it defaults to the time of the call). A redelivery with fee
    -- 0 is a source that gives no fee: it is the stored fill whatever fee that has. Null when
    -- p_trade is null (a key row whose trade is gone).
    -- why fee 0 matches any fee: exchanges report a fill with and without its fee (Coinbase's
    -- websocket match carries none, its REST /fills does), in either order, and an application
    -- that restarts replays the exchange's messages from a checkpoint: the fill without its fee
    -- after REST recorded it with one, or after trading.record_fill_fee set it, was refused
    -- (23S06) and the replay stopped at a message already applied. A redelivery with another fee
    -- than the stored one, 0 included for a fee the fill does not have, still disagrees
    select p_trade.order_id = p_order_id and p_trade.quantity = p_quantity and p_trade.price = p_price
           and (p_fee = 0 or (p_trade.fee = p_fee and p_trade.fee_currency = p_fee_currency))
$$;
comment on function internal.same_fill(trading.trades, bigint, numeric, numeric, numeric, text) is
    'Whether a redelivered fill (order, quantity, price, fee and currency) is the stored trade; a redelivery with fee 0 (a source that gives none) matches whatever fee the stored fill has.';

create or replace function internal.refuse_conflicting_fill(
    p_trade             trading.trades,
    p_exchange_trade_id text,
    p_order_id          bigint,
    p_quantity          numeric,
    p_price             numeric,
    p_fee               numeric,
    p_fee_currency      text
)
    returns void
    stable
    language plpgsql
as $$
-- Raise conflicting_duplicate (23S06) for a fill delivered again with other values than its stored
-- trade p_trade (internal.same_fill said no), both versions in the detail: the stored one stands.
begin
    raise exception 'exchange trade id "%" is already recorded as trade % with different values',
        p_exchange_trade_id, p_trade.trade_id
        using errcode = '23S06',
              detail = format('stored: order %s, %s @ %s, fee %s %s; retried: order %s, %s @ %s, fee %s %s',
                              p_trade.order_id, p_trade.quantity, p_trade.price, p_trade.fee, p_trade.fee_currency,
                              p_order_id, p_quantity, p_price, p_fee, p_fee_currency),
              hint = 'Trades are immutable: the fill stands as first recorded. Compare the two sources.';
end;
$$;
comment on function internal.refuse_conflicting_fill(trading.trades, text, bigint, numeric, numeric, numeric, text) is
    'Raises 23S06 conflicting_duplicate for a redelivered fill whose values differ from its stored trade, both versions in the detail.';

create or replace function internal.removed_order_fill(
    p_order_id          bigint,
    p_exchange_trade_id text,
    p_quantity          numeric,
    p_price             numeric,
    p_fee               numeric,
    p_fee_currency      text
)
    returns bigint
    stable
    language plpgsql
as $$
-- A fill of order p_order_id (p_fee_currency upper case, null for the quote asset), which orders cleanup removed (its key stays while trades refer to
-- it; trading.record_fill comes here when internal.lock_order finds the key without the row):
-- the trade's id when the fill is one of the order's trades delivered again, 23S06 when it is one
-- of them with other values, and 23S04 otherwise (a removed order has no new fills: cleanup
-- removes only orders filled, cancelled, rejected or expired long ago).
-- why: a fill redelivered after cleanup (an engine replaying an exchange's trade history) raised
-- 23S04 "does not exist", where the README promises the stored trade
declare
    v_quote        text;
    v_fee_currency text;
    v_trade        trading.trades;
begin
    select i.quote_asset into v_quote
    from trading.order_keys k
    join ref.instruments i on i.instrument_id = k.instrument_id
    where k.order_id = p_order_id;
    select t.* into v_trade
    from trading.order_keys k
    join trading.trade_keys tk on tk.instrument_id = k.instrument_id and tk.exchange_trade_id = p_exchange_trade_id
    join trading.trades t on t.trade_id = tk.trade_id and t.executed_at = tk.executed_at
    where k.order_id = p_order_id and t.order_id = p_order_id;
    if not found then
        raise exception 'order % was removed by orders cleanup and has no trade with exchange trade id "%"',
            p_order_id, p_exchange_trade_id
            using errcode = '23S04',
                  hint = 'Only a fill the order already has can be delivered again after cleanup; check the order id and the exchange trade id.';
    end if;
    v_fee_currency := coalesce(p_fee_currency, v_quote);
    if internal.same_fill(v_trade, p_order_id, p_quantity, p_price, p_fee, v_fee_currency) then
        return v_trade.trade_id;
    end if;
    perform internal.refuse_conflicting_fill(v_trade, p_exchange_trade_id, p_order_id, p_quantity, p_price, p_fee,
                                             v_fee_currency);
    return null;  -- not reached: the call above raises
end;
$$;
comment on function internal.removed_order_fill(bigint, text, numeric, numeric, numeric, text) is
    'A fill of an order removed by cleanup: its trade id when it is one of the order''s trades delivered again; 23S06 with other values, else 23S04.';

create or replace function trading.record_fill(
    order_id          bigint,
    exchange_trade_id text,
    quantity          numeric,
    price             numeric,
    fee               numeric default 0,
    fee_currency      text default null,
    executed_at       timestamptz default now(),
    fee_quote         numeric default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    -- why generic plans: a custom plan of the orders update (orders is partitioned) costs more to
    -- make than the update costs to run, and PL/pgSQL made one on every call because a generic plan
    -- of a partitioned table looks dearer to it; the generic plan prunes to the order's partition
    -- when it starts
    set plan_cache_mode = force_generic_plan
    language plpgsql
as $$
-- Record a fill of an order and return its trade id. A fill already recorded (same instrument, side
-- and exchange_trade_id) returns the existing trade id and writes nothing, also when orders cleanup
-- has removed its order since (internal.removed_order_fill); the same id with a different order,
-- quantity, price or fee raises conflicting_duplicate (executed_at is not compared). Fills
-- after a cancel or expiry are recorded (is_late); one that completes the order makes it filled
-- and clears the cancel's or expiry's status_reason.
-- fee_currency defaults to the quote asset; fee_quote values a third-currency fee, or a base-asset
-- fee on a perpetual, futures or option instrument. fee and fee_quote are finite and below 10^100000
-- in magnitude, and so is the fee's value in the quote asset (internal.fee_value); fee_currency is
-- an alphanumeric code of at most 32 characters (22S09).
#variable_conflict use_column
declare
    v_order      trading.orders := internal.lock_order(record_fill.order_id, true);
    v_instrument ref.instruments;
    v_fee_quote  numeric;
    v_base_fee   numeric;
    v_trade_id   bigint;
    v_existing   trading.trades;
    v_position   trading.positions;
    v_locked     record;
    v_step       record;
    v_delta      numeric;
    v_filled     numeric;
    v_status     trading.order_status;
    -- why "C": an asset code is ASCII; a Turkish collation's upper('link') is 'LİNK', a third currency
    v_fee_ccy    text := upper(record_fill.fee_currency collate "C");
    v_checked    numeric;
    v_time       timestamptz;
begin
    -- why the test: the trading engine's sessions are unscoped and pass, and a PERFORM is a query
    if internal.session_user_id() is not null then
        perform internal.require_permission('orders:write');
    end if;
    -- why the length: the id is an index key, and a btree entry over about 2.7 kB fails with an
    -- internal error (54000)
    if record_fill.exchange_trade_id is null or record_fill.exchange_trade_id = ''
       or length(record_fill.exchange_trade_id) > 128 then
        raise exception 'exchange_trade_id must be 1 to 128 characters, got %',
            coalesce(length(record_fill.exchange_trade_id)::text, 'null') using errcode = '22S09';
    end if;
    -- why assignments, not PERFORM: an assignment calls a check as a simple expression, where
    -- PERFORM runs a query through the executor
    -- why one test first: it passes exactly the values the four checks pass, and costs less than
    -- calling them; they run only to raise the right error
    if (record_fill.quantity > 0 and record_fill.quantity < 'Infinity'
        and record_fill.price > 0 and record_fill.price < 'Infinity'
        and record_fill.fee > -1e100000 and record_fill.fee < 1e100000
        and record_fill.executed_at >= timestamptz '2009-01-03 00:00:00+00'
        -- why 24 hours, as internal.check_time: '1 day' is 25 hours in a session on the eve of a
        -- fall-back, and a fill 24.5 hours ahead passed this test there unchecked
        and record_fill.executed_at <= now() + interval '24 hours') is not true then
        v_checked := internal.check_positive(record_fill.quantity, 'fill quantity', '22S01');
        v_checked := internal.check_positive(record_fill.price, 'fill price', '22S02');
        v_checked := internal.check_amount_size(record_fill.fee, 'fee');
        v_time := internal.check_time(record_fill.executed_at, 'executed_at');
    end if;
    -- why at most 32 characters, as ref.upsert_instrument's asset codes: a fee currency of any
    -- length was stored in the (immutable) trade, 100,000 characters of it, and shown in every
    -- history page and summary of the trade
    if v_fee_ccy is not null and v_fee_ccy !~ '^[A-Z0-9]{1,32}$' then
        raise exception 'fee currency must be an alphanumeric asset code of at most 32 characters, got "%"',
            left(record_fill.fee_currency, 80)
            using errcode = '22S09';
    end if;
    -- The instrument FOR KEY SHARE and the position FOR UPDATE, in that order, in one statement
    -- (a statement less on every fill but a position's first).
    -- why FOR KEY SHARE: the fill's PnL and the position's copy of the multiplier must be the
    -- instrument's when the fill commits. A concurrent change of the multiplier (a key of the
    -- positions' foreign key) waits for this lock, or this read waits for it and sees the new
    -- value; read unlocked, a first fill failed that foreign key (23503) and a closing fill
    -- realized its PnL at the old multiplier. The trades' foreign key to ref.instruments took
    -- the same lock on every fill before migration 0014. Taking the multiplier from the locked
    -- position instead, and locking the instrument for a position's first fill only, was no
    -- faster (fill_only.sql, 8 clients, 2,389 against 2,435 fills/s) and would let a fill that
    -- inserts a rollup row deadlock with a change of the multiplier.
    -- why the position is locked before the trade id is drawn: fills of one position then get
    -- increasing trade ids in the order they are applied, so folding a position's trades by
    -- trade_id reproduces it exactly
    select i as instrument, p as position into v_locked
    from ref.instruments i
    join trading.positions p on p.strategy_id = v_order.strategy_id and p.instrument_id = i.instrument_id
    where i.instrument_id = v_order.instrument_id
    for key share of i for update of p;
    if found then
        v_instrument := v_locked.instrument;
        v_position := v_locked.position;
    else
        -- an order removed by orders cleanup (internal.lock_order, a row of nulls): only one of
        -- its trades again. why here: its null instrument finds nothing above, and the test then
        -- costs only a position's first fill, not every fill
        if v_order.order_id is null then
            return internal.removed_order_fill(record_fill.order_id, record_fill.exchange_trade_id,
                                               record_fill.quantity, record_fill.price, record_fill.fee, v_fee_ccy);
        end if;
        select i.* into v_instrument from ref.instruments i where i.instrument_id = v_order.instrument_id
        for key share;
        insert into trading.positions (strategy_id, instrument_id, multiplier, quote_asset)
        values (v_order.strategy_id, v_order.instrument_id, v_instrument.multiplier, v_instrument.quote_asset)
        on conflict do nothing;
        select p.* into v_position
        from trading.positions p
        where p.strategy_id = v_order.strategy_id and p.instrument_id = v_order.instrument_id
        for update;
    end if;

    v_trade_id := nextval('trading.trade_id_seq');
    -- why per instrument: exchanges number trades per symbol, so one exchange's fills of two
    -- instruments may share an id (trading.trade_keys)
    -- why per side: both sides of a trade carry its id, and two of the system's strategies may be
    -- its two sides (a buy of one sub-account matched with a sell of another)
    insert into trading.trade_keys (instrument_id, exchange_trade_id, side, trade_id, executed_at)
    values (v_instrument.instrument_id, record_fill.exchange_trade_id, v_order.side, v_trade_id,
            record_fill.executed_at)
    on conflict (instrument_id, exchange_trade_id, side) do nothing;
    if not found then
        select t.* into v_existing
        from trading.trade_keys tk
        join trading.trades t on t.trade_id = tk.trade_id and t.executed_at = tk.executed_at
        where tk.instrument_id = v_instrument.instrument_id and tk.exchange_trade_id = record_fill.exchange_trade_id
          and tk.side = v_order.side;
        -- why the fee too: a redelivery that disagrees on the fee is not the same fact, and keeping
        -- the first silently would hide a PnL difference (a zero fee is zero in any currency);
        -- executed_at is not compared, since it defaults to the time of the call
        if internal.same_fill(v_existing, v_order.order_id, record_fill.quantity, record_fill.price, record_fill.fee,
                              coalesce(v_fee_ccy, v_instrument.quote_asset)) then
            return v_existing.trade_id;
        end if;
        -- why no trade id and no detail: another user's trade must not be told apart from, or
        -- described to, this session. why only here: a redelivery that matches is of this order,
        -- which internal.lock_order found in scope, so neither it nor a first delivery pays for it
        if not internal.strategy_in_scope(v_existing.strategy_id) then
            raise exception 'exchange trade id "%" is already recorded', record_fill.exchange_trade_id
                using errcode = '23S06',
                      hint = 'An exchange trade id names one fill of its instrument per side; check the id the fill came with.';
        end if;
        perform internal.refuse_conflicting_fill(v_existing, record_fill.exchange_trade_id, v_order.order_id,
                                                 record_fill.quantity, record_fill.price, record_fill.fee,
                                                 coalesce(v_fee_ccy, v_instrument.quote_asset));
    end if;

    if v_order.status = 'rejected' then
        raise exception 'order % was rejected and cannot be filled', v_order.order_id using errcode = '55S01';
    end if;
    v_filled := v_order.filled_quantity + record_fill.quantity;
    if v_filled > v_order.quantity then
        raise exception 'fill of % would overfill order %: % of % already filled',
            record_fill.quantity, v_order.order_id, v_order.filled_quantity, v_order.quantity
            using errcode = '23S05';
    end if;

    -- why the quote-asset case here: most fees are in the quote asset, and there the call of
    -- internal.fee_in_quote would return the fee itself
    if v_fee_ccy is null or v_fee_ccy = v_instrument.quote_asset then
        v_fee_quote := record_fill.fee;
        v_base_fee := 0;
    else
        select f.fee_quote, f.base_fee into v_fee_quote, v_base_fee
        from internal.fee_in_quote(v_instrument, record_fill.fee, v_fee_ccy, record_fill.price,
                                   record_fill.fee_quote, v_order.strategy_id) f;
    end if;
    -- why abs: a base-asset rebate as large as the fill would make a sell add to the position (or
    -- a fill move nothing), as a fee as large as it would a buy
    if abs(v_base_fee) >= record_fill.quantity then
        raise exception 'base-asset fee % is not smaller in size than the fill quantity %', record_fill.fee, record_fill.quantity
            using errcode = '22S09';
    end if;
    v_delta := case v_order.side when 'buy' then record_fill.quantity else -record_fill.quantity end - v_base_fee;

    v_step := trading.position_after_fill(v_position.quantity, v_position.avg_entry_price, v_delta,
                                          record_fill.price, v_instrument.multiplier);

    insert into trading.trades
        (trade_id, executed_at, order_id, strategy_id, instrument_id, side, quantity, price, fee,
         fee_currency, fee_quote, position_delta, realized_pnl_gross, exchange_trade_id, is_late, multiplier,
         closed_quantity)
    values
        (v_trade_id, record_fill.executed_at, v_order.order_id, v_order.strategy_id, v_order.instrument_id,
         v_order.side, record_fill.quantity, record_fill.price, record_fill.fee,
         coalesce(v_fee_ccy, v_instrument.quote_asset), v_fee_quote, v_delta, v_step.realized_pnl_gross,
         record_fill.exchange_trade_id, v_order.status in ('cancelled', 'expired'), v_instrument.multiplier,
         -- the part of the position the fill reduced (a flip closes all of it); sign(0) is 0
         case when sign(v_delta) = -sign(v_position.quantity)
              then least(abs(v_delta), abs(v_position.quantity)) else 0 end);

    update trading.positions p
    set quantity = v_step.quantity,
        avg_entry_price = v_step.avg_entry_price,
        realized_pnl_gross = p.realized_pnl_gross + v_step.realized_pnl_gross,
        fees_paid = p.fees_paid + v_fee_quote,
        trade_count = p.trade_count + 1,
        opened_at = case
            when v_step.quantity = 0 then null
            when p.quantity = 0 or sign(p.quantity) <> sign(v_step.quantity) then record_fill.executed_at
            else p.opened_at
        end,
        updated_at = now()
    where p.strategy_id = v_order.strategy_id and p.instrument_id = v_order.instrument_id;

    v_status := case
        when v_filled = v_order.quantity then 'filled'
        when v_order.status in ('cancelled', 'expired') then v_order.status
        else 'partially_filled'
    end;
    -- why not change_order_status: one update of the order row per fill; the status computed here
    -- is always a legal transition (rejected and overfilled orders were refused above)
    update trading.orders o
    set filled_quantity = v_filled,
        avg_fill_price = round((coalesce(o.avg_fill_price, 0) * o.filled_quantity
                                + record_fill.price * record_fill.quantity) * 1.000000000000000000000000 / v_filled, 18),
        status = v_status,
        -- why cleared on a change: the reason says why the order was cancelled, rejected or
        -- expired; a late fill completing a cancelled or expired order kept it, and the filled
        -- order read "filled: spread closed". The order event of the cancel keeps it.
        status_reason = case when v_status = v_order.status then o.status_reason end,
        updated_at = now()
    where o.order_id = v_order.order_id and o.created_at = v_order.created_at;
    if v_status <> v_order.status then
        insert into trading.order_events (order_id, from_status, to_status, trade_id)
        values (v_order.order_id, v_order.status, v_status, v_trade_id);
    end if;

    perform internal.add_to_rollups(v_order.strategy_id, v_order.instrument_id, record_fill.executed_at, 1,
                                    record_fill.quantity,
                                    record_fill.quantity * record_fill.price * v_instrument.multiplier,
                                    v_fee_quote, v_step.realized_pnl_gross, 0, v_instrument.quote_asset);
    return v_trade_id;
end;
$$;
comment on function trading.record_fill(bigint, text, numeric, numeric, numeric, text, timestamptz, numeric) is
    'Record a fill: the trade, its order''s filled quantity and status, the position (average cost) and the hourly and daily PnL rollups. Idempotent on (instrument, exchange_trade_id, side), also once orders cleanup removed the order (any other fill of such an order is 23S04): a redelivery with another order, quantity, price or fee is 23S06. Returns the trade id.';
