-- spreadedge functions: technical indicators
-- internal.indicator_series computes every indicator over the candles of one instrument and
-- interval in [since, until) in one pass; market.sma, ema, rsi, macd, bollinger, vwap and atr are
-- thin wrappers that pick its columns, and market.compute_indicators stores the standard set in
-- market.technical_indicators. Definitions (row i = i-th candle of the range, from 1; warm-up rows,
-- before an indicator is defined, are null):
--   SMA(n)       mean of the last n closes; from row n
--   EMA(n)       alpha = 2 / (n + 1); seeded at row n with SMA(n); then alpha x close + (1 - alpha) x EMA
--   MACD(f,s,g)  EMA(f) - EMA(s) from row s; signal = EMA(g) of the MACD line seeded with the mean of
--                its first g values (from row s + g - 1); histogram = MACD - signal
--   RSI(n)       Wilder: changes from row 2; first average gain / loss = mean of the first n; then
--                avg = (avg x (n - 1) + current) / n; RSI = 100 - 100 / (1 + gain / loss), 100 when
--                the average loss is 0; from row n + 1
--   Bollinger(n,k)  middle = SMA(n); upper / lower = middle +/- k x population std dev of n closes
--   VWAP         since the start of each UTC day (also when since is later): sum(quote_volume) / sum(volume);
--                null while volume is 0
--   ATR(n)       Wilder: true range TR = max(high - low, |high - previous close|, |low - previous close|)
--                (high - low on row 1); first ATR = mean of the first n TR at row n; then
--                (ATR x (n - 1) + TR) / n
-- Values are numeric arithmetic carried at 30 decimals (every quotient and square root keeps 30) and
-- rounded half-up on output to 12 decimals, or to more where the candle's close is below 0.1: one
-- more per zero after its decimal point (0.05: 13, 0.0000000012: 20), at most 24 (a close below
-- 10^-12), so that a value in price units keeps 12 significant digits of the close; RSI (0 to 100)
-- always to 12. The exact value correctly rounded, for prices up to 10^7 and beyond, unless it lies
-- within about 1e-20 of a rounding boundary (1e-26 at 24 decimals: the carried error is far smaller).

create or replace function internal.indicator_series(
    p_instrument_id integer,
    p_interval      market.candle_interval,
    p_since         timestamptz,
    p_until         timestamptz,
    p_sma_period    integer default 20,
    p_ema_period    integer default 20,
    p_rsi_period    integer default 14,
    p_bb_period     integer default 20,
    p_bb_k          numeric default 2,
    p_atr_period    integer default 14,
    p_macd_fast     integer default 12,
    p_macd_slow     integer default 26,
    p_macd_signal   integer default 9
)
    returns table (
        open_time timestamptz, close numeric, sma numeric, ema numeric, rsi numeric, macd numeric,
        macd_signal numeric, macd_histogram numeric, bb_middle numeric, bb_upper numeric,
        bb_lower numeric, vwap numeric, atr numeric
    )
    stable
    language plpgsql
as $$
-- Every indicator for every candle of the range, in open_time order (see the file header for the
-- definitions). Window functions give SMA, Bollinger and VWAP; the recursive ones (EMA, MACD, RSI,
-- ATR) are carried along the rows in one loop.
declare
    -- why a zero of scale 30 added to the dividend of every first quotient: a numeric division keeps
    -- only about 16 significant digits unless an operand has a larger scale, which at a price of
    -- 1,500,000 leaves 9 or 10 decimals and rounds the 12th wrongly (the EMA 26 seed, hence MACD and
    -- its signal; the standard deviation). A scale carries through + - x and division, so the
    -- smoothed values that follow keep 30 decimals too. The sums themselves are exact and stay at
    -- the closes' scale (cheaper to add up).
    c_zero    constant numeric := 0.000000000000000000000000000000;
    r         record;
    v_row     integer := 0;
    v_prev    numeric;
    v_sum     numeric := 0;  -- of the closes so far: the three EMAs' seeds
    v_ema     numeric;
    v_fast    numeric;
    v_slow    numeric;
    v_signal  numeric;  v_sig_sum  numeric := 0;
    v_gain    numeric;  v_loss     numeric;  v_gain_sum numeric := 0;  v_loss_sum numeric := 0;
    v_atr     numeric;  v_tr_sum   numeric := 0;
    v_change  numeric;
    v_tr      numeric;
    v_macd    numeric;
