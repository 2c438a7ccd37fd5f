-- spreadedge functions: spread trades
-- trading.open_spread_trade places both leg orders of a cross-exchange arbitrage in one
-- transaction (internal.match_retried_spread answers a retried client_spread_id);
-- trading.spread_trade_pnl reports each spread trade from its legs' fills, and
-- trading.spread_trade_summary sums them per strategy.

create or replace function internal.match_retried_spread(
    p_client_spread_id text,
    p_strategy         trading.strategies,
    p_base_asset       text,
    p_quote_asset      text,
    p_market_type      text,
    p_buy_exchange     text,
    p_sell_exchange    text,
    p_quantity         numeric,
    p_buy_price        numeric,
    p_sell_price       numeric
)
    returns bigint
    stable
    language plpgsql
as $$
-- For an open retried with a client_spread_id already used: the stored spread trade's id when the
-- retry asks for the same spread trade (strategy, pair and market type, exchanges, quantity and
-- prices; opened_at may differ), conflicting_duplicate (23S06) when it differs, null when the id
-- is new. A spread trade of a strategy outside the session's scope is never returned nor
-- described: its id raises 23S06 without details.
declare
    v_stored record;
begin
    select s.spread_trade_id, s.strategy_id, st.name as strategy_name, s.quantity, bi.base_asset,
           bi.quote_asset, bi.market_type::text as market_type, be.code as buy_exchange,
           se.code as sell_exchange, b.price as buy_price, o.price as sell_price
    into v_stored
    from trading.spread_trades s
    join trading.strategies st on st.strategy_id = s.strategy_id
    join trading.order_keys bk on bk.order_id = s.buy_order_id
    join trading.orders b on b.order_id = bk.order_id and b.created_at = bk.created_at
    join trading.order_keys ok on ok.order_id = s.sell_order_id
    join trading.orders o on o.order_id = ok.order_id and o.created_at = ok.created_at
    join ref.instruments bi on bi.instrument_id = b.instrument_id
    join ref.exchanges be on be.exchange_id = bi.exchange_id
    join ref.instruments si on si.instrument_id = o.instrument_id
    join ref.exchanges se on se.exchange_id = si.exchange_id
    where s.client_spread_id = p_client_spread_id;
    if not found then
        return null;
    end if;
    -- why no id and no detail: another user's spread trade must not be told apart from, or
    -- described to, this session; the id stays taken (it is unique across strategies)
    if not internal.strategy_in_scope(v_stored.strategy_id) then
        raise exception 'client spread id "%" is already used', p_client_spread_id
            using errcode = '23S06',
                  hint = 'A client spread id names one spread trade; use a new id for a new spread trade.';
    end if;
    if (v_stored.strategy_id, v_stored.base_asset, v_stored.quote_asset, v_stored.market_type,
        v_stored.buy_exchange, v_stored.sell_exchange, v_stored.quantity)
       is distinct from (p_strategy.strategy_id, p_base_asset, p_quote_asset, p_market_type,
                         p_buy_exchange, p_sell_exchange, p_quantity)
       or v_stored.buy_price is distinct from p_buy_price or v_stored.sell_price is distinct from p_sell_price then
        raise exception 'client spread id "%" is already used by spread trade % with different values',
            p_client_spread_id, v_stored.spread_trade_id
            using errcode = '23S06',
                  detail = format('stored: %s buys %s %s/%s %s on %s @ %s, sells on %s @ %s; '
                                  'retried: %s buys %s %s/%s %s on %s @ %s, sells on %s @ %s',
                                  v_stored.strategy_name, v_stored.quantity, v_stored.base_asset,
                                  v_stored.quote_asset, v_stored.market_type, v_stored.buy_exchange,
                                  coalesce(v_stored.buy_price::text, 'market'), v_stored.sell_exchange,
                                  coalesce(v_stored.sell_price::text, 'market'),
                                  p_strategy.name, p_quantity, p_base_asset, p_quote_asset, p_market_type,
                                  p_buy_exchange, coalesce(p_buy_price::text, 'market'), p_sell_exchange,
                                  coalesce(p_sell_price::text, 'market')),
                  hint = 'A client spread id names one spread trade; use a new id for a new spread trade.';
    end if;
    return v_stored.spread_trade_id;
