-- spreadedge functions: PnL summary
-- trading.pnl_summary: realized PnL over any period, summed from the daily rollup for whole UTC
-- days, from the hourly rollup for whole hours, and from the trade and funding rows for the rest;
-- with the unrealized PnL of the open positions when the period reaches the present.

create or replace function internal.utc_boundary(p_time timestamptz, p_unit text, p_round_up boolean)
    returns timestamptz
    immutable
    language sql
as $$
    -- Start of p_time's UTC hour or day (p_unit); with p_round_up, of the next one unless p_time
    -- is exactly on a boundary.
    -- why on the UTC wall clock: a day added to a timestamptz is a day of the session's TimeZone,
    -- 23 or 25 hours long on a daylight-saving change, so a session in Sydney or Berlin got a
    -- "next UTC midnight" an hour off and pnl_summary counted a day's rollup it should have
    -- summed from trades, or an hour twice; on a timestamp without time zone every day is 24 hours
    -- why infinity past the last representable hour or day: rounding up a time in it raised
    -- "timestamp out of range" (22008, no project SQLSTATE) from pnl_summary; a boundary too late
    -- only makes pnl_summary read that edge from the trades, which cover it as well
    -- why the unit's interval by case, not ('1 ' || p_unit)::interval: that cast reads text with
    -- interval_in, which is stable, so this immutable function was never inlined; pnl_summary's
    -- four calls were each parsed and planned again in every transaction (1.8 M instructions, a
    -- fifth of a summary)
    select case when p_round_up and date_trunc(p_unit, p_time at time zone 'UTC') <> p_time at time zone 'UTC'
                     and date_trunc(p_unit, p_time at time zone 'UTC')
                         > timestamp '294276-12-31 23:59:59.999999'
                           - case p_unit when 'day' then interval '1 day' else interval '1 hour' end
                then timestamptz 'infinity'
                else (date_trunc(p_unit, p_time at time zone 'UTC')
                      + case when p_round_up and date_trunc(p_unit, p_time at time zone 'UTC') <> p_time at time zone 'UTC'
                             then case p_unit when 'day' then interval '1 day' else interval '1 hour' end
                             else interval '0' end) at time zone 'UTC'
           end
$$;
comment on function internal.utc_boundary(timestamptz, text, boolean) is
    'UTC hour or day boundary (p_unit ''hour'' or ''day'') at or before a time (or at or after it, when rounding up; infinity past the last representable one).';

