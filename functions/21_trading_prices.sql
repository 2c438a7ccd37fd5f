-- spreadedge functions: prices and position arithmetic
-- Mark prices for unrealized PnL and fee valuation (market data first, else fills), and the pure
-- average-cost step every fill applies to a position (also used to re-fold positions from their
-- trades).

-- (The three-argument mark, internal.quote_mark, became internal.market_mark with the quote's and
-- the trade's times.)
drop function if exists internal.quote_mark(numeric, numeric, numeric);

-- (It took no sizes before; a quote with an empty side marked at its mid.)
drop function if exists internal.market_mark(numeric, numeric, timestamptz, numeric, timestamptz);

create or replace function internal.market_mark(
    p_bid        numeric,
    p_bid_size   numeric,
    p_ask        numeric,
    p_ask_size   numeric,
    p_quoted_at  timestamptz,
    p_last_price numeric,
    p_traded_at  timestamptz
)
    returns numeric
    immutable
    language sql
as $$
    -- The mark of an instrument's market data (market.latest_prices): the mid of its newest quote
    -- when that quote has both sides (sizes above 0) and is at least as new as its newest trade
    -- (tick), else the trade's price; null when neither. Inlined where it is used, so a join to
    -- latest_prices costs no call per row (one SELECT of one expression, immutable, no SET).
    -- why the newer of the two: a quote feed that stopped while trades kept coming marked every
    -- position (unrealized PnL, pre-trade risk, fee valuation) at a mid days old
    -- why the quote on a tie: a mid is the price between both sides, a trade only one side's
    -- why both sides: a side of size 0 is an empty book side, no price (as in
    -- market.current_spreads); a bid of 50 left on an empty side next to an ask of 100 marked at 75
    select case when p_bid_size > 0 and p_ask_size > 0 and (p_traded_at is null or p_traded_at <= p_quoted_at)
                then (p_bid + p_ask) / 2
                else p_last_price end
$$;
comment on function internal.market_mark(numeric, numeric, numeric, numeric, timestamptz, numeric, timestamptz) is
    'Mark price from market data: mid of the best bid and ask when the quote has both sides (sizes above 0) and is at least as new as the last trade, else the last trade price; null when neither.';

create or replace function internal.latest_fill_price(p_instrument_id integer)
    returns numeric
    stable
    -- why plpgsql: its two plans are kept for the session (see trading.mark_price)
    language plpgsql
as $$
-- The price of the instrument's latest fill (newest executed_at, then trade id), or null. Read
-- first over the last week: no fill is stored more than a day ahead of the time it was recorded
-- (internal.check_time), so a fill found in [clock - 7 days, clock + 1 day] is the latest, and
-- run-time pruning leaves one or two monthly trades partitions to read instead of every one
-- (PostgreSQL 15 still locks them all). An instrument without a fill that week is searched
-- over all of them.
declare
    v_price numeric;
    -- why clock_timestamp(), not now(): a fill is refused more than a day ahead of its writer's
    -- now(); a fill committed by a transaction that began after this one, dated up to a day past
    -- that later start, is seen by this read-committed statement and must not be cut off
    -- why hours, not days: a day added in the session's TimeZone is 23 hours on the eve of a
    -- spring-forward, and a fill dated 23.5 hours ahead (accepted: internal.check_time counts 24
    -- hours) fell past the window, which then returned an older fill as the latest
    v_until timestamptz := clock_timestamp() + interval '24 hours';
begin
    select t.price into v_price
    from trading.trades t
    where t.instrument_id = p_instrument_id
      and t.executed_at >= v_until - interval '192 hours' and t.executed_at <= v_until
    order by t.executed_at desc, t.trade_id desc
    limit 1;
    if v_price is null then
        select t.price into v_price
        from trading.trades t
        where t.instrument_id = p_instrument_id
        order by t.executed_at desc, t.trade_id desc
        limit 1;
    end if;
    return v_price;
end;
$$;
comment on function internal.latest_fill_price(integer) is
    'Price of the latest fill of an instrument (the last week read first, then all of history); null when none.';

create or replace function internal.latest_fill_price_among(p_instrument_id integer, p_strategy_ids integer[])
    returns numeric
    stable
    -- why plpgsql: its plans are kept for the session (see trading.mark_price)
    language plpgsql
as $$
-- The price of the instrument's latest fill by one of these strategies; null strategies: by any
-- (internal.latest_fill_price). What a mark falls back to for someone who sees only some strategies:
-- another trader's fill price is private.
declare
    v_price numeric;
begin
    if p_strategy_ids is null then
        return internal.latest_fill_price(p_instrument_id);
    end if;
    select t.price into v_price
    from trading.trades t
    where t.instrument_id = p_instrument_id and t.strategy_id = any (p_strategy_ids)
    order by t.executed_at desc, t.trade_id desc
    limit 1;
    return v_price;
end;
$$;
comment on function internal.latest_fill_price_among(integer, integer[]) is
    'Price of the latest fill of an instrument by one of the strategies (null: any); null when none.';

create or replace function trading.mark_price(p_instrument_id integer)
    returns numeric
    stable
    security definer
    set search_path = ''
    -- why plpgsql: a SQL function that cannot be inlined (security definer) is planned again in
    -- every statement that calls it, and planning the fallback over the trades partitions cost
    -- 0.4 ms, more than the rest of a pre-trade risk check; PL/pgSQL keeps its plans for the session
    language plpgsql
as $$
-- The latest market price known for the instrument: the newer of the mid of its newest quote and
-- the price of its newest public trade (tick), the mid on a tie (internal.market_mark), else the
-- price of its latest fill: in a session scoped to a user, of the latest fill of a strategy the
-- user sees.
declare
    v_price numeric;
begin
    select internal.market_mark(l.bid, l.bid_size, l.ask, l.ask_size, l.quoted_at, l.last_price, l.traded_at) into v_price
    from market.latest_prices l
    where l.instrument_id = p_instrument_id;
    if v_price is not null or internal.session_user_id() is null then
        return coalesce(v_price, internal.latest_fill_price(p_instrument_id));
    end if;
    -- why the scope: this function runs as the owner, whom row-level security does not restrict,
    -- so a trader's position in an instrument without market data was marked at another trader's
    -- private fill price (shown as the mark in the positions endpoint and views)
    return internal.latest_fill_price_among(p_instrument_id, internal.visible_strategy_ids());
end;
$$;
comment on function trading.mark_price(integer) is
    'Latest known market price of an instrument: newest quote mid or newest tick price, whichever is newer (the mid when as new), else latest fill price (of a strategy the session sees, when scoped to a user); null when none.';

create or replace function internal.owner_mark_price(p_instrument_id integer, p_owner_user_id bigint)
    returns numeric
    stable
    -- why plpgsql: its plans are kept for the session (see trading.mark_price)
    language plpgsql
as $$
-- The mark of an instrument as the owner of a strategy sees it (trading.mark_price in a session
-- scoped to that owner): the newer of the quote mid and the tick price (internal.market_mark),
-- else the latest fill of the strategies the owner sees: every strategy for an unowned strategy
-- (the engine's) or an owner with strategies:all, else the owner's own strategies.
-- why: rows that an unscoped session (the engine, pg_cron) writes for a strategy, such as its
-- portfolio snapshot rows, are read by the strategy's owner; marked at any strategy's latest fill
-- they handed the owner another trader's private fill price
declare
    v_price numeric;
begin
    select internal.market_mark(l.bid, l.bid_size, l.ask, l.ask_size, l.quoted_at, l.last_price, l.traded_at) into v_price
    from market.latest_prices l
    where l.instrument_id = p_instrument_id;
    if v_price is not null then
        return v_price;
    end if;
    if p_owner_user_id is null
       or exists (select from auth.users u
                  join auth.user_roles ur on ur.user_id = u.user_id
                  join auth.role_permissions rp on rp.role_name = ur.role_name
                  where u.user_id = p_owner_user_id and u.disabled_at is null
                    and rp.permission = 'strategies:all') then
        return internal.latest_fill_price(p_instrument_id);
    end if;
    return internal.latest_fill_price_among(
        p_instrument_id,
        array(select s.strategy_id from trading.strategies s where s.owner_user_id = p_owner_user_id));
end;
$$;
comment on function internal.owner_mark_price(integer, bigint) is
    'Mark price of an instrument as a strategy owner sees it: market data, else the latest fill of a strategy the owner sees (any for no owner or strategies:all); null when none.';

create or replace function internal.asset_amount_as(
    p_amount        numeric,
    p_exchange_id   smallint,
    p_asset         text,
    p_quote_asset   text,
    p_by_owner      boolean,
    p_owner_user_id bigint
)
    returns numeric
    stable
    language sql
as $$
    -- p_amount of p_asset in p_quote_asset (itself for the asset itself): times the mark of an
    -- instrument trading p_asset against p_quote_asset, or divided by the mark of one trading
    -- p_quote_asset against p_asset (the inverse pair), that has one; null when none has. Listed
    -- instruments before delisted ones (is_active false); then spot and margin markets first, then
    -- perpetuals and futures; within each, the exchange p_exchange_id first, then the pair before
    -- its inverse, then spot before margin, then the lowest instrument id. The mark is
    -- trading.mark_price's (as the session sees it), or with p_by_owner the mark as the strategy
    -- owner p_owner_user_id sees it (internal.owner_mark_price; null: an unowned strategy).
    -- why never an option: its price is a premium, not the price of its base asset
    -- why the market type before the exchange: a perpetual's or future's price strays from the
    -- asset's (funding, basis) more than another exchange's spot price does
    -- why a delisted instrument last, before even the market type: its market data stopped at
    -- the delisting, so its mark is as old as that (months, maybe); a fee or position was valued at
    -- it although the same pair traded, live, on another exchange or as a perpetual. It is still
    -- a price when no listed instrument has one.
    -- why inverse pairs: markets list USDT fees' value in BTC only as BTC/USDT, so a fee in USDT
    -- on an ETH/BTC fill was refused (22S08) although BTC/USDT was quoted on that very exchange
    -- why an amount, divided by an inverse pair's mark: times 1 / the mark (rounded to 16 digits)
    -- 60,000 USDT came out 1.00000000000000000002 BTC, beyond a risk limit of 1 BTC the order
    -- meets exactly; a division is exact whenever the quotient ends
    -- why offset 0: each candidate's mark is computed once, not again for the one chosen
    select case when p_asset = p_quote_asset then p_amount else (
        select case when c.inverse then p_amount / c.price else p_amount * c.price end
        from (select i.instrument_id, i.exchange_id, i.market_type, i.is_active,
                     i.base_asset <> p_asset as inverse,
                     case when p_by_owner then internal.owner_mark_price(i.instrument_id, p_owner_user_id)
                          else trading.mark_price(i.instrument_id) end as price
              from ref.instruments i
              where ((i.base_asset = p_asset and i.quote_asset = p_quote_asset)
                     or (i.base_asset = p_quote_asset and i.quote_asset = p_asset))
                and i.market_type in ('spot', 'margin', 'perpetual', 'futures')
              offset 0) c
        where c.price > 0
        order by c.is_active desc, c.market_type in ('spot', 'margin') desc, (c.exchange_id = p_exchange_id) desc,
                 c.inverse, c.market_type = 'spot' desc, c.instrument_id
        limit 1) end
$$;
comment on function internal.asset_amount_as(numeric, smallint, text, text, boolean, bigint) is
    'An amount of an asset in a quote asset: times its pair''s mark, or divided by its inverse pair''s (the pair internal.asset_price_as describes), marked as the session sees it or, with p_by_owner, as a strategy owner does; null when unknown.';

create or replace function internal.asset_price_as(
    p_exchange_id   smallint,
    p_asset         text,
    p_quote_asset   text,
    p_by_owner      boolean,
    p_owner_user_id bigint
)
    returns numeric
    stable
    language sql
as $$
    -- Price of one unit of p_asset in p_quote_asset (1 for the asset itself): the mark of the
    -- pair internal.asset_amount_as chooses, or 1 / the mark of its inverse pair.
    select internal.asset_amount_as(1, p_exchange_id, p_asset, p_quote_asset, p_by_owner, p_owner_user_id)
$$;
comment on function internal.asset_price_as(smallint, text, text, boolean, bigint) is
    'Price of an asset in a quote asset (trading.asset_price), marked as the session sees it or, with p_by_owner, as a strategy owner does (internal.owner_mark_price).';

-- why the drop: trading.asset_price took the exchange id as smallint, which an integer literal
-- does not turn into implicitly: select trading.asset_price(1, 'BTC', 'USDT') in psql was 42883
-- "function does not exist"; the old signature must not linger as an overload (a quoted literal,
-- '1', would then be ambiguous between the two, and its grant would not be unique)
drop function if exists trading.asset_price(smallint, text, text);

create or replace function trading.asset_price(p_exchange_id integer, p_asset text, p_quote_asset text)
    returns numeric
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Price of one unit of p_asset in p_quote_asset, marked by trading.mark_price (quote mid or
    -- tick, the newer, else the latest fill the session may see): see internal.asset_price_as for
    -- the order of the candidate instruments.
    -- why integer: ref.exchanges.exchange_id is a smallint, but a person types 1, an integer; an
    -- id beyond smallint is no exchange's, so it prefers none (as an unknown id in range does)
    select internal.asset_price_as(
        case when p_exchange_id between -32768 and 32767 then p_exchange_id::smallint end,
        p_asset, p_quote_asset, false, null)
$$;
comment on function trading.asset_price(integer, text, text) is
    'Price of an asset in a quote asset from market data (1 for the asset itself): its pair''s mark, else 1 / its inverse pair''s; listed instruments before delisted ones, then spot or margin first, then perpetual or futures, the given exchange first within each, then the pair before its inverse; never an option; null when unknown.';

create or replace function trading.position_after_fill(
    p_quantity        numeric,
    p_avg_entry_price numeric,
    p_delta           numeric,
    p_price           numeric,
    p_multiplier      numeric,
    out quantity           numeric,
    out avg_entry_price    numeric,
    out realized_pnl_gross numeric
)
    immutable
    language plpgsql
as $$
-- One average-cost step: the position (p_quantity signed, p_avg_entry_price) after a signed
-- quantity change p_delta at p_price. A fill in the position's direction re-weights the average
-- entry (rounded to 18 decimals); a reducing fill realizes closed x multiplier x (price - entry),
-- sign by side (rounded to 12 decimals); a fill that crosses zero realizes the closed part and opens
-- the rest at p_price.
declare
    v_closed numeric;
begin
    if p_quantity = 0 or sign(p_delta) = sign(p_quantity) or p_delta = 0 then
        quantity := p_quantity + p_delta;
        avg_entry_price := case
            when quantity = 0 then null
            when p_quantity = 0 then p_price
            else round((p_quantity * p_avg_entry_price + p_delta * p_price) * 1.000000000000000000000000
                       / quantity, 18)
        end;
        realized_pnl_gross := 0;
        return;
    end if;
    v_closed := least(abs(p_delta), abs(p_quantity));
    realized_pnl_gross := round(v_closed * p_multiplier * (p_price - p_avg_entry_price) * sign(p_quantity), 12);
    quantity := p_quantity + p_delta;
    avg_entry_price := case
        when quantity = 0 then null
        when sign(quantity) = sign(p_quantity) then p_avg_entry_price
        else p_price
    end;
end;
$$;
comment on function trading.position_after_fill(numeric, numeric, numeric, numeric, numeric) is
    'Average-cost step: position quantity, entry price and realized gross PnL after a signed quantity change at a price.';