end;
$$;
comment on function internal.match_retried_spread(text, trading.strategies, text, text, text, text, text, numeric, numeric, numeric) is
    'Id of the spread trade a retried open refers to (null if new); raises 23S06 when the retry differs or the id is another user''s.';

create or replace function internal.refuse_taken_leg_id(
    p_exchange_id     smallint,
    p_client_order_id text,
    p_side            text
)
    returns void
    stable
    language plpgsql
as $$
-- For trading.open_spread_trade: raises conflicting_duplicate (23S06) when an order holds
-- p_client_order_id, the client order id of its p_side leg, on the exchange; returns otherwise.
-- An order of a strategy outside the session's scope is not named.
declare
    v_taken trading.order_keys;
begin
    select k.* into v_taken
    from trading.order_keys k
    where k.exchange_id = p_exchange_id and k.client_order_id = p_client_order_id;
    if not found then
        return;
    end if;
    -- why no order id for another user's: as internal.match_retried_order, their order must not
    -- be told apart from, or described to, this session
    if not internal.strategy_in_scope(v_taken.strategy_id) then
        raise exception 'client order id "%" is already used', v_taken.client_order_id
            using errcode = '23S06',
                  hint = 'A client order id names one order; use a new id for a new order.';
    end if;
    raise exception 'client order id "%" of the % leg is already used by order %',
        v_taken.client_order_id, p_side, v_taken.order_id
        using errcode = '23S06',
              hint = 'A spread trade places its legs as new orders under client_spread_id-buy and -sell; use a new client_spread_id.';
end;
$$;
comment on function internal.refuse_taken_leg_id(smallint, text, text) is
    'Raises 23S06 when an order holds the client order id of a spread trade''s leg (without its id when the order is another user''s).';

create or replace function internal.last_order_id_drawn()
    returns bigint
    volatile
    language plpgsql
as $$
-- The order id this session drew last from trading.order_id_seq (currval), null when it drew none.
begin
    return currval('trading.order_id_seq');
exception when object_not_in_prerequisite_state then
    -- why null: currval raises 55000 in a session that never called nextval on the sequence
    return null;
end;
$$;
comment on function internal.last_order_id_drawn() is
    'The order id this session last drew from trading.order_id_seq, null when it drew none (a new order placed by trading.place_order has it).';