-- internal.pnl_facts was the facts union below as an inlined SQL function: PostgreSQL parsed its
-- body and inlined utc_boundary into every reference to a boundary again in each custom plan (a
-- fifth of a summary's instructions); the union now lives in pnl_summary's own statement
drop function if exists internal.pnl_facts(integer, timestamptz, timestamptz);

create or replace function internal.open_position_pnl(p_strategy_ids integer[])
    returns table (strategy_id integer, instrument_id integer, unrealized_pnl numeric)
    stable
    -- why one row: pnl_summary's generic plan joins its union of facts, these rows among them, to
    -- the strategies and instruments; at the planner's guess for the positions of an array of
    -- strategies (96 of the bench's 240) that plan changed to hash every strategy, read whole
    -- through its index, in every summary, even one of a past period that reads no position
    rows 1
    -- why plpgsql: a SQL function would be inlined into pnl_summary's statement, guess and all;
    -- PL/pgSQL keeps its own plan for the session
    language plpgsql
as $$
-- The open positions (quantity not 0) of these strategies, each with its unrealized PnL as
-- trading.get_position computes it without a mark price: quantity x multiplier x
-- (trading.mark_price - avg_entry_price), rounded to 12 decimals; null when the instrument has no
-- mark. trading.mark_price marks as the session sees the market (in a session scoped to a user,
-- never at another user's private fill).
#variable_conflict use_column
begin
    return query
    -- why the factors tested first: as in trading.get_position, only a position whose product
    -- may overflow numeric pays for the function that turns that into 22S09
    select o.strategy_id, o.instrument_id,
           case when abs(o.quantity) >= 1e43690 or o.mark >= 1e43690 or o.avg_entry_price >= 1e43690
                     or o.multiplier >= 1e43690
                then internal.checked_unrealized_pnl(o.quantity, o.multiplier, o.mark, o.avg_entry_price)
                else round(o.quantity * o.multiplier * (o.mark - o.avg_entry_price), 12) end
    from (select p.strategy_id, p.instrument_id, p.quantity, p.multiplier, p.avg_entry_price,
                 trading.mark_price(p.instrument_id) as mark
          from trading.positions p
          where p.strategy_id = any (p_strategy_ids) and p.quantity <> 0
          -- why offset 0: the mark is computed once a position, not at each reference
          offset 0) o;
end;
$$;
comment on function internal.open_position_pnl(integer[]) is
    'Open positions of the strategies with their unrealized PnL at trading.mark_price, as trading.get_position computes it (null when no mark); pnl_summary sums them.';

-- its form without unrealized_pnl (the last column) is dropped by migration 0078, as migration 0027
-- dropped the one without quote_asset: CREATE OR REPLACE cannot change the columns a function
-- returns. why not here: functions/ is re-applied on every migrate, which then dropped the
-- function each time (an operator's grant of it lost, a view of theirs over it failing migrate)

create or replace function trading.pnl_summary(
    strategy text default null,
    since    timestamptz default null,
    until    timestamptz default null,
    group_by text default 'strategy'
)
    returns table (
        strategy_name      text,
        exchange           text,
        symbol             text,
        day                date,
        quote_asset        text,
        trades             bigint,
        volume             numeric,
        notional           numeric,
        fees               numeric,
        realized_pnl_gross numeric,
        funding            numeric,
        realized_pnl       numeric,
        unrealized_pnl     numeric
    )
    stable
    -- why one generic plan: a custom plan for the arguments cost more to make than it ran (8.8 M
    -- instructions a summary, most of them planning). The generic plan prunes the trades
    -- partitions at executor start-up, and every filter is an index condition: the strategies as
    -- an array (one, the scoped session's, or all), each piece of the period a range of its own
    -- (an OR of two ranges read all of a strategy's hourly rows). 3.9 M instructions.
    set plan_cache_mode = force_generic_plan
    -- why no sequential scans: made without the arguments, the plan expects a handful of facts and
    -- read all of ref.instruments (1,200 rows) to join their names instead of probing them
    set enable_seqscan = off
    -- why: a sub-10 ms query gains nothing from JIT compilation, which would cost more than it runs
    set jit = off
    -- why: partition pruning already leaves out the trades partitions outside the period; with
    -- constraint exclusion on, the planner also read every remaining partition's CHECK constraints
    -- and tried them against the period in every call (3 % of a summary), to exclude nothing
    set constraint_exclusion = off
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Realized PnL of [since, until) (null = unbounded) for one strategy (null = all), grouped by a
-- comma-separated list of strategy, exchange, instrument (exchange and symbol) and day, or total
-- for one row, and always by quote asset: amounts are in the quote asset of their instruments,
-- and a row never adds USDT to BTC (a strategy trading BTC/USDT and ETH/BTC has a row of each).
-- Columns not grouped on are null. A scoped session sees its user's strategies only.
-- The facts are read from the coarsest source that covers each piece of the period. With D1 and H1
-- the first midnight and hour at or after since, D2 and H2 the last at or before until:
--   whole days   [D1, D2)                                    from trading.daily_pnl
--   whole hours  [H1, min(H2, D1)) and [max(H1, D2, D1), H2)  from trading.hourly_pnl
--   the rest     [since, min(until, H1)) and [max(since, H2, H1), until)
--                                                            from trades and funding payments
-- The pieces never overlap and together cover the period (a null bound leaves its side open).
-- unrealized_pnl: when the period reaches the present (since null or at or before now(), until
-- null or at or after now(): [since, now()) is "up to now"), the unrealized PnL of the group's positions open now, each marked as
-- trading.get_position marks it without a mark price (trading.mark_price, as the session sees
-- it): quantity x multiplier x (mark - avg_entry_price), rounded to 12 decimals, summed; 0 for a
-- group with no open position, null when one of its open positions has no mark (no market data,
-- no fill the session sees), as get_position's is. A group with an open position and no fact in
-- the period has a row of zeros and its unrealized PnL. By day, only the current UTC day's rows
-- have it. Null for a period that ends before now() (or starts after it): the marks of a
-- past moment are not kept, and positions are known only as they are now.
#variable_conflict use_column
declare
    v_dims        text[] := string_to_array(replace(lower(coalesce(pnl_summary.group_by, 'total')), ' ', ''), ',');
    v_strategy_id integer;
    v_by_strategy boolean;
    v_by_exchange boolean;
    v_by_symbol   boolean;
    v_by_day      boolean;
    v_ids         integer[];
    -- why variables: computed once a call, where the same calls written in the statement were
    -- inlined and evaluated again at every reference
    v_d1          timestamptz := internal.utc_boundary(pnl_summary.since, 'day', true);
    v_d2          timestamptz := internal.utc_boundary(pnl_summary.until, 'day', false);
    v_h1          timestamptz := internal.utc_boundary(pnl_summary.since, 'hour', true);
    v_h2          timestamptz := internal.utc_boundary(pnl_summary.until, 'hour', false);
    -- why a variable: in the generic plan it is the one-time filter that skips reading the
    -- positions (and their marks) for a period in the past, the common dashboard query
    v_present     boolean := (pnl_summary.since is null or pnl_summary.since <= now())
                             and (pnl_summary.until is null or pnl_summary.until >= now());
    v_today       date := (now() at time zone 'UTC')::date;
begin
    perform internal.require_permission('pnl:read');
    -- why the empty list too: '' (or ' ') groups by nothing a caller named; null means total
    if not v_dims <@ array['strategy', 'exchange', 'instrument', 'day', 'total'] or cardinality(v_dims) = 0 then
        raise exception 'group_by "%" is not a list of strategy, exchange, instrument, day or total',
            pnl_summary.group_by
            using errcode = '22S09',
                  hint = 'For example group_by => ''strategy,day''.';
    end if;
    if pnl_summary.since is not null and pnl_summary.until is not null and pnl_summary.since > pnl_summary.until then
        raise exception 'since % is after until %', pnl_summary.since, pnl_summary.until using errcode = '22S09';
    end if;
    if pnl_summary.strategy is not null then
        v_strategy_id := (internal.find_strategy(pnl_summary.strategy)).strategy_id;
    end if;
    v_by_strategy := 'strategy' = any (v_dims);
    v_by_exchange := 'exchange' = any (v_dims) or 'instrument' = any (v_dims);
    v_by_symbol := 'instrument' = any (v_dims);
    v_by_day := 'day' = any (v_dims);
    -- the strategies summed: the one named, else those the session sees (null: all of them)
    if v_strategy_id is not null then
        v_ids := array[v_strategy_id];
    else
        v_ids := coalesce(internal.visible_strategy_ids(), array(select s.strategy_id from trading.strategies s));
    end if;

    return query
    select case when v_by_strategy then s.name end as strategy_name,
           case when v_by_exchange then e.code end as exchange,
           case when v_by_symbol then i.symbol end as symbol,
           case when v_by_day then f.day end as day,
           -- why always: the notional, fees and PnL of a BTC/USDT and of an ETH/BTC trade are in
           -- USDT and in BTC; summed into one number they were a figure in neither
           i.quote_asset::text,
           sum(f.trades)::bigint,
           sum(f.volume),
           sum(f.notional),
           sum(f.fees),
           sum(f.realized_pnl_gross),
           sum(f.funding),
           sum(f.realized_pnl_gross) - sum(f.fees) + sum(f.funding),
           -- the sum is null with no open position (0), NaN with one that has no mark (null)
           -- why NaN for an unmarked position: sum() skips nulls, and such a group would have
           -- shown the others' unrealized PnL as the whole; NaN carries through the sum
           -- why null in the fact rows, not 0: a fact row then costs the sum no numeric addition,
           -- and one column (not a second one flagging the positions) keeps every row of the
           -- union as narrow as it can be: a 30-day summary sorts and joins hundreds of them
           -- why the day's group key, not min(f.day): evaluated once a group, not once a row
           -- why trim_scale: a position marked at its entry price is 0.000000000000 rounded, which
           -- Python holds as Decimal('0E-12') (as trading.position_summary does)
           case when not v_present or coalesce(case when v_by_day then f.day end, v_today) <> v_today then null
                when sum(f.unrealized_pnl) is null then 0
                when sum(f.unrealized_pnl) <> 'NaN' then trim_scale(sum(f.unrealized_pnl)) end
    from (
        select d.strategy_id, d.instrument_id, d.day, d.trades::bigint as trades, d.volume, d.notional, d.fees,
               d.realized_pnl_gross, d.funding, null::numeric as unrealized_pnl
        from trading.daily_pnl d
        where d.strategy_id = any (v_ids)
          and d.day >= coalesce((v_d1 at time zone 'UTC')::date, '-infinity')
          and d.day < coalesce((v_d2 at time zone 'UTC')::date, 'infinity')
        union all
        select h.strategy_id, h.instrument_id, (h.hour at time zone 'UTC')::date, h.trades::bigint, h.volume,
               h.notional, h.fees, h.realized_pnl_gross, h.funding, null
        from trading.hourly_pnl h
        where h.strategy_id = any (v_ids) and h.hour >= v_h1 and h.hour < least(v_h2, v_d1)
        union all
        select h.strategy_id, h.instrument_id, (h.hour at time zone 'UTC')::date, h.trades::bigint, h.volume,
               h.notional, h.fees, h.realized_pnl_gross, h.funding, null
        from trading.hourly_pnl h
        where h.strategy_id = any (v_ids) and h.hour >= greatest(v_h1, v_d2, v_d1) and h.hour < v_h2
        union all
        select t.strategy_id, t.instrument_id, (t.executed_at at time zone 'UTC')::date, 1, t.quantity,
               t.quantity * t.price * t.multiplier, t.fee_quote, t.realized_pnl_gross, 0, null
        from trading.trades t
        where t.strategy_id = any (v_ids)
          and t.executed_at >= pnl_summary.since and t.executed_at < least(pnl_summary.until, v_h1)
        union all
        select t.strategy_id, t.instrument_id, (t.executed_at at time zone 'UTC')::date, 1, t.quantity,
               t.quantity * t.price * t.multiplier, t.fee_quote, t.realized_pnl_gross, 0, null
        from trading.trades t
        where t.strategy_id = any (v_ids)
          and t.executed_at >= greatest(pnl_summary.since, v_h2, v_h1) and t.executed_at < pnl_summary.until
        union all
        select p.strategy_id, p.instrument_id, (p.paid_at at time zone 'UTC')::date, 0, 0, 0, 0, 0, p.amount, null
        from trading.funding_payments p
        where p.strategy_id = any (v_ids)
          and p.paid_at >= pnl_summary.since and p.paid_at < least(pnl_summary.until, v_h1)
        union all
        select p.strategy_id, p.instrument_id, (p.paid_at at time zone 'UTC')::date, 0, 0, 0, 0, 0, p.amount, null
        from trading.funding_payments p
        where p.strategy_id = any (v_ids)
          and p.paid_at >= greatest(pnl_summary.since, v_h2, v_h1) and p.paid_at < pnl_summary.until
        union all
        -- the positions open now, on today's UTC day (v_present false: not called at all)
        select o.strategy_id, o.instrument_id, v_today, 0, 0, 0, 0, 0, 0, coalesce(o.unrealized_pnl, 'NaN')
        from internal.open_position_pnl(v_ids) o
        where v_present
    ) f
    join trading.strategies s on s.strategy_id = f.strategy_id
    join ref.instruments i on i.instrument_id = f.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id
    group by 1, 2, 3, 4, 5
    order by 1, 2, 3, 4, 5;
end;
$$;
comment on function trading.pnl_summary(text, timestamptz, timestamptz, text) is
    'Realized PnL (trades, volume, notional, fees, gross, funding, net) of [since, until) grouped by strategy, exchange, instrument and/or day, and always by quote asset (amounts are in it): whole days from the daily rollup, whole hours from the hourly one, the rest from trades and funding. unrealized_pnl: when the period reaches the present, that of the group''s open positions marked as trading.get_position marks them (0 with none open, null when one has no mark; by day on today''s rows only); null for a period ending before now() (past marks are not kept).';
