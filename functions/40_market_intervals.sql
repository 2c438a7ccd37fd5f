-- spreadedge functions: candle intervals
-- The length of each candle interval and the start of the candle a time falls in. Candles are
-- aligned to UTC: 4h candles start at 00:00, 04:00, ... and 1d candles at UTC midnight.

create or replace function market.interval_length(p_interval market.candle_interval)
    returns interval
    immutable
    parallel safe
    language sql
as $$
    -- The duration of one candle of p_interval: a span of UTC time.
    -- why '24 hours', not '1 day': a timestamptz plus '1 day' keeps the wall-clock time of the
    -- session's TimeZone, so across a DST change it is 23 or 25 hours. A day candle's end
    -- (open_time + this) was then an hour off in a Berlin session: a candle loaded in the last
    -- hour of its day was taken to be closed, marked loaded and never corrected, and one closed
    -- an hour before was left unmarked for the rollups to overwrite. date_bin reads both the same.
    select case p_interval
        when '1m' then interval '1 minute'
        when '5m' then interval '5 minutes'
        when '15m' then interval '15 minutes'
        when '1h' then interval '1 hour'
        when '4h' then interval '4 hours'
        when '1d' then interval '24 hours'
    end
$$;
comment on function market.interval_length(market.candle_interval) is
    'Duration of one candle of the interval (1m = 1 minute ... 1d = 24 hours: a UTC day, the same in every session time zone, also across DST).';

create or replace function market.max_candle_trades(p_interval market.candle_interval)
    returns integer
    immutable
    parallel safe
    language sql
as $$
    -- The most trades a candle of p_interval may count: its share of a day of 2147483647 trades
    -- (1,491,308 a minute, about a hundred times a busy day's rate), so that the candles of a
    -- UTC day always add up into its longer candles' trade_count (an integer column).
    select floor(2147483647 * extract(epoch from market.interval_length(p_interval)) / 86400)::integer
$$;
comment on function market.max_candle_trades(market.candle_interval) is
    'Most trades a candle of the interval may count: its share of a day of 2147483647 trades (1m: 1,491,308), so a day''s candles add up into an integer.';

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