create or replace function trading.open_spread_trade(
    strategy         text,
    symbol           text,
    buy_exchange     text,
    sell_exchange    text,
    quantity         numeric,
    buy_price        numeric default null,
    sell_price       numeric default null,
    market_type      text default 'spot',
    client_spread_id text default null,
    opened_at        timestamptz default now()
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Place the buy leg on buy_exchange and the sell leg on sell_exchange of the pair symbol
-- (BASE/QUOTE) and market type, each through trading.place_order (so each is validated as any
-- order), and record them as one spread trade; returns its id. Prices null = market orders. Spot,
-- margin and perpetual markets only (22S09 otherwise: see the check below). Both
-- legs are the same quantity of contracts, so their instruments must have one contract multiplier
-- (22S20 otherwise). Invalid input raises and writes nothing. A leg that breaks a pre-trade risk
-- limit is stored rejected by place_order (with its risk event), and then the other leg is
-- rejected too, naming the spread trade and that reason: the spread trade is stored and returned
-- with both legs rejected, never one-legged. Idempotent on client_spread_id: a retry, also a
-- concurrent one, returns the same spread trade; one with different values raises 23S06, and so
-- does a new one whose leg's client order id (client_spread_id-buy or -sell) an order has taken
-- (also one committed while this open waited for it).
#variable_conflict use_column
declare
    v_pair     record;
    v_strategy trading.strategies;
    v_id          bigint;
    v_side        text;
    v_exchange    text;
    v_symbol      text;
    v_multiplier  numeric;
    v_symbols     text[] := array[]::text[];
    v_multipliers numeric[] := array[]::numeric[];
    v_orders      bigint[] := array[]::bigint[];
    v_buy         trading.orders;
    v_sell        trading.orders;
begin
    -- why here as well as in place_order: a retry returns the stored spread trade before any leg
    -- is placed, so without it a user who may not place orders got one's id back
    perform internal.require_permission('orders:write');
    -- why the lookups after the check: a declare initializer runs before the body, so a user
    -- without the permission who named an unknown (or unseen) pair or strategy got its lookup's error,
    -- an answer that depends on data the caller may not see, instead of permission_denied
    v_pair := internal.find_pair(open_spread_trade.symbol);
    v_strategy := internal.find_strategy(open_spread_trade.strategy);
    -- why here, though place_order checks each leg's time: it names its own placed_at, a parameter
    -- the caller of this function never gave
    perform internal.check_time(open_spread_trade.opened_at, 'opened_at');
    if open_spread_trade.buy_exchange = open_spread_trade.sell_exchange then
        raise exception 'buy and sell legs are both on %', open_spread_trade.buy_exchange
            using errcode = '22S20', hint = 'A spread trade buys on one exchange and sells on another.';
    end if;
    -- why only these (as market.current_spreads): ref.instruments keeps no strike and no expiry, so
    -- an option or a dated future of the pair on each exchange need not be the same contract (a 100
    -- call against a 150 call, December against March) and would not hedge each other
    if open_spread_trade.market_type is null
       or open_spread_trade.market_type not in ('spot', 'margin', 'perpetual') then
        raise exception 'market_type must be spot, margin or perpetual, got "%"',
            coalesce(open_spread_trade.market_type, 'null')
            using errcode = '22S09',
                  hint = 'Spread trades pair instruments by asset pair alone; place option or futures legs with trading.place_order.';
    end if;
    if open_spread_trade.client_spread_id is not null then
        -- why 123: the legs' client order ids add "-buy" and "-sell" and may be 128 characters
        if open_spread_trade.client_spread_id = '' or length(open_spread_trade.client_spread_id) > 123 then
            raise exception 'client_spread_id must be 1 to 123 characters, got %',
                length(open_spread_trade.client_spread_id)
                using errcode = '22S09',
                      hint = 'Omit client_spread_id (null) for a spread trade without one.';
        end if;
        -- why the lock: a concurrent open with this id waits here until the first commits, then
        -- finds its spread trade below (each statement reads what committed before it started);
        -- two ids of one hash merely take turns
        perform pg_advisory_xact_lock('trading.spread_trades'::regclass::oid::integer,
                                      hashtext(open_spread_trade.client_spread_id));
        v_id := internal.match_retried_spread(
            open_spread_trade.client_spread_id, v_strategy, v_pair.base_asset, v_pair.quote_asset,
            open_spread_trade.market_type, open_spread_trade.buy_exchange, open_spread_trade.sell_exchange,
            open_spread_trade.quantity, open_spread_trade.buy_price, open_spread_trade.sell_price);
        if v_id is not null then
            return v_id;
        end if;
    end if;
    foreach v_side in array array['buy', 'sell'] loop
        v_exchange := case v_side when 'buy' then open_spread_trade.buy_exchange else open_spread_trade.sell_exchange end;
        select i.symbol, i.multiplier into v_symbol, v_multiplier
        from ref.instruments i
        where i.exchange_id = internal.exchange_id(v_exchange)
          and i.base_asset = v_pair.base_asset and i.quote_asset = v_pair.quote_asset
          and i.market_type::text = open_spread_trade.market_type
        order by i.is_active desc, i.instrument_id
        limit 1
        -- why: the multipliers compared below must be those the legs are placed at; a change
        -- in flight (ref.upsert_instrument locks the row FOR UPDATE first) is waited for and read
        for key share;
        if v_symbol is null then
            raise exception 'no % instrument trades %/% on %', open_spread_trade.market_type, v_pair.base_asset,
                v_pair.quote_asset, v_exchange using errcode = '23S02';
        end if;
        -- why: the legs are new orders, but place_order returns an order placed before under a
        -- leg's client order id (as its retry), and the spread trade claimed that order, perhaps
        -- filled long ago, as a leg it never placed (its fills counted as this spread's)
        if open_spread_trade.client_spread_id is not null then
            perform internal.refuse_taken_leg_id(internal.exchange_id(v_exchange),
                                                 open_spread_trade.client_spread_id || '-' || v_side, v_side);
        end if;
        v_symbols := v_symbols || v_symbol;
        v_multipliers := v_multipliers || v_multiplier;
    end loop;
    -- why: both legs are placed in the same quantity of contracts, which hedge each other only
    -- when the contracts are of one size (spread_trade_pnl values the legs as such)
    if v_multipliers[1] <> v_multipliers[2] then
        raise exception 'the legs'' contracts differ in size: % on % is % %, % on % is % %',
            v_symbols[1], open_spread_trade.buy_exchange, trim_scale(v_multipliers[1]), v_pair.base_asset,
            v_symbols[2], open_spread_trade.sell_exchange, trim_scale(v_multipliers[2]), v_pair.base_asset
            using errcode = '22S20',
                  hint = 'The same quantity on both legs would not hedge: place the two orders with trading.place_order in quantities of the same size.';
    end if;
    for k in 1 .. 2 loop
        v_side := (array['buy', 'sell'])[k];
        v_orders := v_orders || trading.place_order(
            strategy => open_spread_trade.strategy,
            exchange => (array[open_spread_trade.buy_exchange, open_spread_trade.sell_exchange])[k],
            symbol => v_symbols[k], side => v_side,
            quantity => open_spread_trade.quantity,
            price => (array[open_spread_trade.buy_price, open_spread_trade.sell_price])[k],
            client_order_id => open_spread_trade.client_spread_id || '-' || v_side,
            placed_at => open_spread_trade.opened_at);
        -- why: the check above reads only committed orders. A placement of a leg's client order id
        -- still uncommitted makes place_order wait on the key and return that order as its retry
        -- once it commits (or, committed in between, find it as one), and the spread trade would
        -- claim it. An order place_order created here has the id it last drew from the order id
        -- sequence in this session; an order of another session never has. why not the key's
        -- xmin against pg_current_xact_id(): under a caller's savepoint the key carries the
        -- subtransaction's xid, and every spread trade opened under one would be refused
        if open_spread_trade.client_spread_id is not null
           and v_orders[k] is distinct from internal.last_order_id_drawn() then
            perform internal.refuse_taken_leg_id(
                internal.exchange_id((array[open_spread_trade.buy_exchange, open_spread_trade.sell_exchange])[k]),
                open_spread_trade.client_spread_id || '-' || v_side, v_side);
        end if;
    end loop;
    insert into trading.spread_trades (strategy_id, buy_order_id, sell_order_id, quantity, client_spread_id, opened_at)
    values (v_strategy.strategy_id, v_orders[1], v_orders[2], open_spread_trade.quantity,
            open_spread_trade.client_spread_id, open_spread_trade.opened_at)
    returning spread_trade_id into v_id;
    -- A leg that place_order rejected for a risk limit leaves the other unhedged: reject it too.
    -- why not raise: that would roll back the breach's risk event and its notification; the
    -- caller reads both legs' status, as after a rejected place_order. Both legs are new (see the
    -- client order id check above), so either can be rejected.
    v_buy := internal.lock_order(v_orders[1]);
    v_sell := internal.lock_order(v_orders[2]);
    if v_buy.status = 'rejected' and v_sell.status <> 'rejected' then
        perform internal.change_order_status(v_sell, 'rejected', concat_ws(': ',
            format('spread trade %s: the buy leg (order %s) was rejected', v_id, v_buy.order_id), v_buy.status_reason));
    elsif v_sell.status = 'rejected' and v_buy.status <> 'rejected' then
        perform internal.change_order_status(v_buy, 'rejected', concat_ws(': ',
            format('spread trade %s: the sell leg (order %s) was rejected', v_id, v_sell.order_id), v_sell.status_reason));
    end if;
    return v_id;
end;
$$;
comment on function trading.open_spread_trade(text, text, text, text, numeric, numeric, numeric, text, text, timestamptz) is
    'Places the buy and sell leg orders of a cross-exchange spread trade (spot, margin or perpetual) in one transaction; returns the spread trade id. A leg rejected by a risk limit rejects the other too (both legs rejected, the spread trade stored); idempotent on client_spread_id (23S06 when a retry differs, or another order took a leg''s client order id).';

create or replace function trading.spread_trade_pnl(
    strategy text default null,
    since    timestamptz default null,
    until    timestamptz default null
)
    returns table (
        spread_trade_id bigint, strategy_name text, opened_at timestamptz, buy_exchange text, buy_symbol text,
        sell_exchange text, sell_symbol text, base_asset text, quote_asset text, quantity numeric,
        buy_filled numeric, sell_filled numeric, buy_avg_price numeric, sell_avg_price numeric,
        matched_quantity numeric, matched_base_quantity numeric, captured_spread numeric,
        fees numeric, net_pnl numeric, residual_quantity numeric, residual_exposure numeric
    )
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Each spread trade opened in [since, until) (null = unbounded; 22S09 when since is after until)
-- of one strategy (null = all):
-- the legs' fills so far, the matched quantity (filled on both legs, in contracts, and in units of
-- the base asset: each fill's quantity x multiplier, the lesser leg's), the spread it captured
-- (matched x (sell value per unit - buy value per unit), a leg's value per unit being the sum of
-- its trades' quantity x price x multiplier over its filled quantity; matched in base units, each
-- fill's quantity x multiplier, when a contract size changed between fills), the fees of both legs'
-- fills (quote value), net PnL = captured - fees, and the residual: what both legs' fills added to
-- the positions together in units of the base asset (each leg's position deltas, buy filled or
-- sell filled less fees paid in the base asset, x its instrument's multiplier; positive = net
-- long), reported in contracts of the leg holding it (the buy leg when long, the sell leg when
-- short: base units / its multiplier), and its value: base units x that leg's mark price (0 when
-- nothing is left). Prices, the captured spread, fees, net PnL and the residual's value are in
-- quote_asset, the pair's (both legs trade one pair).
-- why each trade's own multiplier (trading.trades.multiplier) for the captured spread: a fill was
-- realized at the contract size of its day; ref.upsert_instrument may change the instrument's
-- later, and a closed spread trade's result must not change with it. The residual is open
-- exposure, valued now, at the contract sizes the positions have now.
#variable_conflict use_column
declare
    v_strategy_id integer;
