-- spreadedge functions: the indicator API
-- market.sma, ema, rsi, macd, bollinger, vwap and atr: one indicator of one instrument's candles
-- in [since, until) (null = unbounded), as rows (open_time, value...); thin wrappers around
-- internal.indicator_series (definitions in functions/46_market_indicators.sql). And
-- market.compute_indicators, which stores the standard set in market.technical_indicators.

create or replace function market.sma(exchange text, symbol text, candle_interval market.candle_interval,
                                      period integer default 20, since timestamptz default null,
                                      until timestamptz default null)
    returns table (open_time timestamptz, sma numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Simple moving average of `period` closes.
    select s.open_time, s.sma
    from internal.indicator_series((internal.find_instrument(sma.exchange, sma.symbol)).instrument_id,
                                   sma.candle_interval, sma.since, sma.until, p_sma_period => sma.period) s
$$;
comment on function market.sma(text, text, market.candle_interval, integer, timestamptz, timestamptz) is
    'Simple moving average of closes per candle (null for the first period - 1 candles).';

create or replace function market.ema(exchange text, symbol text, candle_interval market.candle_interval,
                                      period integer default 20, since timestamptz default null,
                                      until timestamptz default null)
    returns table (open_time timestamptz, ema numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Exponential moving average of closes, alpha 2 / (period + 1), seeded with the SMA.
    select s.open_time, s.ema
    from internal.indicator_series((internal.find_instrument(ema.exchange, ema.symbol)).instrument_id,
                                   ema.candle_interval, ema.since, ema.until, p_ema_period => ema.period) s
$$;
comment on function market.ema(text, text, market.candle_interval, integer, timestamptz, timestamptz) is
    'Exponential moving average of closes per candle, seeded with the SMA of the first period closes.';

create or replace function market.rsi(exchange text, symbol text, candle_interval market.candle_interval,
                                      period integer default 14, since timestamptz default null,
                                      until timestamptz default null)
    returns table (open_time timestamptz, rsi numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Relative strength index with Wilder smoothing.
    select s.open_time, s.rsi
    from internal.indicator_series((internal.find_instrument(rsi.exchange, rsi.symbol)).instrument_id,
                                   rsi.candle_interval, rsi.since, rsi.until, p_rsi_period => rsi.period) s
$$;
comment on function market.rsi(text, text, market.candle_interval, integer, timestamptz, timestamptz) is
    'Relative strength index (Wilder) per candle, from candle period + 1.';

create or replace function market.macd(exchange text, symbol text, candle_interval market.candle_interval,
                                       fast integer default 12, slow integer default 26, signal integer default 9,
                                       since timestamptz default null, until timestamptz default null)
    returns table (open_time timestamptz, macd numeric, signal numeric, histogram numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- MACD line EMA(fast) - EMA(slow), its signal EMA(signal) and the histogram.
    select s.open_time, s.macd, s.macd_signal, s.macd_histogram
    from internal.indicator_series((internal.find_instrument(macd.exchange, macd.symbol)).instrument_id,
                                   macd.candle_interval, macd.since, macd.until, p_macd_fast => macd.fast,
                                   p_macd_slow => macd.slow, p_macd_signal => macd.signal) s
$$;
comment on function market.macd(text, text, market.candle_interval, integer, integer, integer, timestamptz, timestamptz) is
    'MACD line, signal line and histogram per candle (12/26/9 by default).';

create or replace function market.bollinger(exchange text, symbol text, candle_interval market.candle_interval,
                                            period integer default 20, k numeric default 2,
                                            since timestamptz default null, until timestamptz default null)
    returns table (open_time timestamptz, middle numeric, upper numeric, lower numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Bollinger bands: SMA(period) +/- k population standard deviations.
    select s.open_time, s.bb_middle, s.bb_upper, s.bb_lower
    from internal.indicator_series((internal.find_instrument(bollinger.exchange, bollinger.symbol)).instrument_id,
                                   bollinger.candle_interval, bollinger.since, bollinger.until,
                                   p_bb_period => bollinger.period, p_bb_k => bollinger.k) s
$$;
comment on function market.bollinger(text, text, market.candle_interval, integer, numeric, timestamptz, timestamptz) is
    'Bollinger bands per candle: middle (SMA), upper and lower (+/- k population standard deviations).';

create or replace function market.vwap(exchange text, symbol text, candle_interval market.candle_interval,
                                       since timestamptz default null, until timestamptz default null)
    returns table (open_time timestamptz, vwap numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Volume-weighted average price since the start of each UTC day.
    select s.open_time, s.vwap
    from internal.indicator_series((internal.find_instrument(vwap.exchange, vwap.symbol)).instrument_id,
                                   vwap.candle_interval, vwap.since, vwap.until) s
$$;
comment on function market.vwap(text, text, market.candle_interval, timestamptz, timestamptz) is
    'Volume-weighted average price per candle since the start of its UTC day (sum of quote volume / sum of volume).';

create or replace function market.atr(exchange text, symbol text, candle_interval market.candle_interval,
                                      period integer default 14, since timestamptz default null,
                                      until timestamptz default null)
    returns table (open_time timestamptz, atr numeric)
    stable
    security definer
    set search_path = ''
    language sql
as $$
    -- Average true range with Wilder smoothing.
    select s.open_time, s.atr
    from internal.indicator_series((internal.find_instrument(atr.exchange, atr.symbol)).instrument_id,
                                   atr.candle_interval, atr.since, atr.until, p_atr_period => atr.period) s
$$;
comment on function market.atr(text, text, market.candle_interval, integer, timestamptz, timestamptz) is
    'Average true range (Wilder) per candle, from candle period.';

create or replace function market.compute_indicators(
    exchange        text,
    symbol          text,
    candle_interval market.candle_interval,
    since           timestamptz default null,
    until           timestamptz default null
)
    returns bigint
    volatile
    language plpgsql
as $$
-- Compute the standard indicators (SMA 20, EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2, VWAP,
-- ATR 14) over the instrument's candles of [since, until) and store them in
-- market.technical_indicators, replacing what was stored for those candles. Warm-up starts at
-- since: pass an earlier since to have values from the first candle you need. An indicator still
-- warming up in this run keeps the value stored for its candle (MACD line, signal and histogram
-- together). Candles of a time market.technical_indicators has no partition for (dropped by its
-- retention or spreadedge cleanup indicators while the candles are kept longer) still warm the
-- indicators up but are not stored. Returns the rows written.
-- why: a run over the last hour (the incremental use) wrote its warm-up nulls over the values an
-- earlier run had computed with the history before: after one run of 40 candles and one from its
-- 21st, 19 of the 21 stored SMA 20 values and every MACD signal were null. VWAP has no warm-up and
-- is always the new value.
#variable_conflict use_column
declare
    v_instrument ref.instruments := internal.find_instrument(compute_indicators.exchange, compute_indicators.symbol);
    v_count      bigint;
    -- the times market.technical_indicators has partitions for (read from the catalog: the
    -- roles that compute indicators have no rights on the partman schema)
    v_partitions tstzmultirange := internal.partition_times('market.technical_indicators');
begin
    if compute_indicators.candle_interval is null then
        raise exception 'candle_interval must be given' using errcode = '22S09';
    end if;
    -- why: once cleanup (or pg_partman's retention) dropped old indicator partitions while the
    -- candles of those months were kept, a run over the whole history (since null, the usual call)
    -- sent their rows to the default partition, which refuses them (22S09): every run failed and
    -- stored nothing, also for today's candles. Not just from the oldest partition on: cleanup
    -- drops the partitions holding rows, older empty ones stay.
    insert into market.technical_indicators as t
        (instrument_id, interval, open_time, sma_20, ema_20, rsi_14, macd, macd_signal, macd_histogram,
         bb_middle, bb_upper, bb_lower, vwap, atr_14)
    select v_instrument.instrument_id, compute_indicators.candle_interval, s.open_time, s.sma, s.ema, s.rsi,
           s.macd, s.macd_signal, s.macd_histogram, s.bb_middle, s.bb_upper, s.bb_lower, s.vwap, s.atr
    from internal.indicator_series(v_instrument.instrument_id, compute_indicators.candle_interval,
                                   compute_indicators.since, compute_indicators.until) s
    where v_partitions @> s.open_time
    on conflict (instrument_id, interval, open_time) do update
        set sma_20 = coalesce(excluded.sma_20, t.sma_20), ema_20 = coalesce(excluded.ema_20, t.ema_20),
            rsi_14 = coalesce(excluded.rsi_14, t.rsi_14),
            -- why the line with the signal: a line seeded at since next to a signal kept from an
            -- earlier run gave a histogram that was not line - signal
            macd = case when excluded.macd_signal is null and t.macd_signal is not null then t.macd
                        else coalesce(excluded.macd, t.macd) end,
            macd_signal = coalesce(excluded.macd_signal, t.macd_signal),
            macd_histogram = coalesce(excluded.macd_histogram, t.macd_histogram),
            bb_middle = coalesce(excluded.bb_middle, t.bb_middle), bb_upper = coalesce(excluded.bb_upper, t.bb_upper),
            bb_lower = coalesce(excluded.bb_lower, t.bb_lower), vwap = excluded.vwap,
            atr_14 = coalesce(excluded.atr_14, t.atr_14), computed_at = now();
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;
comment on function market.compute_indicators(text, text, market.candle_interval, timestamptz, timestamptz) is
    'Computes SMA 20, EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2, VWAP and ATR 14 for an instrument''s candles of [since, until) and stores them in market.technical_indicators; an indicator still warming up keeps the value stored for its candle. Candles of a time market.technical_indicators has no partition for (cleaned up) warm up but are not stored.';