begin
    -- why nulls first: a null period or k passed every check below (a null comparison is not
    -- true) and returned every candle with the indicator null, as if it were still warming up
    if p_interval is null then
        raise exception 'candle_interval must be given' using errcode = '22S09';
    end if;
    if num_nulls(p_sma_period, p_ema_period, p_rsi_period, p_bb_period, p_bb_k, p_atr_period, p_macd_fast,
                 p_macd_slow, p_macd_signal) > 0 then
        raise exception 'indicator periods and bollinger k must not be null: sma %, ema %, rsi %, bollinger % and k %, atr %, macd %/%/%',
            coalesce(p_sma_period::text, 'null'), coalesce(p_ema_period::text, 'null'),
            coalesce(p_rsi_period::text, 'null'), coalesce(p_bb_period::text, 'null'), internal.number_shown(p_bb_k),
            coalesce(p_atr_period::text, 'null'), coalesce(p_macd_fast::text, 'null'),
            coalesce(p_macd_slow::text, 'null'), coalesce(p_macd_signal::text, 'null')
            using errcode = '22S09';
    end if;
    if least(p_sma_period, p_ema_period, p_rsi_period, p_bb_period, p_atr_period, p_macd_fast, p_macd_slow,
             p_macd_signal) < 1 or p_macd_fast >= p_macd_slow or not (p_bb_k > 0 and p_bb_k < 'Infinity') then
        -- why every value: a period of 0 given to market.sma was refused with a message naming the
        -- MACD periods and bollinger k only, none of which the caller had given
        raise exception 'indicator periods must be at least 1 with macd fast below slow, and bollinger k positive and finite: sma %, ema %, rsi %, bollinger % and k %, atr %, macd %/%/%',
            p_sma_period, p_ema_period, p_rsi_period, p_bb_period, p_bb_k, p_atr_period, p_macd_fast, p_macd_slow,
            p_macd_signal using errcode = '22S09';
    end if;
    -- why: k x the standard deviation overflowed numeric (a bare 22003) for a k near numeric's end;
    -- the standard deviation of closes whose squares sum within numeric is below 10^65536, so a k
    -- below 10^1000 (far beyond any band in use) keeps the product within it
    if p_bb_k >= 1e1000 then
        raise exception 'bollinger k must be below 10^1000, got %', btrim(to_char(p_bb_k, '9.999EEEE'))
            using errcode = '22S09', hint = 'k is a number of standard deviations, typically 2.';
    end if;
    -- why: a reversed range returned no candle, as if the instrument had none (the history API
    -- refuses the same with 22S09)
    if p_since >= p_until then
        raise exception 'since % is not before until %', p_since, p_until
            using errcode = '22S09', hint = 'since is inclusive and until exclusive: give an earlier since.';
    end if;
    for r in
        -- why sums, not avg and stddev_pop: those divide at about 16 significant digits. The sums
        -- of the closes and of their squares are exact, and so is n^2 x the population variance,
        -- n x sum of squares - sum^2: k x std dev = k x sqrt(that) / n, the root taken at scale 30
        select w.open_time, w.high, w.low, w.close, w.decimals, round(w.sma, w.decimals) as sma,
               round(w.bb_middle, w.decimals) as bb_middle, round(w.bb_middle + w.bb_width, w.decimals) as bb_upper,
               round(w.bb_middle - w.bb_width, w.decimals) as bb_lower, round(w.vwap, w.decimals) as vwap
        from (
            select c.open_time, c.high, c.low, c.close,
                   -- why more decimals below a close of 0.1: at 12 a coin priced 0.0000000012 (Gate.io
                   -- lists such) kept 3 or 4 significant digits of its SMA and bands, and its ATR and
                   -- MACD read 0.000000000000 over candles that moved: no volatility, no momentum.
                   -- One more decimal per zero after the point keeps 12 significant digits; at most
                   -- 24, which the 30 carried decimals still round correctly. log only where needed
                   12 + case when c.close < 0.1 then least(12, -floor(log(c.close))::integer - 1) else 0 end
                       as decimals,
                   case when count(*) over w_sma = p_sma_period then (c_zero + sum(c.close) over w_sma) / p_sma_period
                        end as sma,
                   case when count(*) over w_bb = p_bb_period then (c_zero + sum(c.close) over w_bb) / p_bb_period
                        end as bb_middle,
                   case when count(*) over w_bb = p_bb_period
                        then p_bb_k * sqrt(c_zero + p_bb_period * sum(c.close * c.close) over w_bb
                                           - (sum(c.close) over w_bb) * (sum(c.close) over w_bb)) / p_bb_period
                        end as bb_width,
                   c.vwap
            from (
                -- why from the start of the UTC day of since: VWAP has no warm-up, it is defined from
                -- the start of each candle's day; from since, a range starting at 15:00 gave VWAPs of
                -- the candles since 15:00 only
                select d.open_time, d.high, d.low, d.close,
                       case when sum(d.volume) over w_day > 0
                            then (c_zero + sum(d.quote_volume) over w_day) / sum(d.volume) over w_day end as vwap
                from market.candles d
                where d.instrument_id = p_instrument_id and d.interval = p_interval
                  and (p_since is null or d.open_time >= market.candle_start('1d', p_since))
                  and (p_until is null or d.open_time < p_until)
                window w_day as (partition by (d.open_time at time zone 'UTC')::date order by d.open_time
                                 rows between unbounded preceding and current row)
            ) c
            where p_since is null or c.open_time >= p_since
            window w_sma as (order by c.open_time rows between p_sma_period - 1 preceding and current row),
                   w_bb as (order by c.open_time rows between p_bb_period - 1 preceding and current row)
            order by c.open_time
        ) w
        order by w.open_time
    loop
        v_row := v_row + 1;
        -- EMA(n) and the two MACD EMAs: the mean of the first n closes at row n, then smooth
        v_sum := v_sum + r.close;
        v_ema := case when v_row < p_ema_period then null
                      when v_row = p_ema_period then (c_zero + v_sum) / p_ema_period
                      else v_ema + (r.close - v_ema) * 2 / (p_ema_period + 1) end;
        v_fast := case when v_row < p_macd_fast then null
                       when v_row = p_macd_fast then (c_zero + v_sum) / p_macd_fast
                       else v_fast + (r.close - v_fast) * 2 / (p_macd_fast + 1) end;
        v_slow := case when v_row < p_macd_slow then null
                       when v_row = p_macd_slow then (c_zero + v_sum) / p_macd_slow
                       else v_slow + (r.close - v_slow) * 2 / (p_macd_slow + 1) end;
        v_macd := v_fast - v_slow;
        if v_macd is not null then
            v_signal := case when v_row - p_macd_slow + 1 < p_macd_signal then null
                             when v_row - p_macd_slow + 1 = p_macd_signal then (v_sig_sum + v_macd) / p_macd_signal
                             else v_signal + (v_macd - v_signal) * 2 / (p_macd_signal + 1) end;
            v_sig_sum := v_sig_sum + v_macd;
        end if;
        -- RSI (Wilder): changes start at row 2
        if v_row > 1 then
            v_change := r.close - v_prev;
            -- why v_row - 1, not p_rsi_period + 1: that overflows integer for the largest period
            if v_row - 1 <= p_rsi_period then
                v_gain_sum := v_gain_sum + greatest(v_change, 0);
                v_loss_sum := v_loss_sum + greatest(-v_change, 0);
                if v_row - 1 = p_rsi_period then
                    v_gain := (c_zero + v_gain_sum) / p_rsi_period;
                    v_loss := (c_zero + v_loss_sum) / p_rsi_period;
                end if;
            else
                v_gain := (v_gain * (p_rsi_period - 1) + greatest(v_change, 0)) / p_rsi_period;
                v_loss := (v_loss * (p_rsi_period - 1) + greatest(-v_change, 0)) / p_rsi_period;
            end if;
        end if;
        -- ATR (Wilder)
        v_tr := case when v_row = 1 then r.high - r.low
                     else greatest(r.high - r.low, abs(r.high - v_prev), abs(r.low - v_prev)) end;
        v_atr := case when v_row < p_atr_period then null
                      when v_row = p_atr_period then (c_zero + v_tr_sum + v_tr) / p_atr_period
                      else (v_atr * (p_atr_period - 1) + v_tr) / p_atr_period end;
        v_tr_sum := v_tr_sum + v_tr;
        v_prev := r.close;

        open_time := r.open_time;
        close := r.close;
        sma := r.sma;
        ema := round(v_ema, r.decimals);
        rsi := case when v_gain is null then null
                    when v_loss = 0 then 100
                    else round(100 * v_gain / (v_gain + v_loss), 12) end;  -- = 100 - 100 / (1 + gain / loss)
        macd := round(v_macd, r.decimals);
        macd_signal := round(v_signal, r.decimals);
        macd_histogram := round(v_macd - v_signal, r.decimals);
        bb_middle := r.bb_middle;
        bb_upper := r.bb_upper;
        bb_lower := r.bb_lower;
        vwap := r.vwap;
        atr := round(v_atr, r.decimals);
        return next;
    end loop;
end;
$$;
comment on function internal.indicator_series(integer, market.candle_interval, timestamptz, timestamptz, integer, integer, integer, integer, numeric, integer, integer, integer, integer) is
    'Every indicator (SMA, EMA, RSI, MACD, Bollinger, VWAP, ATR) for each candle of one instrument and interval in a range, in one pass.';
