-- spreadedge functions: PnL summary
-- trading.pnl_summary: realized PnL over any period, summed from the daily rollup for whole UTC
-- days, from the hourly rollup for whole hours, and from the trade and funding rows for the rest.

create or replace function internal.utc_boundary(p_time timestamptz, p_unit text, p_round_up boolean)
    returns timestamptz
    immutable
    language sql
as $$
    -- Start of p_time's UTC hour or day (p_unit); with p_round_up, of the next one unless p_time
    -- is exactly on a boundary.
    select date_trunc(p_unit, p_time, 'UTC')
           + case when p_round_up and date_trunc(p_unit, p_time, 'UTC') <> p_time
                  then ('1 ' || p_unit)::interval else interval '0' end
$$;
comment on function internal.utc_boundary(timestamptz, text, boolean) is
    'UTC hour or day boundary at or before a time (or at or after it, when rounding up).';

create or replace function internal.pnl_facts(
    p_strategy_id integer,
    p_since       timestamptz,
    p_until       timestamptz
)
    returns table (
        strategy_id        integer,
        instrument_id      integer,
        day                date,
        trades             bigint,
        volume             numeric,
        notional           numeric,
        fees               numeric,
        realized_pnl_gross numeric,
        funding            numeric
    )
    stable
    language sql
as $$
    -- PnL facts of [p_since, p_until) (null = unbounded) per strategy (null = all), instrument and
    -- UTC day, read from the coarsest source that covers each piece of the period. With D1 and H1
    -- the first midnight and hour at or after p_since, D2 and H2 the last at or before p_until:
    --   whole days   [D1, D2)                                    from trading.daily_pnl
    --   whole hours  [H1, min(H2, D1)) and [max(H1, D2, D1), H2)  from trading.hourly_pnl
    --   the rest     [p_since, min(p_until, H1)) and [max(p_since, H2, H1), p_until)
    --                                                            from trades and funding payments
    -- The pieces never overlap and together cover the period (a null bound leaves its side open).
    -- why not materialized: inlined, the bounds fold to constants, so partitions are pruned at plan time
    with b as not materialized (
        select internal.utc_boundary(p_since, 'day', true) as d1,
               internal.utc_boundary(p_until, 'day', false) as d2,
               internal.utc_boundary(p_since, 'hour', true) as h1,
               internal.utc_boundary(p_until, 'hour', false) as h2
    )
    select d.strategy_id, d.instrument_id, d.day, d.trades::bigint, d.volume, d.notional, d.fees,
           d.realized_pnl_gross, d.funding
    from trading.daily_pnl d, b
    where (p_strategy_id is null or d.strategy_id = p_strategy_id)
      and (b.d1 is null or d.day >= (b.d1 at time zone 'UTC')::date)
      and (b.d2 is null or d.day < (b.d2 at time zone 'UTC')::date)
    union all
    select h.strategy_id, h.instrument_id, (h.hour at time zone 'UTC')::date, h.trades::bigint, h.volume,
           h.notional, h.fees, h.realized_pnl_gross, h.funding
    from trading.hourly_pnl h, b
    where (p_strategy_id is null or h.strategy_id = p_strategy_id)
      and ((h.hour >= b.h1 and h.hour < least(b.h2, b.d1))
           or (h.hour >= greatest(b.h1, b.d2, b.d1) and h.hour < b.h2))
    union all
    select t.strategy_id, t.instrument_id, (t.executed_at at time zone 'UTC')::date, 1, t.quantity,
           t.quantity * t.price * i.multiplier, t.fee_quote, t.realized_pnl_gross, 0
    from trading.trades t
    join ref.instruments i on i.instrument_id = t.instrument_id, b
    where (p_strategy_id is null or t.strategy_id = p_strategy_id)
      and ((t.executed_at >= p_since and t.executed_at < least(p_until, b.h1))
           or (t.executed_at >= greatest(p_since, b.h2, b.h1) and t.executed_at < p_until))
    union all
    select f.strategy_id, f.instrument_id, (f.paid_at at time zone 'UTC')::date, 0, 0, 0, 0, 0, f.amount
    from trading.funding_payments f, b
    where (p_strategy_id is null or f.strategy_id = p_strategy_id)
      and ((f.paid_at >= p_since and f.paid_at < least(p_until, b.h1))
           or (f.paid_at >= greatest(p_since, b.h2, b.h1) and f.paid_at < p_until))
$$;
comment on function internal.pnl_facts(integer, timestamptz, timestamptz) is
    'PnL facts of a period per strategy, instrument and UTC day: whole days from the daily rollup, whole hours from the hourly one, the rest from trades and funding.';

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
        trades             bigint,
        volume             numeric,
        notional           numeric,
        fees               numeric,
        realized_pnl_gross numeric,
        funding            numeric,
        realized_pnl       numeric
    )
    stable
    -- why: plans made for the actual arguments prune partitions and use the indexes, and a
    -- sub-10 ms query gains nothing from JIT compilation, which would cost more than it runs
    set plan_cache_mode = force_custom_plan
    set jit = off
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Realized PnL of [since, until) (null = unbounded) for one strategy (null = all), grouped by a
-- comma-separated list of strategy, exchange, instrument (exchange and symbol) and day, or total
-- for one row. Columns not grouped on are null. A scoped session sees its user's strategies only.
#variable_conflict use_column
declare
    v_dims        text[] := string_to_array(replace(lower(coalesce(pnl_summary.group_by, 'total')), ' ', ''), ',');
    v_strategy_id integer;
    v_by_strategy boolean;
    v_by_exchange boolean;
    v_by_symbol   boolean;
    v_by_day      boolean;
    v_visible     integer[];
begin
    perform internal.require_permission('pnl:read');
    if not v_dims <@ array['strategy', 'exchange', 'instrument', 'day', 'total'] then
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
    -- a scoped session sums only the strategies it sees
    if v_strategy_id is null and internal.session_user_id() is not null then
        v_visible := internal.visible_strategy_ids();
    end if;

    return query
    select case when v_by_strategy then s.name end as strategy_name,
           case when v_by_exchange then e.code end as exchange,
           case when v_by_symbol then i.symbol end as symbol,
           case when v_by_day then f.day end as day,
           sum(f.trades)::bigint,
           sum(f.volume),
           sum(f.notional),
           sum(f.fees),
           sum(f.realized_pnl_gross),
           sum(f.funding),
           sum(f.realized_pnl_gross) - sum(f.fees) + sum(f.funding)
    from internal.pnl_facts(v_strategy_id, pnl_summary.since, pnl_summary.until) f
    join trading.strategies s on s.strategy_id = f.strategy_id
    join ref.instruments i on i.instrument_id = f.instrument_id
    join ref.exchanges e on e.exchange_id = i.exchange_id
    where v_visible is null or f.strategy_id = any (v_visible)
    group by 1, 2, 3, 4
    order by 1, 2, 3, 4;
end;
$$;
comment on function trading.pnl_summary(text, timestamptz, timestamptz, text) is
    'Realized PnL (trades, volume, notional, fees, gross, funding, net) of [since, until) grouped by strategy, exchange, instrument and/or day.';
