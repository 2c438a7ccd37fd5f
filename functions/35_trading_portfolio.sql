-- spreadedge functions: portfolio snapshots
-- trading.take_portfolio_snapshot: equity, exposure and PnL per strategy and in total, one snapshot
-- per taken_at.

create or replace function trading.take_portfolio_snapshot(taken_at timestamptz default now())
    returns setof trading.portfolio_snapshots
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Record one snapshot row per strategy and one total row (strategy_id null) at taken_at, marking
-- open positions at the latest market price (at their entry price when none is known, so they
-- count at cost with no unrealized PnL). Returns the rows written.
-- A snapshot already taken at taken_at raises conflicting_duplicate (23S06) and writes nothing.
-- why not return the stored rows instead: a snapshot is the portfolio as it is when taken, and
-- the stored one may be of another state (in one transaction now() does not move, so a fill
-- between two default calls would be hidden behind the first snapshot's figures); a caller that
-- means the stored snapshot reads it with trading.portfolio_snapshot_page.
#variable_conflict use_column
declare
    v_row           trading.portfolio_snapshots;
    v_total_written boolean := false;
begin
    perform internal.require_permission('pnl:read');
    perform internal.require_permission('strategies:all');
    perform internal.check_time(take_portfolio_snapshot.taken_at, 'taken_at');
    if exists (select from trading.portfolio_snapshots s where s.taken_at = take_portfolio_snapshot.taken_at) then
        raise exception 'a portfolio snapshot taken at % already exists', internal.iso_utc(take_portfolio_snapshot.taken_at)
            using errcode = '23S06',
                  hint = 'Take it at another time: within one transaction now() does not move, so pass taken_at => clock_timestamp().';
    end if;
    -- why ON CONFLICT DO NOTHING and the total-row test: a concurrent call at the same taken_at
    -- passes the check above too; its rows make ours conflict once it commits, and its total row
    -- always does, so a missing total row means the snapshot was taken meanwhile (raising undoes
    -- any strategy row written)
    for v_row in
        with marked as (
            select p.strategy_id,
                   p.quantity,
                   p.realized_pnl,
                   i.multiplier,
                   p.avg_entry_price,
                   coalesce(trading.mark_price(p.instrument_id), p.avg_entry_price) as mark
            from trading.positions p
            join ref.instruments i on i.instrument_id = p.instrument_id
        ),
        per_strategy as (
            select s.strategy_id,
                   s.capital,
                   coalesce(sum(m.realized_pnl), 0) as realized_pnl,
                   coalesce(sum(case when m.quantity <> 0
                                     then m.quantity * m.multiplier * (m.mark - m.avg_entry_price) end), 0) as unrealized_pnl,
                   coalesce(sum(abs(m.quantity) * m.mark * m.multiplier), 0) as gross_exposure,
                   coalesce(sum(m.quantity * m.mark * m.multiplier), 0) as net_exposure,
                   count(*) filter (where m.quantity <> 0)::integer as open_positions
            from trading.strategies s
            left join marked m on m.strategy_id = s.strategy_id
            group by s.strategy_id, s.capital
        ),
        rows_to_write as (
            select strategy_id, capital, realized_pnl, unrealized_pnl, gross_exposure, net_exposure, open_positions
            from per_strategy
            union all
            select null, coalesce(sum(capital), 0), coalesce(sum(realized_pnl), 0), coalesce(sum(unrealized_pnl), 0),
                   coalesce(sum(gross_exposure), 0), coalesce(sum(net_exposure), 0),
                   coalesce(sum(open_positions), 0)::integer
            from per_strategy
        )
        insert into trading.portfolio_snapshots as ps
            (taken_at, strategy_id, capital, realized_pnl, unrealized_pnl, gross_exposure, net_exposure, open_positions)
        select take_portfolio_snapshot.taken_at, r.strategy_id, r.capital, r.realized_pnl, r.unrealized_pnl,
               r.gross_exposure, r.net_exposure, r.open_positions
        from rows_to_write r
        on conflict do nothing
        returning ps.*
    loop
        v_total_written := v_total_written or v_row.strategy_id is null;
        return next v_row;
    end loop;
    if not v_total_written then
        raise exception 'a portfolio snapshot taken at % already exists', internal.iso_utc(take_portfolio_snapshot.taken_at)
            using errcode = '23S06',
                  detail = 'Another session took it while this one was computing.',
                  hint = 'Take it at another time: within one transaction now() does not move, so pass taken_at => clock_timestamp().';
    end if;
end;
$$;
comment on function trading.take_portfolio_snapshot(timestamptz) is
    'Record equity, exposure and PnL per strategy and in total (strategy_id null) at taken_at; returns the rows written. One snapshot per taken_at: another at the same time raises 23S06 and writes nothing.';
