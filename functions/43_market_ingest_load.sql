-- spreadedge functions: market data ingestion, validation and load
-- market.load_staged_quotes|ticks|candles: validate the rows of pg_temp.staged_<kind> (made by
-- market.stage_rows) in one set-based statement, insert the valid ones (a row already stored is
-- skipped: duplicates are not stored twice; a candle not marked loaded is replaced), empty the
-- staging table and report
-- loaded / duplicate / rejected counts with the rejects as a jsonb array of {"line", "reason"}.
-- With p_strict nothing is inserted when any row is rejected. Fields are read without the spaces
-- around them; a row without an exchange or symbol is rejected as missing it, not as unknown, and
-- one whose exchange code is unknown as an unknown exchange, not instrument. The caller's
-- transaction is the batch: a load that is killed leaves nothing behind.
-- A row whose time has no partition is a reject too: the default partition's trigger
-- (functions/63_ops_default_partitions.sql) would otherwise raise 22S09 and abort the whole batch.
-- The partitions' times are read from the catalog once per call, not per row, after the lock the
-- insert takes on the table (ROW EXCLUSIVE on the parent alone), taken first.
-- why first: a partition being detached (an operator archiving a day) holds its parent until the
-- detach commits; read before the load waited for it, the partition's day was still taken as
-- having one, its rows went to the default partition, and its trigger's 22S09 aborted the whole
-- batch. A symbol not listed
-- on its exchange is rejected naming the exchanges that list it (internal.unknown_instrument_reason,
-- computed for those rows alone).

create or replace function internal.partition_ranges(p_table regclass)
    returns setof tstzrange
    stable
    -- why: pg_get_expr shows a bound in the session's DateStyle and TimeZone. ISO shows the offset
    -- as a number; the SQL, German and Postgres styles show an abbreviation, which may read back
    -- as another zone ('IST' of Asia/Kolkata is Israel time): the partitions were then taken to
    -- start 3.5 hours late, and the first hours' rows were rejected as having no partition
    set datestyle = 'ISO, YMD'
    language sql
as $$
    -- The FROM ('…') TO ('…') bounds of each partition of p_table, read from the catalog (the
    -- default partition and any MINVALUE/MAXVALUE bound left out); no row when it has none.
    -- why the catalog, not partman.show_partitions as ops.partition_status reads them: the roles
    -- that ingest have no rights on the partman schema, and the catalog holds the same bounds
    select tstzrange(b[1]::timestamptz, b[2]::timestamptz)
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    cross join lateral regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                    E'^FOR VALUES FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)$') b
    where i.inhparent = p_table
      and b is not null
$$;
comment on function internal.partition_ranges(regclass) is
    'The times each range partition of a table covers (default partition left out), a row each.';

create or replace function internal.partition_times(p_table regclass)
    returns tstzmultirange
    stable
    language sql
as $$
    -- The times the partitions of p_table cover: the union of internal.partition_ranges; empty
    -- when it has none. Gaps, where a partition was dropped, stay gaps.
    select coalesce(range_agg(r), '{}'::tstzmultirange)
    from internal.partition_ranges(p_table) r
$$;
comment on function internal.partition_times(regclass) is
    'The times the range partitions of a table cover (default partition left out), as a multirange; empty when it has none.';

create or replace function internal.partition_times_text(p_times tstzmultirange)
    returns text
    stable
    language sql
