-- spreadedge functions: PnL summary
-- trading.pnl_summary: realized PnL over any period, summed from the daily rollup for whole UTC
-- days and from the trade and funding rows for the partial days at either end.

create or replace function internal.utc_day_start(p_time timestamptz, p_round_up boolean)
    returns timestamptz
    immutable
    language sql
as $$
    -- Start of p_time's UTC day; with p_round_up, of the next day unless p_time is a midnight.
    select date_trunc('day', p_time, 'UTC')
           + case when p_round_up and date_trunc('day', p_time, 'UTC') <> p_time
                  then interval '1 day' else interval '0' end
$$;
comment on function internal.utc_day_start(timestamptz, boolean) is
    'Midnight UTC at or before a time (or at or after it, when rounding up).';

create or replace function internal.pnl_facts(p_strategy_id integer, p_since timestamptz, p_until timestamptz)
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
    -- UTC day. With F the first midnight at or after p_since and E the last at or before p_until:
    -- [F, E) comes from trading.daily_pnl, [p_since, min(p_until, F)) and [max(p_since, E, F), p_until)
    -- from the trade and funding rows. The ranges never overlap and together cover the period.
    with bounds as (
        select internal.utc_day_start(p_since, true) as f,
               internal.utc_day_start(p_until, false) as e
    ),
    edges (lo, hi) as (
        select p_since, least(p_until, b.f) from bounds b where p_since is not null
        union all
        select greatest(p_since, b.e, b.f), p_until from bounds b where p_until is not null
    )
    select d.strategy_id, d.instrument_id, d.day, d.trades::bigint, d.volume, d.notional, d.fees,
           d.realized_pnl_gross, d.funding
    from bounds b
    join trading.daily_pnl d
        on (b.f is null or d.day >= (b.f at time zone 'UTC')::date)
       and (b.e is null or d.day < (b.e at time zone 'UTC')::date)
    where p_strategy_id is null or d.strategy_id = p_strategy_id
    union all
    select t.strategy_id, t.instrument_id, (t.executed_at at time zone 'UTC')::date, 1, t.quantity,
           t.quantity * t.price * i.multiplier, t.fee_quote, t.realized_pnl_gross, 0
    from edges e
    join trading.trades t on t.executed_at >= e.lo and t.executed_at < e.hi
    join ref.instruments i on i.instrument_id = t.instrument_id
    where p_strategy_id is null or t.strategy_id = p_strategy_id
    union all
    select f.strategy_id, f.instrument_id, (f.paid_at at time zone 'UTC')::date, 0, 0, 0, 0, 0, f.amount
    from edges e
    join trading.funding_payments f on f.paid_at >= e.lo and f.paid_at < e.hi
    where p_strategy_id is null or f.strategy_id = p_strategy_id
$$;
comment on function internal.pnl_facts(integer, timestamptz, timestamptz) is
    'PnL facts of a period per strategy, instrument and UTC day (whole days from the rollup, partial days from trades).';

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
    language plpgsql
as $$
-- Realized PnL of [since, until) (null = unbounded) for one strategy (null = all), grouped by a
-- comma-separated list of strategy, exchange, instrument (exchange and symbol) and day, or total
-- for one row. Columns not grouped on are null.
#variable_conflict use_column
declare
    v_dims        text[] := string_to_array(replace(lower(coalesce(pnl_summary.group_by, 'total')), ' ', ''), ',');
    v_strategy_id integer;
    v_by_strategy boolean;
    v_by_exchange boolean;
    v_by_symbol   boolean;
    v_by_day      boolean;
begin
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
    group by 1, 2, 3, 4
    order by 1, 2, 3, 4;
end;
$$;
comment on function trading.pnl_summary(text, timestamptz, timestamptz, text) is
    'Realized PnL (trades, volume, notional, fees, gross, funding, net) of [since, until) grouped by strategy, exchange, instrument and/or day.';
