-- spreadedge functions: market data ingestion, parsing and staging
-- `spreadedge ingest` copies file rows as text into a temporary staging table made by
-- market.stage_rows, then market.load_staged_quotes|ticks|candles validate them set-based and move
-- the valid ones into the real table. The parsers here return null for text they cannot read, so
-- one bad row becomes a reject with a reason instead of an error that stops the batch.

create or replace function internal.parse_decimal(p_text text)
    returns numeric
    immutable
    language sql
as $$
    -- A plain decimal number (optional sign, digits, point, exponent) of at most 100 characters,
    -- else null. NaN and Infinity are not numbers a market sends, so they are null too.
    -- why at most 100 characters: numeric holds 131,072 digits before the point and 16,383 after;
    -- beyond that the cast raises 22003 and aborts the whole batch (a field of 0. and 16,400
    -- zeros did). 100 characters and an exponent of 3 digits stay within it, so the cast cannot
    -- fail. why a length test, not bounded quantifiers ([0-9]{1,100}) in the expression: those
    -- make PostgreSQL's regular expression about 10 times slower (11 instead of 1 µs a value);
    -- octet_length reads the text's header only.
    select case when octet_length(p_text) <= 100
                     and btrim(p_text) ~ E'^[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][+-]?[0-9]{1,3})?$'
                then btrim(p_text)::numeric end
$$;
comment on function internal.parse_decimal(text) is
    'Parses a plain decimal number of at most 100 characters (no NaN or Infinity); null when the text is not one.';

create or replace function internal.parse_time_checked(p_text text)
    returns timestamptz
    stable
    language plpgsql
as $$
-- An ISO 8601 time (date, T or space, time, optional fraction of up to 9 digits, cut to
-- microseconds, Z or +hh[:mm] offset; no offset means UTC; t and z in lower case too, as RFC 3339
-- allows) or integer epoch milliseconds, else null. Every field is range-checked before the
-- cast, so the cast cannot fail. Stable, not immutable: text to timestamptz is a stable cast
-- (the explicit offset makes the result independent of the TimeZone setting).
declare
    v_text text := btrim(p_text);
    m      text[];
begin
    m := regexp_match(v_text,
        E'^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\\.[0-9]{1,9})?([Zz]|[+-](?:0[0-9]|1[0-4])(?::?[0-5][0-9])?)?$');
    if m is null then
        if v_text ~ '^[0-9]{13}$' then
            return timestamptz '1970-01-01 00:00:00+00' + interval '1 millisecond' * v_text::bigint;
        end if;
        return null;
    end if;
    -- why year >= 1: there is no year 0000 in timestamptz, and its cast would fail the whole batch
    if m[1]::int >= 1 and m[2]::int between 1 and 12
       and m[3]::int between 1 and extract(day from make_date(m[1]::int, m[2]::int, 1) + interval '1 month - 1 day')::int
       and m[4]::int < 24 and m[5]::int < 60 and m[6]::int < 60 then
        -- why left(m[7], 7): the cast rounds a fraction finer than microseconds, and a trade of
        -- 12:00:59.9999996 was stored at 12:01:00, in a minute (a candle, at 23:59:59 a day and
        -- its partition) it did not happen in; cut to the point and 6 digits, it stays in its own
        return (m[1] || '-' || m[2] || '-' || m[3] || ' ' || m[4] || ':' || m[5] || ':' || m[6]
                || coalesce(left(m[7], 7), '') || case when m[8] is null or upper(m[8]) = 'Z' then '+00' else m[8] end)::timestamptz;
    end if;
    return null;
end;
$$;
comment on function internal.parse_time_checked(text) is
    'Parses an ISO 8601 time (no offset = UTC; a fraction finer than microseconds cut, not rounded) or epoch milliseconds field by field; null when the text is not a valid time.';

create or replace function internal.parse_time(p_text text)
    returns timestamptz
    stable
    language sql
as $$
    -- internal.parse_time_checked, with fast paths for the common cases: thirteen digits (epoch
    -- milliseconds, what Binance, Bybit and OKX send) are converted at once, and a canonical ISO
    -- 8601 time in years 1000-9999 on a day 01-28 (a day every month has) with at most 6 digits
    -- of a second (the cast would round a finer fraction), whose cast cannot fail, is cast at once.
    -- why: this runs for every loaded row; as one expression it is inlined into the loader's query
    -- why translate, not a regular expression, for the digits: 0.85 instead of 3.6 µs a value,
    -- and an ISO time pays only for the length test
    select case
        when length(p_text) = 13 and translate(p_text, '0123456789', '') = ''
        then timestamptz '1970-01-01 00:00:00+00' + interval '1 millisecond' * p_text::bigint
        when p_text ~ E'^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?$'
        then (case when p_text ~ '(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' then p_text else p_text || 'Z' end)::timestamptz
        else internal.parse_time_checked(p_text)
    end
