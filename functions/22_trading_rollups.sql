-- spreadedge functions: PnL rollups
-- internal.add_to_rollups: adds a fill's or a funding payment's sums to trading.hourly_pnl and
-- trading.daily_pnl, the two rollups pnl_summary reads.

create or replace function internal.add_to_rollups(
    p_strategy_id        integer,
    p_instrument_id      integer,
    p_at                 timestamptz,
    p_trades             integer,
    p_volume             numeric,
    p_notional           numeric,
    p_fees               numeric,
    p_realized_pnl_gross numeric,
    p_funding            numeric,
    p_quote_asset        text
)
    returns void
    volatile
    -- why plpgsql: its statement plans are cached for the session; a sql function's are not
    language plpgsql
as $$
begin
    insert into trading.hourly_pnl as h
        (strategy_id, hour, instrument_id, trades, volume, notional, fees, realized_pnl_gross, funding)
    values
        (p_strategy_id, date_trunc('hour', p_at, 'UTC'), p_instrument_id, p_trades, p_volume, p_notional, p_fees,
         p_realized_pnl_gross, p_funding)
    on conflict (strategy_id, hour, instrument_id) do update
    set trades = h.trades + excluded.trades,
        volume = h.volume + excluded.volume,
        notional = h.notional + excluded.notional,
        fees = h.fees + excluded.fees,
        realized_pnl_gross = h.realized_pnl_gross + excluded.realized_pnl_gross,
        funding = h.funding + excluded.funding;

    insert into trading.daily_pnl as d
        (strategy_id, day, instrument_id, trades, volume, notional, fees, realized_pnl_gross, funding, quote_asset)
    values
        (p_strategy_id, (p_at at time zone 'UTC')::date, p_instrument_id, p_trades, p_volume, p_notional, p_fees,
         p_realized_pnl_gross, p_funding, p_quote_asset)
    on conflict (strategy_id, day, instrument_id) do update
    set trades = d.trades + excluded.trades,
        volume = d.volume + excluded.volume,
        notional = d.notional + excluded.notional,
        fees = d.fees + excluded.fees,
        realized_pnl_gross = d.realized_pnl_gross + excluded.realized_pnl_gross,
        funding = d.funding + excluded.funding;
end;
$$;
comment on function internal.add_to_rollups(integer, integer, timestamptz, integer, numeric, numeric, numeric, numeric, numeric, text) is
    'Adds one fill''s or funding payment''s sums to the hourly and daily PnL rollups of its UTC hour and day (p_quote_asset: the instrument''s, copied to a new daily row).';
