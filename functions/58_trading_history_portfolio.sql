-- spreadedge functions: positions and portfolio history (GET /api/v1/historical/positions,
-- /portfolio/snapshots and /portfolio/latest), as json built here so the API only passes it on.

create or replace function trading.position_list(
    status   text default null,
    strategy text default null,
    exchange text default null,
    symbol   text default null
)
    returns json
    stable
    language plpgsql
as $$
-- Positions as {"items": [...]}: open (non-zero quantity) or closed (flat) or both, with the mark
-- price and unrealized PnL of trading.position_summary; ordered by strategy, exchange, symbol.
-- Prices and amounts are in the instrument's quote_asset (a position in ETH/BTC realizes BTC, one
-- in BTC/USDT USDT). Needs positions:read.
#variable_conflict use_variable
begin
    perform internal.require_permission('positions:read');
    perform internal.check_enum_value(status, array['open', 'closed'], 'status');
    return json_build_object('items', (
        select coalesce(json_agg(json_build_object(
                   'strategy', p.strategy,
                   'exchange', p.exchange,
                   'symbol', p.symbol,
                   'market_type', p.market_type,
                   -- why: the prices and PnL of an ETH/BTC position are in BTC, a BTC/USDT one's
                   -- in USDT; without the asset a client could only add them up at par
                   'quote_asset', i.quote_asset,
                   'status', case when p.quantity = 0 then 'closed' else 'open' end,
                   'quantity', trim_scale(p.quantity)::text,
                   'avg_entry_price', trim_scale(p.avg_entry_price)::text,
                   'mark_price', trim_scale(p.mark_price)::text,
                   'unrealized_pnl', trim_scale(p.unrealized_pnl)::text,
                   'realized_pnl_gross', trim_scale(p.realized_pnl_gross)::text,
                   'fees_paid', trim_scale(p.fees_paid)::text,
                   'funding', trim_scale(p.funding)::text,
                   'realized_pnl', trim_scale(p.realized_pnl)::text,
                   'trade_count', p.trade_count,
                   'opened_at', internal.iso_utc(p.opened_at),
                   'updated_at', internal.iso_utc(p.updated_at))
                   order by p.strategy, p.exchange, p.symbol), '[]')
        from trading.position_summary p
        join ref.exchanges e on e.code = p.exchange
        join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = p.symbol
        where (strategy is null or p.strategy = strategy)
          and (exchange is null or p.exchange = exchange)
          and (symbol is null or p.symbol = symbol)
          and (status is null or (p.quantity <> 0) = (status = 'open'))));
end;
$$;
comment on function trading.position_list(text, text, text, text) is
    'Positions (open, closed or all) with mark price and PnL, in the quote_asset each carries, as json {items}; filters by strategy, exchange and symbol. Needs positions:read.';

create or replace function internal.snapshot_item(p_snapshot trading.portfolio_snapshots, p_strategy text)
    returns json
    stable
    language sql
as $$
    -- One portfolio snapshot row as the history API shows it; strategy null for the total row.
    select json_build_object(
        'snapshot_id', p_snapshot.snapshot_id,
        'taken_at', internal.iso_utc(p_snapshot.taken_at),
        'strategy', p_strategy,
        'capital', trim_scale(p_snapshot.capital)::text,
        'realized_pnl', trim_scale(p_snapshot.realized_pnl)::text,
        'unrealized_pnl', trim_scale(p_snapshot.unrealized_pnl)::text,
        'equity', trim_scale(p_snapshot.equity)::text,
        'gross_exposure', trim_scale(p_snapshot.gross_exposure)::text,
        'net_exposure', trim_scale(p_snapshot.net_exposure)::text,
        'open_positions', p_snapshot.open_positions,
        'valuation_asset', p_snapshot.valuation_asset)
$$;
comment on function internal.snapshot_item(trading.portfolio_snapshots, text) is
    'A portfolio snapshot row as a history API item (json).';

create or replace function trading.portfolio_snapshot_page(
    strategy   text default null,
    start_date timestamptz default null,
    end_date   timestamptz default null,
    page_size  integer default 100,
    cursor     text default null
)
    returns json
    stable
    -- why: plans for the actual values use the (strategy_id, taken_at) or (taken_at) index
    set plan_cache_mode = force_custom_plan
    language plpgsql
