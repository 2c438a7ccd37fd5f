-- spreadedge functions: candle rollups
-- market.rollup_candles builds 1m candles from market.ticks and 5m, 15m, 1h, 4h and 1d candles from
-- the 1m candles, incrementally: each run rebuilds every candle from (watermark - open_window) to
-- until, so ticks that arrive late, but within the open window, are in the candles after the next
-- run. A candle opens at its first trade and closes at its last: by time, and within one time by
-- exchange trade id, numerically for numeric ids (see below). Schedule it with pg_cron, e.g. every
-- minute:
--     select cron.schedule('spreadedge-candle-rollup', '* * * * *', 'select market.rollup_candles()');

create or replace function internal.wait_for_candle_rollup()
    returns void
    volatile
    language sql
as $$
    -- Waits until no other session runs market.rollup_candles, and keeps any from starting one
    -- until this transaction ends: the advisory lock rollup_candles tries, held to commit. The
    -- session that holds it still runs rollup_candles itself (advisory locks are reentrant).
    -- why: rollup_candles returns at once, writing nothing, when another run holds its lock; a
    -- caller that must have its candles built (the demo day) waits here first
    select pg_advisory_xact_lock(hashtext('spreadedge.rollup_candles'))
$$;
comment on function internal.wait_for_candle_rollup() is
    'Waits for a running market.rollup_candles and holds its lock to commit, so that this session''s own run is not skipped.';

create or replace function market.rollup_candles(
    until       timestamptz default now(),
    open_window interval default interval '10 minutes'
)
    returns table (candle_interval market.candle_interval, candles bigint)
    volatile
    -- why UTC: a candle's end is its start + its length, and a '1 day' added in the session
    -- TimeZone is 23 or 25 hours across DST: from a Berlin session the 1d candle of a DST day left
    -- its last hour out (candles are UTC days whatever the session)
    set timezone = 'UTC'
    language plpgsql
as $$
-- Rebuild the candles of [watermark - open_window, until), each from all its ticks (1m) or from all
-- its candles of the next shorter interval (5m from 1m, 15m from 5m, ..., 1d from 4h), also those
-- after until in it, and move the watermark to until, at most to now() (the trades still to come
-- are not built yet) and to the newest trade built (the server's clock may be ahead of the
-- exchanges' times; with no trade built, to the newest candle's start). A first run starts at the
-- start of the UTC day of the oldest tick or candle. A candle is rewritten only when its values
-- change, and never when it was loaded from a file (market.candles.loaded: an exchange's candle holds trades
-- spreadedge may not have); longer candles are built from the loaded ones as from the others. The
-- result says how many candles of each interval were written. Runs one at a time: a run that finds
-- another one working returns no rows and changes nothing. A run waits for the candle loads in
-- progress, and loads started meanwhile wait for it (no deadlock between them).
#variable_conflict use_column
declare
    v_watermark timestamptz;
    v_start     timestamptz;
    v_end       timestamptz;  -- the end of the minute until falls in (until itself when aligned)
    v_interval  market.candle_interval;
    v_source    market.candle_interval := '1m';  -- the interval v_interval is built from
    v_count     bigint;
    v_newest    timestamptz;  -- the newest trade time the run built