begin
    perform internal.require_permission('pnl:read');
    -- why refuse a reversed period: it would report no spread trade, as if there were none
    if spread_trade_pnl.since > spread_trade_pnl.until then
        raise exception 'since % is after until %', spread_trade_pnl.since, spread_trade_pnl.until
            using errcode = '22S09';
    end if;
    if spread_trade_pnl.strategy is not null then
        v_strategy_id := (internal.find_strategy(spread_trade_pnl.strategy)).strategy_id;
    end if;
    return query
    select s.spread_trade_id, st.name, s.opened_at, be.code, bi.symbol, se.code, si.symbol, bi.base_asset,
           bi.quote_asset, s.quantity, b.filled_quantity, o.filled_quantity, b.avg_fill_price, o.avg_fill_price,
           m.matched, case when m.matched = 0 then 0 else mb.matched_base end, c.captured, f.fees, c.captured - f.fees,
           -- in contracts of the leg holding the excess; trim_scale: an even division (one contract
           -- size) gives the contracts without the division's trailing zeros
           case when r.residual_base = 0 then 0
                else trim_scale(r.residual_base / case when r.residual_base > 0 then bi.multiplier
                                                       else si.multiplier end) end,
           -- why 0 for no residual: nothing is exposed whatever the price, also with no price known
           case when r.residual_base = 0 then 0
                else round(r.residual_base * case when r.residual_base > 0 then trading.mark_price(bi.instrument_id)
                                                  else trading.mark_price(si.instrument_id) end, 12) end
    from trading.spread_trades s
    join trading.strategies st on st.strategy_id = s.strategy_id
    join trading.order_keys bk on bk.order_id = s.buy_order_id
    join trading.orders b on b.order_id = bk.order_id and b.created_at = bk.created_at
    join trading.order_keys ok on ok.order_id = s.sell_order_id
    join trading.orders o on o.order_id = ok.order_id and o.created_at = ok.created_at
    join ref.instruments bi on bi.instrument_id = b.instrument_id
    join ref.exchanges be on be.exchange_id = bi.exchange_id
    join ref.instruments si on si.instrument_id = o.instrument_id
    join ref.exchanges se on se.exchange_id = si.exchange_id
    cross join lateral (select least(b.filled_quantity, o.filled_quantity) as matched) m
    cross join lateral (
        -- why the trades' position deltas: a spot fee paid in the base asset leaves the buy leg's
        -- position short of its filled quantity (2 BTC bought, 0.002 BTC fee: +1.998), and
        -- buy filled - sell filled called such a spread flat while it was 0.002 BTC short
        select coalesce(sum(t.fee_quote), 0) as fees,
               coalesce(sum(t.position_delta) filter (where t.order_id = s.buy_order_id), 0) as buy_delta,
               coalesce(sum(t.position_delta) filter (where t.order_id = s.sell_order_id), 0) as sell_delta,
               sum(t.quantity * t.price * t.multiplier) filter (where t.order_id = s.buy_order_id) as buy_value,
               sum(t.quantity * t.price * t.multiplier) filter (where t.order_id = s.sell_order_id) as sell_value,
               -- each leg's fills in base units, each at the contract size it was filled at
               sum(t.quantity * t.multiplier) filter (where t.order_id = s.buy_order_id) as buy_base,
               sum(t.quantity * t.multiplier) filter (where t.order_id = s.sell_order_id) as sell_base
        from trading.trades t
        where t.order_id in (s.buy_order_id, s.sell_order_id)
    ) f
    -- why in base units: a leg's instrument may change its contract size between the legs' fills
    -- (open_spread_trade compares the sizes when it places the legs only); 10 contracts bought at
    -- 0.01 BTC against 10 sold at 0.001 BTC matched 10 "units" of 0.1 BTC at 600 against 0.01 BTC
    -- at 60.1 and reported a 5,399 USDT loss for a spread of 100 USDT per BTC on 0.01 BTC. With
    -- one contract size m on every fill this is matched x m x (sell value / (m x sell filled) -
    -- buy value / (m x buy filled)), the captured spread in contracts.
    cross join lateral (select least(f.buy_base, f.sell_base) as matched_base) mb
    -- why each leg's contracts at its instrument's multiplier: the residual is what the legs left
    -- in the positions, and a position is its contracts at the instrument's multiplier now (a
    -- change carries over to trading.positions and so to every exposure). Contracts summed across
    -- legs of different sizes would read 10 bought at 0.01 BTC and 10 sold at 0.001 BTC as even
    -- while 0.09 BTC is unhedged. why not each fill's multiplier (as the captured spread): 4 bought
    -- and 10 sold at 0.01 BTC, the sell leg's then changed to 0.001 BTC, would read 0.06 BTC short
    -- where the positions hold 0.04 long and 0.01 short
    cross join lateral (select f.buy_delta * bi.multiplier + f.sell_delta * si.multiplier as residual_base) r
    -- why a leg matched completely contributes its value as is: exactly, with no division
    -- why matched x the leg's value per base unit (24 decimals), not matched x value / filled: that
    -- product is the square of the size times the price, and past numeric's range (a spread trade
    -- of 1e70000 BTC, whose placement and fills were accepted) it failed the whole report, every
    -- other spread trade with it, with a bare 22003; each term now stays within matched x the
    -- leg's price, and the value per unit at 24 decimals is more exact than the quotient's 16
    -- significant digits were
    cross join lateral (
        select case when m.matched = 0 then 0
                    else round(case when mb.matched_base = f.sell_base then f.sell_value
                                    else mb.matched_base * (f.sell_value * 1.000000000000000000000000 / f.sell_base) end
                               - case when mb.matched_base = f.buy_base then f.buy_value
                                      else mb.matched_base * (f.buy_value * 1.000000000000000000000000 / f.buy_base) end,
                               12)
               end as captured
    ) c
    where (v_strategy_id is null or s.strategy_id = v_strategy_id)
      -- a scoped session reports only the strategies it sees
      and internal.strategy_in_scope(s.strategy_id)
      and (spread_trade_pnl.since is null or s.opened_at >= spread_trade_pnl.since)
      and (spread_trade_pnl.until is null or s.opened_at < spread_trade_pnl.until)
    order by s.opened_at, s.spread_trade_id;