$$;
comment on function internal.parse_time(text) is
    'Parses an ISO 8601 time (no offset = UTC; a fraction finer than microseconds cut, not rounded) or epoch milliseconds; null when the text is not a valid time.';

create or replace function internal.time_problem(p_what text, p_text text, p_time timestamptz)
    returns text
    stable
    language sql
as $$
    -- Why a parsed time cannot be stored (null when it can): unparsable, or outside the times
    -- internal.check_time accepts (before 2009-01-03 or more than 24 hours ahead, a day of
    -- UTC's clock whatever the session TimeZone).
    select case
        when p_text is null or btrim(p_text) = '' then format('%s is missing', p_what)
        when p_time is null then format('%s is not a time: %s', p_what, p_text)
        when p_time < timestamptz '2009-01-03 00:00:00+00' or p_time > now() + interval '24 hours'
            then format('%s is out of range: %s', p_what, p_text)
    end
$$;
comment on function internal.time_problem(text, text, timestamptz) is
    'Reject reason for a staged time (missing, unparsable or out of range); null when it is fine.';

create or replace function internal.number_problem(p_what text, p_text text, p_value numeric, p_min_exclusive boolean)
    returns text
    -- why stable: format() is; declared immutable, PostgreSQL would not inline it, and every
    -- loaded number paid for a SQL function call (a fifth of a tick load, a third of a quote load)
    stable
    language sql
as $$
    -- Why a parsed number cannot be stored (null when it can): missing, too long (over the 100
    -- characters internal.parse_decimal reads; quoted by its first 20), not a number, or not
    -- positive (p_min_exclusive) / negative (otherwise).
    select case
        when p_text is null or btrim(p_text) = '' then format('%s is missing', p_what)
        when p_value is null then
            -- why characters: the reason counts characters, and 51 two-byte ones (102 bytes) were
            -- "too long: (51 characters; a number has at most 100)"; no digit is two bytes, so such
            -- a field is not a number
            case when length(p_text) > 100
                 then format('%s is too long: %s… (%s characters; a number has at most 100)',
                             p_what, left(p_text, 20), length(p_text))
                 else format('%s is not a number: %s', p_what, p_text) end
        when p_min_exclusive and p_value <= 0 then format('%s must be positive: %s', p_what, p_text)
        when p_value < 0 then format('%s must not be negative: %s', p_what, p_text)
    end
$$;
comment on function internal.number_problem(text, text, numeric, boolean) is
    'Reject reason for a staged number (missing, too long, not a number, not positive or negative); null when it is fine.';

create or replace function market.stage_rows(p_kind text)
    returns text[]
    volatile
    language plpgsql
as $$
-- Create (or empty) this transaction's staging table for p_kind (quotes, ticks or candles):
-- pg_temp.staged_<kind>, every column text plus line_no, dropped at commit. Returns the columns a
-- loader copies into, line_no first.
declare
    v_columns text[] := case p_kind
        when 'quotes' then array['line_no', 'exchange', 'symbol', 'quoted_at', 'bid', 'bid_size', 'ask',
                                 'ask_size', 'received_at']
        when 'ticks' then array['line_no', 'exchange', 'symbol', 'traded_at', 'exchange_trade_id', 'price',
                                'quantity', 'side', 'received_at']
        when 'candles' then array['line_no', 'exchange', 'symbol', 'interval', 'open_time', 'open', 'high',
                                  'low', 'close', 'volume', 'quote_volume', 'trade_count']
    end;
begin
    if v_columns is null then
        raise exception 'kind % is not quotes, ticks or candles', coalesce('"' || p_kind || '"', 'null')
            using errcode = '22S09';
    end if;
    if to_regclass(format('pg_temp.%I', 'staged_' || p_kind)) is null then
        execute format('create temporary table %I (line_no bigint not null, %s) on commit drop',
                       'staged_' || p_kind,
                       (select string_agg(format('%I text', c), ', ') from unnest(v_columns[2:]) c));
    else
        execute format('truncate pg_temp.%I', 'staged_' || p_kind);
    end if;
    return v_columns;
end;
$$;
comment on function market.stage_rows(text) is
    'Creates or empties the transaction''s text staging table pg_temp.staged_<kind> for quotes, ticks or candles; returns its columns.';
