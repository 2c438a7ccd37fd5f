-- spreadedge functions: portfolio snapshots
-- trading.take_portfolio_snapshot: equity, exposure and PnL per strategy and in total, one snapshot
-- per taken_at, taken now (within a minute: a snapshot is the portfolio as it is, never as it was).

create or replace function internal.in_valuation_asset(p_amount numeric, p_rate numeric)
    returns numeric
    immutable
    language sql
as $$
    -- An amount converted at a rate to a snapshot's valuation asset: as is at a rate of 1, else
    -- rounded to 12 decimals
    select case when p_rate = 1 then p_amount else round(p_amount * p_rate, 12) end
$$;
comment on function internal.in_valuation_asset(numeric, numeric) is
    'An amount converted at a rate to a portfolio snapshot''s valuation asset: as is at rate 1, else rounded to 12 decimals.';

create or replace function trading.take_portfolio_snapshot(taken_at        timestamptz default now(),
                                                           valuation_asset text default 'USDT')
    returns setof trading.portfolio_snapshots
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Record one snapshot row per strategy and one total row (strategy_id null) at taken_at, marking
-- open positions at the latest market price as the strategy's owner sees it
-- (internal.owner_mark_price: another user's fill never marks them), at their entry price when
-- none is known, so they count at cost with no unrealized PnL. Returns the rows written.
-- Every amount is in valuation_asset (an asset some instrument trades, any case; 22S09 for
-- another): a position quoted in another asset has its realized and unrealized PnL and its
-- exposure converted at that asset's price in valuation_asset as the owner sees the market
-- (internal.asset_price_as), each rounded to 12 decimals; a position with something to convert
-- and no such price raises unpriced_asset (22S23) naming it, and nothing is written. Capital is
-- taken to be in valuation_asset.
-- why: the PnL and exposure of an ETH/BTC position were added to a BTC/USDT one's at par, so a
-- strategy trading both (and the total row) showed an equity that meant nothing
-- taken_at is the time the snapshot is taken: between a minute before the transaction's start
-- (now()) and a minute after the clock (clock_timestamp()); any other raises invalid_argument
-- (22S09) naming it. A snapshot already taken at taken_at raises conflicting_duplicate (23S06);
-- either writes nothing.
-- why only now: the rows are of the positions, marks and capital as they are when the function
-- runs; under a past taken_at a position opened today was shown held last month (and its PnL
-- earned then), and a future one stood as trading.portfolio_latest until that time. The minute
-- either side leaves room for a caller's clock; a history of snapshots is built by taking them
-- as time goes (pg_cron or a scheduler), since the state at a past time is not kept.
-- why not return the stored rows instead: a snapshot is the portfolio as it is when taken, and
-- the stored one may be of another state (in one transaction now() does not move, so a fill
-- between two default calls would be hidden behind the first snapshot's figures); a caller that
-- means the stored snapshot reads it with trading.portfolio_snapshot_page.
#variable_conflict use_column
declare
    -- why "C": an asset code is ASCII; a Turkish collation's upper('link') is 'LİNK', which the check refuses
    v_asset         text := upper(take_portfolio_snapshot.valuation_asset collate "C");
    v_written       record;
    v_row           trading.portfolio_snapshots;
    v_total_written boolean := false;
begin
    perform internal.require_permission('pnl:read');
    perform internal.require_permission('strategies:all');
    if take_portfolio_snapshot.taken_at is null
       or not take_portfolio_snapshot.taken_at between now() - interval '1 minute'
                                                   and clock_timestamp() + interval '1 minute' then
        raise exception 'taken_at must be the time the snapshot is taken (now, within a minute), got %',
            case when isfinite(take_portfolio_snapshot.taken_at) then internal.iso_utc(take_portfolio_snapshot.taken_at)
                 else coalesce(take_portfolio_snapshot.taken_at::text, 'null') end
            using errcode = '22S09',
                  column = 'taken_at',
                  detail = format('The database clock reads %s.', internal.iso_utc(clock_timestamp())),
                  hint = 'Omit taken_at (it defaults to now()): a snapshot records the portfolio as it is, not as it was.';
    end if;
    if v_asset is null or not exists (select from ref.instruments i where i.base_asset = v_asset or i.quote_asset = v_asset) then
        raise exception 'valuation_asset % is an asset no instrument trades',
            coalesce('"' || left(take_portfolio_snapshot.valuation_asset, 40) || '"', 'null')
            using errcode = '22S09', column = 'valuation_asset',
                  hint = 'Name an instrument''s base or quote asset, e.g. USDT (the default).';
    end if;
    if exists (select from trading.portfolio_snapshots s where s.taken_at = take_portfolio_snapshot.taken_at) then
        raise exception 'a portfolio snapshot taken at % already exists', internal.iso_utc(take_portfolio_snapshot.taken_at)
            using errcode = '23S06',
                  hint = 'Take it at another time: within one transaction now() does not move, so pass taken_at => clock_timestamp().';
    end if;
    -- why ON CONFLICT DO NOTHING and the total-row test: a concurrent call at the same taken_at
    -- passes the check above too; its rows make ours conflict once it commits, and its total row
    -- always does, so a missing total row means the snapshot was taken meanwhile (raising undoes
    -- any strategy row written)
    -- why the unconvertible position is looked for in the statement that writes: a check of its
    -- own ran on an earlier snapshot of the data, and a position a fill opened after it (in USD,
    -- with nothing pricing USD in USDT) came to the insert with no rate: its PnL and exposure
    -- were left out of the sums without a word while open_positions counted it
    for v_written in
        with marked as (
            select p.strategy_id,
                   s.name as strategy,
                   e.code as exchange,
                   i.symbol,
                   p.quote_asset,
                   p.quantity,
                   p.realized_pnl,
                   i.multiplier,
                   p.avg_entry_price,
                   coalesce(internal.owner_mark_price(p.instrument_id, s.owner_user_id), p.avg_entry_price) as mark,
                   -- the price of the position's quote asset in the valuation asset: 0 for a
                   -- position with nothing to convert, null for one that cannot be (unpriced)
                   case when p.quote_asset = v_asset then 1
                        when p.quantity = 0 and p.realized_pnl = 0 then 0
                        else internal.asset_price_as(i.exchange_id, p.quote_asset, v_asset, true, s.owner_user_id)
                   end as rate
            from trading.positions p
            join trading.strategies s on s.strategy_id = p.strategy_id
            join ref.instruments i on i.instrument_id = p.instrument_id
            join ref.exchanges e on e.exchange_id = i.exchange_id
        ),
        -- the first position with an amount to convert and no price to convert it
        unpriced as (
            select m.strategy, m.exchange, m.symbol, m.quote_asset
            from marked m
            where m.rate is null
            order by m.strategy, m.exchange, m.symbol
            limit 1
        ),
        per_strategy as (
            select s.strategy_id,
                   s.capital,
                   -- why converted amounts rounded to 12 decimals: a rate from an inverse pair (1 /
                   -- a price) has 20 and more; amounts in valuation_asset stay exact
                   coalesce(sum(internal.in_valuation_asset(m.realized_pnl, m.rate)), 0) as realized_pnl,
                   -- why rounded per position as trading.get_position and position_summary do:
                   -- avg_entry_price is kept to 18 decimals, so the exact product carried its
                   -- rounding (-1.970000000000000001858 where the positions show -1.97)
                   coalesce(sum(case when m.quantity <> 0
                                     then internal.in_valuation_asset(
                                              round(m.quantity * m.multiplier * (m.mark - m.avg_entry_price), 12), m.rate)
                                end), 0) as unrealized_pnl,
                   coalesce(sum(internal.in_valuation_asset(abs(m.quantity) * m.mark * m.multiplier, m.rate)), 0)
                       as gross_exposure,
                   coalesce(sum(internal.in_valuation_asset(m.quantity * m.mark * m.multiplier, m.rate)), 0)
                       as net_exposure,
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
        ),
        written as (
            insert into trading.portfolio_snapshots as ps
                (taken_at, strategy_id, capital, realized_pnl, unrealized_pnl, gross_exposure, net_exposure,
                 open_positions, valuation_asset)
            select take_portfolio_snapshot.taken_at, r.strategy_id, r.capital, r.realized_pnl, r.unrealized_pnl,
                   r.gross_exposure, r.net_exposure, r.open_positions, v_asset
            from rows_to_write r
            where not exists (select from unpriced)
            on conflict do nothing
            returning ps
        )
        select w.ps as snapshot, null as strategy, null as exchange, null as symbol, null as quote_asset
        from written w
        union all
        select null, u.strategy, u.exchange, u.symbol, u.quote_asset
        from unpriced u
    loop
        if v_written.strategy is not null then
            raise exception 'the position of % in % on % is in %, which has no market price in %',
                v_written.strategy, v_written.symbol, v_written.exchange, v_written.quote_asset, v_asset
                using errcode = '22S23',
                      -- why not "or take the snapshot in <that asset>": with positions in both
                      -- assets that one fails too, its hint pointing back at this one
                      hint = format('Quote an instrument pairing %s with %s (or its inverse pair), then take the snapshot again.',
                                    v_written.quote_asset, v_asset);
        end if;
        v_row := v_written.snapshot;
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
comment on function trading.take_portfolio_snapshot(timestamptz, text) is
    'Record equity, exposure and PnL per strategy and in total (strategy_id null) as they are now, each position marked as its strategy''s owner sees it and converted to valuation_asset (default USDT; a position that cannot be converted raises 22S23); returns the rows written. taken_at (default now()) must be now within a minute, else 22S09; one snapshot per taken_at: another at the same time raises 23S06. Any error writes nothing.';