end;
$$;
comment on function trading.spread_trade_pnl(text, timestamptz, timestamptz) is
    'Per spread trade: the pair, legs filled, matched quantity (contracts and base-asset units), captured spread (each fill at the multiplier it was realized at, matched in base units), fees, net PnL and the residual (both legs'' position deltas in base-asset units: uneven fills, base-asset fees, legs of different contract sizes; reported in contracts of the leg holding it) with its exposure (base units x that leg''s mark), in the pair''s quote asset.';

create or replace function trading.spread_trade_summary(
    strategy text default null,
    since    timestamptz default null,
    until    timestamptz default null
)
    returns table (strategy_name text, base_asset text, quote_asset text, spread_trades bigint,
                   matched_base_quantity numeric, captured_spread numeric, fees numeric, net_pnl numeric,
                   uneven_trades bigint)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- trading.spread_trade_pnl summed per strategy and asset pair; matched_base_quantity is in units
    -- of the base asset, the amounts in the quote asset; uneven_trades counts those with a residual
    -- (residual_quantity is not 0 exactly when the residual in base-asset units is not).
    -- why per quote asset: the USDT of a BTC/USDT spread and the BTC of an ETH/BTC one were added up
    -- into one number (migration 0030). why per base asset, in its units: 2 BTC of a BTC/USDT
    -- spread and 30 ETH of an ETH/USDT one were a matched quantity of 32, and 10 perpetual contracts
    -- of 0.01 BTC and 1 spot BTC one of 11 (migration 0036)
    select p.strategy_name, p.base_asset, p.quote_asset, count(*), sum(p.matched_base_quantity),
           sum(p.captured_spread), sum(p.fees), sum(p.net_pnl), count(*) filter (where p.residual_quantity <> 0)
    from trading.spread_trade_pnl(spread_trade_summary.strategy, spread_trade_summary.since,
                                  spread_trade_summary.until) p
    group by p.strategy_name, p.base_asset, p.quote_asset
    order by p.strategy_name, p.base_asset, p.quote_asset
$$;
comment on function trading.spread_trade_summary(text, timestamptz, timestamptz) is
    'Spread trades per strategy and asset pair: count, matched quantity (base-asset units), captured spread, fees, net PnL (in the quote asset) and how many filled unevenly.';