as $$
    -- internal.partition_times as a reject reason shows it: each range "from to to" in UTC, or
    -- "none"; e.g. 2026-11-28T00:00:00Z to 2026-12-09T00:00:00Z.
    select coalesce(string_agg(format('%s to %s',
                                      to_char(lower(r) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                                      to_char(upper(r) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
                               ', ' order by r),
                    'none')
    from unnest(p_times) r
$$;
comment on function internal.partition_times_text(tstzmultirange) is
    'The ranges of a multirange of times as UTC text (from to to, comma separated), or none.';

create or replace function internal.unknown_instrument_reason(p_exchange text, p_symbol text)
    returns text
    stable
    language sql
as $$
    -- The reject reason of a row whose symbol is not listed on its (known) exchange, naming the
    -- exchanges it is listed on: unknown instrument BTCUSDT on exchange kraken (listed on binance).
    -- why: a file of one exchange's rows tagged with another's code (or an instrument not yet
    -- listed there) read as a symbol that does not exist, and the operator searched ref.instruments
    -- for it. Called only for rows rejected so (the loaders' CASE reaches it for those alone), so
    -- valid rows pay nothing; the scan of ref.instruments by symbol is of a small table.
    select format('unknown instrument %s on exchange %s', p_symbol, p_exchange)
           || coalesce(' (listed on ' || string_agg(e.code, ', ' order by e.code) || ')', '')
    from ref.instruments i
    join ref.exchanges e on e.exchange_id = i.exchange_id
    where i.symbol = p_symbol
      and e.code <> p_exchange
$$;
comment on function internal.unknown_instrument_reason(text, text) is
    'Reject reason for a symbol not listed on its exchange: unknown instrument SYMBOL on exchange CODE, with the exchanges that list it (listed on ...) when any does.';

create or replace function internal.require_staged(p_kind text)
    returns void
    stable
    language plpgsql
as $$
-- Raises invalid_argument (22S09) unless this transaction has the staging table of p_kind
-- (pg_temp.staged_<kind>, made by market.stage_rows).
-- why: a load called without it (in psql, or in a transaction after the one that staged, as the
-- table is dropped at commit) failed with a bare 42P01 naming pg_temp.staged_<kind>
begin
    if pg_catalog.to_regclass(pg_catalog.format('pg_temp.%I', 'staged_' || p_kind)) is null then
        raise exception 'no % are staged in this transaction', p_kind
            using errcode = '22S09',
                  hint = pg_catalog.format('Call market.stage_rows(''%s''), copy the rows into pg_temp.staged_%s and load them in the same transaction.', p_kind, p_kind);
    end if;
end;
$$;
comment on function internal.require_staged(text) is
    'Raises 22S09 unless this transaction has staged rows of the kind (pg_temp.staged_<kind>, see market.stage_rows).';

create or replace function market.load_staged_quotes(p_strict boolean default false)
    returns table (loaded bigint, duplicates bigint, rejected bigint, rejects jsonb)
    volatile
    language plpgsql
as $$
-- Validate and load the staged quotes: known instrument (exchange code and symbol), parsable and
-- plausible quoted_at that has a partition, positive bid and ask, non-negative sizes, a book that
-- is not crossed.
declare
    v_partitions      tstzmultirange;
    v_partitions_text text;
begin
    perform internal.require_staged('quotes');
    lock table only market.quotes in row exclusive mode;  -- see the file's header
    v_partitions := internal.partition_times('market.quotes');
    v_partitions_text := internal.partition_times_text(v_partitions);
    return query
    -- why materialized: the parsed values are then plain columns, which the checks inline cheaply
    with parsed as materialized (
        select s.line_no, nullif(btrim(s.exchange), '') as exchange, nullif(btrim(s.symbol), '') as symbol,
               e.exchange_id, i.instrument_id,
               s.quoted_at as quoted_at_text, internal.parse_time(s.quoted_at) as quoted_at,
               s.received_at as received_at_text, internal.parse_time(s.received_at) as received_at,
               s.bid as bid_text, internal.parse_decimal(s.bid) as bid,
               s.bid_size as bid_size_text, internal.parse_decimal(s.bid_size) as bid_size,
               s.ask as ask_text, internal.parse_decimal(s.ask) as ask,
               s.ask_size as ask_size_text, internal.parse_decimal(s.ask_size) as ask_size
        from pg_temp.staged_quotes s
        left join ref.exchanges e on e.code = btrim(s.exchange)
        left join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = btrim(s.symbol)
    ),
    checked as materialized (
        select p.*,
               coalesce(
                   case when p.exchange is null then 'exchange is missing'
                        when p.symbol is null then 'symbol is missing'
                        -- why apart: an exchange code misspelt or in capitals (Binance) was
                        -- reported as an unknown instrument, sending the operator to ref.instruments
                        when p.exchange_id is null then format('unknown exchange %s', p.exchange)
                        when p.instrument_id is null
                        then internal.unknown_instrument_reason(p.exchange, p.symbol) end,
                   internal.time_problem('quoted_at', p.quoted_at_text, p.quoted_at),
                   case when not p.quoted_at <@ v_partitions
                        then format('quoted_at %s is outside the partitions of market.quotes (%s)',
                                    p.quoted_at_text, v_partitions_text) end,
                   case when p.received_at_text is not null and btrim(p.received_at_text) <> ''
                        then internal.time_problem('received_at', p.received_at_text, p.received_at) end,
                   internal.number_problem('bid', p.bid_text, p.bid, true),
                   internal.number_problem('bid_size', p.bid_size_text, p.bid_size, false),
                   internal.number_problem('ask', p.ask_text, p.ask, true),
                   internal.number_problem('ask_size', p.ask_size_text, p.ask_size, false),
                   case when p.bid > p.ask then format('crossed book: bid %s above ask %s', p.bid, p.ask) end
               ) as reason
        from parsed p
    ),
    inserted as (
        insert into market.quotes (instrument_id, quoted_at, bid, bid_size, ask, ask_size, received_at)
        select c.instrument_id, c.quoted_at, c.bid, c.bid_size, c.ask, c.ask_size, coalesce(c.received_at, now())
        from checked c
        where c.reason is null
          and not (p_strict and exists (select from checked r where r.reason is not null))
        -- why line_no last: of two rows of one key in a batch the first in the file is stored
        -- (the second is a duplicate); without it which one was stored was arbitrary
        order by c.instrument_id, c.quoted_at, c.line_no
        on conflict do nothing
        returning 1
    )
    select (select count(*) from inserted),
           case when p_strict and exists (select from checked r where r.reason is not null) then 0
                else (select count(*) from checked c where c.reason is null) - (select count(*) from inserted) end,
           (select count(*) from checked c where c.reason is not null),
           coalesce((select jsonb_agg(jsonb_build_object('line', c.line_no, 'reason', c.reason) order by c.line_no)
                     from checked c where c.reason is not null), '[]'::jsonb);
    truncate pg_temp.staged_quotes;
end;
$$;
comment on function market.load_staged_quotes(boolean) is
    'Validates the staged quotes (22S09 when none are staged in this transaction), inserts the valid ones (duplicates skipped; none when strict and any is rejected) and returns loaded, duplicates, rejected and the rejects.';

create or replace function market.load_staged_ticks(p_strict boolean default false)
    returns table (loaded bigint, duplicates bigint, rejected bigint, rejects jsonb)
    volatile
    language plpgsql
as $$
-- Validate and load the staged ticks: known instrument, parsable and plausible traded_at that has a
-- partition, a trade id of at most 128 characters, positive price and quantity, side buy, sell or empty.
declare
    v_partitions      tstzmultirange;
    v_partitions_text text;
begin
    perform internal.require_staged('ticks');
    lock table only market.ticks in row exclusive mode;  -- see the file's header
    v_partitions := internal.partition_times('market.ticks');
    v_partitions_text := internal.partition_times_text(v_partitions);
    return query
    -- why materialized: the parsed values are then plain columns, which the checks inline cheaply
    with parsed as materialized (
        select s.line_no, nullif(btrim(s.exchange), '') as exchange, nullif(btrim(s.symbol), '') as symbol,
               e.exchange_id, i.instrument_id,
               s.traded_at as traded_at_text, internal.parse_time(s.traded_at) as traded_at,
               s.received_at as received_at_text, internal.parse_time(s.received_at) as received_at,
               nullif(btrim(s.exchange_trade_id), '') as exchange_trade_id,
               s.price as price_text, internal.parse_decimal(s.price) as price,
               s.quantity as quantity_text, internal.parse_decimal(s.quantity) as quantity,
               nullif(lower(btrim(s.side)), '') as side
        from pg_temp.staged_ticks s
        left join ref.exchanges e on e.code = btrim(s.exchange)
        left join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = btrim(s.symbol)
    ),
    checked as materialized (
        select p.*,
               coalesce(
                   case when p.exchange is null then 'exchange is missing'
                        when p.symbol is null then 'symbol is missing'
                        -- why apart: an exchange code misspelt or in capitals (Binance) was
                        -- reported as an unknown instrument, sending the operator to ref.instruments
                        when p.exchange_id is null then format('unknown exchange %s', p.exchange)
                        when p.instrument_id is null
                        then internal.unknown_instrument_reason(p.exchange, p.symbol) end,
                   internal.time_problem('traded_at', p.traded_at_text, p.traded_at),
                   case when not p.traded_at <@ v_partitions
                        then format('traded_at %s is outside the partitions of market.ticks (%s)',
                                    p.traded_at_text, v_partitions_text) end,
                   case when p.received_at_text is not null and btrim(p.received_at_text) <> ''
                        then internal.time_problem('received_at', p.received_at_text, p.received_at) end,
                   -- why at most 128 characters, as trading.record_fill: the id is a key of the
                   -- primary key's btree, whose entries hold about 2.7 kB; a longer id (a free-text
                   -- column read as the trade id) failed the insert with 54000 and the whole batch
                   case when p.exchange_trade_id is null then 'exchange_trade_id is missing'
                        when length(p.exchange_trade_id) > 128
                        then format('exchange_trade_id is too long: %s… (%s characters; a trade id has at most 128)',
                                    left(p.exchange_trade_id, 20), length(p.exchange_trade_id)) end,
                   internal.number_problem('price', p.price_text, p.price, true),
                   internal.number_problem('quantity', p.quantity_text, p.quantity, true),
                   case when p.side not in ('buy', 'sell') then format('side is not buy or sell: %s', p.side) end
               ) as reason
        from parsed p
    ),
    inserted as (
        insert into market.ticks (instrument_id, traded_at, exchange_trade_id, price, quantity, side, received_at)
        select c.instrument_id, c.traded_at, c.exchange_trade_id, c.price, c.quantity,
               c.side::trading.order_side, coalesce(c.received_at, now())
        from checked c
        where c.reason is null
          and not (p_strict and exists (select from checked r where r.reason is not null))
        -- why the whole primary key: two loads of the same trades of one time (overlapping files
        -- loaded at once) inserted them in file order, and each waited for a trade the other had
        -- inserted first: a deadlock (40P01) that aborted one batch. In key order they wait, not
        -- deadlock. The trade id is compared only between trades of one instrument and time
        order by c.instrument_id, c.traded_at, c.exchange_trade_id, c.line_no  -- line_no: see the quotes
        on conflict do nothing
        returning 1
    )
    select (select count(*) from inserted),
           case when p_strict and exists (select from checked r where r.reason is not null) then 0
                else (select count(*) from checked c where c.reason is null) - (select count(*) from inserted) end,
           (select count(*) from checked c where c.reason is not null),
           coalesce((select jsonb_agg(jsonb_build_object('line', c.line_no, 'reason', c.reason) order by c.line_no)
                     from checked c where c.reason is not null), '[]'::jsonb);
    truncate pg_temp.staged_ticks;
end;
$$;
comment on function market.load_staged_ticks(boolean) is
    'Validates the staged ticks (22S09 when none are staged in this transaction), inserts the valid ones (duplicates skipped; none when strict and any is rejected) and returns loaded, duplicates, rejected and the rejects.';

create or replace function market.load_staged_candles(p_strict boolean default false)
    returns table (loaded bigint, duplicates bigint, rejected bigint, rejects jsonb)
    volatile
    language plpgsql
as $$
-- Validate and load the staged candles: known instrument, a known interval, an open_time that has a
-- partition and is aligned to the interval, positive prices with low <= open, close <= high,
-- non-negative volumes, and a trade count of at most the candle's share of a day of 2147483647
-- trades. Loaded candles that have closed (open_time + interval at or before now()) are marked
-- loaded: the rollups keep them. A loaded candle replaces one of its
-- key not marked loaded (built by the rollups, or loaded while still open); one marked loaded is
-- kept (the row is a duplicate).
declare
    v_partitions      tstzmultirange;
    v_partitions_text text;
begin
    perform internal.require_staged('candles');
    lock table only market.candles in row exclusive mode;  -- see the file's header
    v_partitions := internal.partition_times('market.candles');
    v_partitions_text := internal.partition_times_text(v_partitions);
    return query
    -- why materialized: the parsed values are then plain columns, which the checks inline cheaply
    with parsed as materialized (
        select s.line_no, nullif(btrim(s.exchange), '') as exchange, nullif(btrim(s.symbol), '') as symbol,
               e.exchange_id, i.instrument_id,
               s.interval as interval_text,
               case when btrim(s.interval) = any (enum_range(null::market.candle_interval)::text[])
                    then btrim(s.interval)::market.candle_interval end as interval,
               s.open_time as open_time_text, internal.parse_time(s.open_time) as open_time,
               s.open as open_text, internal.parse_decimal(s.open) as open,
               s.high as high_text, internal.parse_decimal(s.high) as high,
               s.low as low_text, internal.parse_decimal(s.low) as low,
               s.close as close_text, internal.parse_decimal(s.close) as close,
               s.volume as volume_text, internal.parse_decimal(s.volume) as volume,
               s.quote_volume as quote_volume_text, internal.parse_decimal(s.quote_volume) as quote_volume,
               s.trade_count as trade_count_text,
               -- why a number of any form that is whole (50.0, 5e1), read in the rare rows that are not
               -- plain digits: a tool that writes the count as a float (a pandas column with a gap) or
               -- in exponent form had every candle rejected as "not a whole number: 50.0"
               case when btrim(s.trade_count) ~ '^[0-9]{1,9}$' then btrim(s.trade_count)::integer
                    else (select n::integer from internal.parse_decimal(s.trade_count) n
                          where n >= 0 and n <= 2147483647 and n = trunc(n)) end as trade_count
        from pg_temp.staged_candles s
        left join ref.exchanges e on e.code = btrim(s.exchange)
        left join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = btrim(s.symbol)
    ),
    checked as materialized (
        select p.*,
               coalesce(
                   case when p.exchange is null then 'exchange is missing'
                        when p.symbol is null then 'symbol is missing'
                        -- why apart: an exchange code misspelt or in capitals (Binance) was
                        -- reported as an unknown instrument, sending the operator to ref.instruments
                        when p.exchange_id is null then format('unknown exchange %s', p.exchange)
                        when p.instrument_id is null
                        then internal.unknown_instrument_reason(p.exchange, p.symbol) end,
                   case when p.interval is null
                        then format('interval is not one of 1m, 5m, 15m, 1h, 4h, 1d: %s', p.interval_text) end,
                   internal.time_problem('open_time', p.open_time_text, p.open_time),
                   case when not p.open_time <@ v_partitions
                        then format('open_time %s is outside the partitions of market.candles (%s)',
                                    p.open_time_text, v_partitions_text) end,
                   case when p.open_time <> market.candle_start(p.interval, p.open_time)
                        then format('open_time %s is not the start of a %s candle', p.open_time_text, p.interval) end,
                   internal.number_problem('open', p.open_text, p.open, true),
                   internal.number_problem('high', p.high_text, p.high, true),
                   internal.number_problem('low', p.low_text, p.low, true),
                   internal.number_problem('close', p.close_text, p.close, true),
                   internal.number_problem('volume', p.volume_text, p.volume, false),
                   internal.number_problem('quote_volume', p.quote_volume_text, p.quote_volume, false),
                   case when p.trade_count is null
                        then format('trade_count is not a whole number: %s', coalesce(p.trade_count_text, 'missing'))
                        -- why at most a day's share (market.max_candle_trades): two 1m candles of
                        -- 2,000,000,000 trades (a volume read as the count) failed every later
                        -- rollup with a raw 22003, and no candle of any instrument was built again
                        when p.trade_count > market.max_candle_trades(p.interval)
                        then format('trade_count %s is more than a %s candle holds (at most %s: the candles of a day add up to at most 2147483647 trades)',
                                    p.trade_count, p.interval, market.max_candle_trades(p.interval)) end,
                   case when p.high < greatest(p.open, p.close, p.low) or p.low > least(p.open, p.close)
                        then format('high %s and low %s do not bound open %s and close %s', p.high, p.low, p.open, p.close) end
               ) as reason
        from parsed p
    ),
    inserted as (
        insert into market.candles as k (instrument_id, interval, open_time, open, high, low, close, volume,
                                         quote_volume, trade_count, loaded)
        -- why distinct on: of two rows of one key in a batch the first in the file is stored (the
        -- second is a duplicate), and one statement may not update a row twice (21000)
        select distinct on (c.instrument_id, c.interval, c.open_time)
               c.instrument_id, c.interval, c.open_time, c.open, c.high, c.low, c.close, c.volume,
               c.quote_volume, c.trade_count,
               -- why only a closed candle is marked loaded: one still open (an exchange's current
               -- candle, the last of a download) holds part of its trades; marked, it was never
               -- rewritten, by the rollups nor by a later load of the closed candle
               c.open_time + market.interval_length(c.interval) <= now()
        from checked c
        where c.reason is null
          and not (p_strict and exists (select from checked r where r.reason is not null))
        order by c.instrument_id, c.interval, c.open_time, c.line_no  -- line_no: see the quotes
        -- why replace a candle not marked loaded: the rollups built it from the ticks spreadedge
        -- received (a feed started at noon, say), or it was loaded while still open; kept, the
        -- exchange's own, complete candle was skipped as a duplicate and the partial one stayed.
        -- A loaded candle is the exchange's own: loaded again, it is a duplicate
        on conflict (instrument_id, interval, open_time) do update
            set open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
                volume = excluded.volume, quote_volume = excluded.quote_volume,
                trade_count = excluded.trade_count, loaded = excluded.loaded, updated_at = now()
            where not k.loaded
        returning 1
    )
    select (select count(*) from inserted),
           case when p_strict and exists (select from checked r where r.reason is not null) then 0
                else (select count(*) from checked c where c.reason is null) - (select count(*) from inserted) end,
           (select count(*) from checked c where c.reason is not null),
           coalesce((select jsonb_agg(jsonb_build_object('line', c.line_no, 'reason', c.reason) order by c.line_no)
                     from checked c where c.reason is not null), '[]'::jsonb);
    truncate pg_temp.staged_candles;
end;
$$;
comment on function market.load_staged_candles(boolean) is
    'Validates the staged candles (22S09 when none are staged in this transaction), inserts the valid ones, marked loaded once closed, replacing a candle not marked loaded (built by the rollups or loaded while open; duplicates of a loaded candle skipped; none when strict and any is rejected) and returns loaded, duplicates, rejected and the rejects.';