begin
    perform internal.check_time(rollup_candles.until, 'until');
    if rollup_candles.open_window is null or rollup_candles.open_window < interval '0' then
        raise exception 'open_window % must be zero or more', coalesce(rollup_candles.open_window::text, 'null')
            using errcode = '22S09';
    end if;
    -- the lock internal.wait_for_candle_rollup waits for
    if not pg_try_advisory_xact_lock(hashtext('spreadedge.rollup_candles')) then
        return;
    end if;
    select w.built_until into v_watermark from market.rollup_watermarks w where w.rollup = 'candles' for update;
    -- why the test: a window reaching back before any market data (2009) means every tick, and a
    -- window of thousands of years subtracted from the watermark failed with a raw 22008
    if rollup_candles.open_window < v_watermark - timestamptz '2009-01-03 00:00:00+00' then
        v_start := v_watermark - rollup_candles.open_window;
    else
        -- why the oldest candle too: candles loaded from files (an exchange's history) with no
        -- tick before them, or none at all (a database fed with candles only), were never in a
        -- longer candle: a first run started at the oldest tick and returned at once without
        -- one, and the README's remedy, a run with a window reaching back to them, did the same
        -- (a first run has no watermark to reach back from)
        v_start := least((select min(t.traded_at) from market.ticks t), (select min(c.open_time) from market.candles c));
        -- why from the start of that tick's (or candle's) UTC day: each longer candle is built from all the
        -- shorter candles in it, those before v_start too, which earlier runs built; on a first
        -- run none had. A minute loaded from a file (an exchange's history) before the first tick
        -- of its day was left out of that day's 15m, 1h, 4h and 1d candles for good (its 5m
        -- candle never built). From the day's start every candle that holds the first tick is
        -- built from all it holds (the candles loaded on days before it have no built candles)
        if v_start < rollup_candles.until then
            v_start := market.candle_start('1d', v_start);
        end if;
    end if;
    if v_start is null or v_start >= rollup_candles.until then
        return;
    end if;
    v_start := market.candle_start('1m', v_start);
    -- why to the end of the minute of until, and each longer candle from all its shorter ones: a
    -- candle rebuilt is always built from all it holds. Cut at until, a run with an until before
    -- the watermark (a backfill) rebuilt the candles around until from part of their trades (the
    -- day's 1d candle from the 1m candles before until only), and no later run went back to them
    v_end := market.candle_start('1m', rollup_candles.until - interval '1 microsecond') + interval '1 minute';

    -- why lock the candles against loads for the run: a load (market.load_staged_candles) writes
    -- its rows in key order, instrument by instrument, and the rollup interval by interval (and in
    -- its group-by order within one). A load of one instrument's 5m candle and another's 1m
    -- candle, with a rollup of the second's ticks, took the two rows in opposite orders: a
    -- deadlock (40P01) that aborted the rollup or the load's batch. SHARE ROW EXCLUSIVE waits for
    -- the loads in progress and makes later ones wait for the run; readers (indicators, the API)
    -- are not blocked. Taken before any candle row, so the run never holds a row a load waits for
    lock table market.candles in share row exclusive mode;

    -- why trades of one time in order of octet_length(exchange_trade_id), then exchange_trade_id:
    -- trade ids are text, and in text order '10' comes before '9' and '100' before '99'; shorter
    -- first puts numeric ids (without leading zeros) in numeric order, and as the ids of one exchange
    -- share a format, a fixed-width id keeps its text order. The length in bytes, as ids are ASCII:
    -- it costs the rollup 1.5 % (length(), which counts UTF-8 characters, 4 %). The same order as
    -- internal.note_latest_ticks
    insert into market.candles as c (instrument_id, interval, open_time, open, high, low, close, volume,
                                     quote_volume, trade_count)
    select t.instrument_id, '1m', market.candle_start('1m', t.traded_at),
           (array_agg(t.price order by t.traded_at, octet_length(t.exchange_trade_id), t.exchange_trade_id))[1],
           max(t.price), min(t.price),
           (array_agg(t.price order by t.traded_at desc, octet_length(t.exchange_trade_id) desc,
                                       t.exchange_trade_id desc))[1],
           sum(t.quantity), sum(t.price * t.quantity), count(*)
    from market.ticks t
    where t.traded_at >= v_start and t.traded_at < v_end
    group by t.instrument_id, market.candle_start('1m', t.traded_at)
    on conflict (instrument_id, interval, open_time) do update
        set open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
            volume = excluded.volume, quote_volume = excluded.quote_volume,
            trade_count = excluded.trade_count, updated_at = now()
        -- why not a loaded candle: see market.candles.loaded
        where not c.loaded
          and (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count)
              is distinct from (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
                                excluded.quote_volume, excluded.trade_count);
    get diagnostics v_count = row_count;
    candle_interval := '1m';
    candles := v_count;
    return next;

    -- why each from the next shorter interval, not from 1m: a run rebuilt every instrument's 1d
    -- candle from all the day's 1m candles, up to 1,440 rows each (1.7 M for 1,200 instruments)
    -- every minute near the end of a day; from the 4h candles it is 6. Intervals nest (each
    -- length divides the next, all counted from one origin: market.candle_start), the shorter
    -- candles of the range were rebuilt just before, and open, high, low, close and the sums of
    -- candles compose, so a candle is the same as built from its 1m candles.
    foreach v_interval in array enum_range('5m'::market.candle_interval, null) loop
        insert into market.candles as c (instrument_id, interval, open_time, open, high, low, close, volume,
                                         quote_volume, trade_count)
        select m.instrument_id, v_interval, market.candle_start(v_interval, m.open_time),
               (array_agg(m.open order by m.open_time))[1],
               max(m.high), min(m.low),
               (array_agg(m.close order by m.open_time desc))[1],
               sum(m.volume), sum(m.quote_volume), sum(m.trade_count)
        from market.candles m
        where m.interval = v_source
          and m.open_time >= market.candle_start(v_interval, v_start)
          and m.open_time < market.candle_start(v_interval, v_end - interval '1 minute') + market.interval_length(v_interval)
        group by m.instrument_id, market.candle_start(v_interval, m.open_time)
        on conflict (instrument_id, interval, open_time) do update
            set open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                volume = excluded.volume, quote_volume = excluded.quote_volume,
                trade_count = excluded.trade_count, updated_at = now()
            where not c.loaded
              and (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count)
                  is distinct from (excluded.open, excluded.high, excluded.low, excluded.close, excluded.volume,
                                    excluded.quote_volume, excluded.trade_count);
        get diagnostics v_count = row_count;
        candle_interval := v_interval;
        candles := v_count;
        return next;
        v_source := v_interval;
    end loop;

    -- why not past now(): the trades of times still to come are not in the candles yet. An until
    -- ahead of the clock (a local time read as UTC) set the watermark hours ahead, and the next
    -- runs, starting an open window before it, never built the candles of the trades between.
    -- why not past the newest trade built either: trade times are the exchanges', now() is the
    -- server's clock. A run while that clock was days ahead (a mis-set host clock, a VM resumed
    -- before NTP stepped it back) set the watermark days ahead of the trades; once the clock was
    -- set right, the runs built nothing until it passed the watermark, and then started there:
    -- the candles of the trades between were never built. Bounded by the trades, the watermark
    -- follows them whatever the clock says; a run that builds no trade leaves it where it was (the
    -- next run covers the quiet spell too)
    v_newest := (select max(t.traded_at) from market.ticks t where t.traded_at >= v_start and t.traded_at < v_end);
    -- why the newest candle's start when no trade was built: with candles loaded from files and no
    -- ticks the watermark stayed at the first run's start, and every run (each minute) rebuilt
    -- every longer candle from there to now, a longer history each day. Its open time, not its
    -- end: the next run's window still holds it
    if v_newest is null then
        v_newest := (select max(c.open_time) from market.candles c where c.open_time >= v_start and c.open_time < v_end);
    end if;
    insert into market.rollup_watermarks as w (rollup, built_until)
    values ('candles', least(rollup_candles.until, now(), coalesce(v_newest, v_start)))
    on conflict (rollup) do update set built_until = greatest(w.built_until, excluded.built_until), updated_at = now();
end;
$$;
comment on function market.rollup_candles(timestamptz, interval) is
    'Builds 1m candles from ticks and 5m..1d candles each from the next shorter interval, from (watermark - open_window) to until (loaded candles are kept as they are), and moves the watermark to until (at most now() and the newest trade built, or with none the newest candle''s start); returns candles written per interval. Waits for candle loads in progress; loads wait for a run.';