as $$
-- One page of portfolio snapshot rows, newest first: {"items": [...], "next_cursor": ...}. Without
-- a strategy, every visible row including the total rows (strategy null), which only sessions that
-- see every strategy can see. A cursor is refused (22S09) unless it came with the same filters
-- (page_size may change). Needs pnl:read.
#variable_conflict use_variable
declare
    -- the filters a cursor carries (internal.page_cursor): page_size is not one, it may change
    v_filters      text := internal.page_filters(strategy, internal.iso_utc(start_date),
                                                 internal.iso_utc(end_date));
    v_after        record;
    v_strategy_ids integer[] := case when strategy is not null then internal.strategy_ids_named(strategy) end;
begin
    perform internal.require_permission('pnl:read');
    -- why after the permission check: see trading.order_history_page
    v_after := internal.read_page_cursor('snapshots', cursor, v_filters);
    perform internal.check_page_request(page_size, start_date, end_date);
    return (
        select json_build_object(
                   'items', coalesce(json_agg(internal.snapshot_item(p.ps, s.name)
                                               order by p.n) filter (where p.n <= page_size), '[]'),
                   'next_cursor', case when count(*) > page_size
                                       then min(internal.page_cursor('snapshots', (p.ps).taken_at, (p.ps).snapshot_id, v_filters))
                                                filter (where p.n = page_size) end)
        from (select ps as ps, row_number() over (order by ps.taken_at desc, ps.snapshot_id desc) as n
              from trading.portfolio_snapshots ps
              where (v_strategy_ids is null or ps.strategy_id = any (v_strategy_ids))
                and (start_date is null or ps.taken_at >= start_date)
                and (end_date is null or ps.taken_at < end_date)
                and (v_after.at is null or (ps.taken_at, ps.snapshot_id) < (v_after.at, v_after.id))
              order by ps.taken_at desc, ps.snapshot_id desc
              limit page_size + 1) p
        left join trading.strategies s on s.strategy_id = (p.ps).strategy_id);
end;
$$;
comment on function trading.portfolio_snapshot_page(text, timestamptz, timestamptz, integer, text) is
    'A page of portfolio snapshot rows newest first, as json {items, next_cursor}; filters by strategy and taken_at range. Keyset-paged: pass next_cursor back as cursor with the same filters (a cursor of another list or of other filters raises 22S09). Needs pnl:read.';

create or replace function trading.portfolio_latest()
    returns json
    stable
    language plpgsql
as $$
-- The most recent snapshot the caller can see: {"taken_at", "total": row or null, "strategies":
-- [rows]}; taken_at null and no rows before the first trading.take_portfolio_snapshot. The total
-- row is visible only to sessions that see every strategy. Needs pnl:read.
-- The most recent is the one taken last (its rows have the greatest snapshot_id), whatever its
-- taken_at: a snapshot is taken only at the server's clock, so one with a later taken_at than a
-- snapshot taken after it was stamped while that clock ran ahead (since set right).
-- why not max(taken_at): a snapshot taken while the clock ran two days ahead stood as the
-- latest for two days after it was set right, its positions long closed, hiding every snapshot
-- taken since
declare
    v_taken_at timestamptz;
begin
    perform internal.require_permission('pnl:read');
    select ps.taken_at into v_taken_at from trading.portfolio_snapshots ps order by ps.snapshot_id desc limit 1;
    return json_build_object(
        'taken_at', internal.iso_utc(v_taken_at),
        'total', (select internal.snapshot_item(ps, null)
                  from trading.portfolio_snapshots ps
                  where ps.taken_at = v_taken_at and ps.strategy_id is null),
        'strategies', (select coalesce(json_agg(internal.snapshot_item(ps, s.name) order by s.name), '[]')
                       from trading.portfolio_snapshots ps
                       join trading.strategies s on s.strategy_id = ps.strategy_id
                       where ps.taken_at = v_taken_at));
end;
$$;
comment on function trading.portfolio_latest() is
    'The latest visible portfolio snapshot (the one taken last, whatever its taken_at) as json {taken_at, total, strategies}. Needs pnl:read.';
