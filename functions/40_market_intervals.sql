-- spreadedge functions: candle intervals
-- The length of each candle interval and the start of the candle a time falls in. Candles are
-- aligned to UTC: 4h candles start at 00:00, 04:00, ... and 1d candles at UTC midnight.

create or replace function market.interval_length(p_interval market.candle_interval)
    returns interval
    immutable
    parallel safe
    language sql
as $$
    -- The duration of one candle of p_interval.
    select case p_interval
        when '1m' then interval '1 minute'
        when '5m' then interval '5 minutes'
        when '15m' then interval '15 minutes'
        when '1h' then interval '1 hour'
        when '4h' then interval '4 hours'
        when '1d' then interval '1 day'
    end
$$;
comment on function market.interval_length(market.candle_interval) is
    'Duration of one candle of the interval (1m = 1 minute ... 1d = 1 day).';

create or replace function market.candle_start(p_interval market.candle_interval, p_time timestamptz)
    returns timestamptz
    immutable
    parallel safe
    language sql
as $$
    -- Start of the p_interval candle that p_time falls in, counted in UTC from 2000-01-01 00:00.
    select pg_catalog.date_bin(market.interval_length(p_interval), p_time, timestamptz '2000-01-01 00:00:00+00')
$$;
comment on function market.candle_start(market.candle_interval, timestamptz) is
    'Start (UTC-aligned) of the candle of the interval that a time falls in.';
