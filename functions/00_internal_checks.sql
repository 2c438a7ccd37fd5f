-- spreadedge functions: argument checks (schema internal)
-- Argument checks shared by the API functions, raising project SQLSTATEs (ops.error_codes).

create or replace function internal.number_shown(p_value numeric)
    returns text
    immutable
    language sql
as $$
    -- A number as an error message shows it: as written when that is at most 40 characters, else
    -- in scientific notation with four significant digits (1.000e+131071); 'null' for null.
    -- why: a tick size of -1e131071 was refused with all 131,072 of its digits in the message
    select case when p_value is null then 'null'
                when octet_length(p_value::text) <= 40 then p_value::text
                else btrim(to_char(p_value, '9.999EEEE')) end
$$;
comment on function internal.number_shown(numeric) is
    'A number for an error message: as written up to 40 characters, else like 1.000e+131071; null as ''null''.';

create or replace function internal.has_hidden_characters(p_text text)
    returns boolean
    immutable
    language sql
as $$
    -- True when p_text holds a character that shows as nothing or as a space but is not U+0020:
    -- Unicode's Default_Ignorable_Code_Points (zero-width spaces and joiners, bidirectional marks,
    -- soft hyphen, variation selectors, BOM, tags, Hangul fillers), the Braille blank and every
    -- other Unicode space (no-break, ideographic, line separator ...).
    -- why one list: a strategy name, an instrument symbol and an API key label are each refused
    -- when they hold one, so that two of them never read alike
    select p_text ~ E'[\\u00a0\\u00ad\\u034f\\u061c\\u115f\\u1160\\u1680\\u17b4\\u17b5\\u180b-\\u180f\\u2000-\\u200f\\u2028-\\u202f\\u205f-\\u206f\\u2800\\u3000\\u3164\\ufe00-\\ufe0f\\ufeff\\uffa0\\ufff0-\\ufffb\\U0001bca0-\\U0001bca3\\U0001d173-\\U0001d17a\\U000e0000-\\U000e0fff]'
$$;
comment on function internal.has_hidden_characters(text) is
    'True when the text holds an invisible character or a space other than U+0020 (names that would read like another).';

create or replace function internal.check_positive(p_value numeric, p_what text, p_errcode text)
    returns numeric
    immutable
    language plpgsql
as $$
-- Returns p_value when it is positive and finite; otherwise raises p_errcode naming p_what.
-- why explicit: NaN compares greater than every number in PostgreSQL, so "> 0" alone lets it in.
begin
    if p_value is null or not (p_value > 0 and p_value < 'Infinity') then
        raise exception using
            errcode = p_errcode,
            message = format('%s must be positive and finite, got %s', p_what, internal.number_shown(p_value));
    end if;
    return p_value;
end;
$$;
comment on function internal.check_positive(numeric, text, text) is
    'Returns the value if positive and finite, else raises the given SQLSTATE naming the argument.';

create or replace function internal.check_finite(p_value numeric, p_what text)
    returns numeric
    immutable
    language plpgsql
as $$
-- Returns p_value when it is a finite number (negative allowed); otherwise raises invalid_argument.
begin
    if p_value is null or not (p_value > '-Infinity' and p_value < 'Infinity') then
        raise exception using
            errcode = '22S09',
            message = format('%s must be a finite number, got %s', p_what, internal.number_shown(p_value));
    end if;
    return p_value;
end;
$$;
comment on function internal.check_finite(numeric, text) is
    'Returns the value if it is a finite number, else raises 22S09 invalid_argument naming the argument.';

create or replace function internal.check_amount_size(p_value numeric, p_what text)
    returns numeric
    immutable
    language plpgsql
as $$
-- Returns p_value when it is a finite number below 10^100000 in magnitude (a fill's fee or its
-- value in the quote asset, a funding payment); otherwise raises invalid_argument (22S09) naming
-- p_what.
-- why a bound: numeric ends at 10^131072, and a fee or payment near it (9e131071 is finite) was
-- recorded; the position's next one then failed with a bare numeric overflow (22003) when added
-- to fees_paid or funding, and pnl_summary and portfolio snapshots, which sum them, failed with it
-- for good. Below 10^100000, sums of up to 10^30000 of them fit (as metric values, 22S14)
begin
    perform internal.check_finite(p_value, p_what);
    if abs(p_value) >= 1e100000 then
        raise exception '% must be below 10^100000 in magnitude, got %', p_what, btrim(to_char(p_value, '9.999EEEE'))
            using errcode = '22S09',
                  hint = 'Check the amount: it is a sum of money in its currency.';
    end if;
    return p_value;
end;
$$;
comment on function internal.check_amount_size(numeric, text) is
    'Returns an amount (a fee, its quote value, a funding payment) if finite and below 10^100000 in magnitude, else raises 22S09 invalid_argument naming it.';

create or replace function internal.check_time(p_value timestamptz, p_what text)
    returns timestamptz
    stable
    language plpgsql
as $$
-- Returns p_value when it is a real time no more than a day ahead of now; otherwise raises
-- invalid_argument. why: trading facts never happen in the future, and a typo in a year would
-- otherwise land silently in a default partition.
-- why 24 hours, not '1 day': a day added in the session's TimeZone is 25 hours on the eve of a
-- fall-back (New York), and a time 24.5 hours ahead was accepted there and refused in UTC (the
-- history pages and the latest-fill read count on 24 hours)
begin
    if p_value is null or not isfinite(p_value) or p_value > now() + interval '24 hours'
       or p_value < timestamptz '2009-01-03 00:00:00+00' then
        raise exception using
            errcode = '22S09',
            message = format('%s must be a time between 2009-01-03 and one day from now, got %s',
                             p_what, coalesce(p_value::text, 'null'));
    end if;
    return p_value;
end;
$$;
comment on function internal.check_time(timestamptz, text) is
    'Returns the time if between the genesis block (2009-01-03) and 24 hours ahead (in any session TimeZone), else raises 22S09.';

create or replace function internal.stamped_ahead_of_clock(p_value timestamptz)
    returns boolean
    volatile
    language sql
as $$
    -- True when p_value, a time this server wrote from its own clock (now() of a transaction), is
    -- more than a minute later than that clock now reads: the clock has stepped back since (an NTP
    -- correction of a clock that ran ahead, a VM resumed from a snapshot). How long ago p_value
    -- really was is then unknown, so what counts from it (a session's idle timeout and lifetime, a
    -- lockout, a failed-login window) must not be taken to last the whole step more.
    -- why clock_timestamp, not now(): a transaction open for a while reads times that later
    -- transactions wrote (a session's slide), which are later than its now() but never later than
    -- its clock. why a minute: a step of less lengthens nothing by more than that
    select p_value > clock_timestamp() + interval '1 minute'
$$;
comment on function internal.stamped_ahead_of_clock(timestamptz) is
    'True when a time the server wrote is over a minute later than its clock now reads (the clock stepped back since).';

create or replace function internal.interval_has_negative_part(p_value interval)
    returns boolean
    immutable
    language sql
as $$
    -- Whether an interval's months, days or time of day is negative ('1 mon -29 days',
    -- '1 day -3 hours'): such an interval compares as its total (1 day) but is subtracted part by
    -- part, and then spans something else, or nothing (15 March - 1 month + 29 days is 16 March).
    select extract(year from p_value) * 12 + extract(month from p_value) < 0
           or extract(day from p_value) < 0
           or p_value - date_trunc('day', p_value) < interval '0'
$$;
comment on function internal.interval_has_negative_part(interval) is
    'Whether an interval has a negative months, days or time part (it then spans other than it compares as).';

create or replace function internal.check_age(p_value interval, p_what text, p_hint text)
    returns interval
    stable
    language plpgsql
as $$
-- Returns p_value, an age to go back by from now() (a cleanup's older_than, a health check's
-- limit), when it is a positive interval with no negative part and now() - p_value is a time
-- PostgreSQL stores; otherwise raises invalid_argument (22S09) naming p_what, with p_hint.
-- why no negative part: see internal.interval_has_negative_part ('1 mon -29 days' subtracted from
-- 1 March is 2 March, a time in the future); why the subtraction: '1000000 years' raised a bare
-- 22008 "timestamp out of range" where it is used
begin
    if p_value is null or p_value <= interval '0' or internal.interval_has_negative_part(p_value) then
        raise exception '% must be a positive interval with no negative part, got %', p_what,
            coalesce(p_value::text, 'null')
            using errcode = '22S09', hint = p_hint;
    end if;
    perform now() - p_value;
    return p_value;
exception
    when datetime_field_overflow then
        raise exception '% % reaches back before the earliest time PostgreSQL stores', p_what, p_value
            using errcode = '22S09', hint = p_hint;
end;
$$;
comment on function internal.check_age(interval, text, text) is
    'Returns an age if it is a positive interval with no negative part that now() can go back by, else raises 22S09 naming it.';

create or replace function internal.require_read_committed(p_what text, p_hint text)
    returns void
    stable
    language plpgsql
as $$
-- Raises invalid_argument (22S09), "<p_what> must run in a READ COMMITTED transaction, not <level>"
-- with p_hint, unless the transaction is READ COMMITTED (READ UNCOMMITTED is READ COMMITTED in
-- PostgreSQL). For work that takes turns through a lock: a REPEATABLE READ or SERIALIZABLE snapshot
-- is taken before the lock, so the one that waited does not see what the other committed
-- (monitor.evaluate_alert_rules, the max_open_orders count of internal.risk_breach,
-- auth.store_api_key and auth.rotate_master_key).
begin
    if pg_catalog.current_setting('transaction_isolation') not in ('read committed', 'read uncommitted') then
        raise exception '% must run in a READ COMMITTED transaction, not %',
            p_what, pg_catalog.upper(pg_catalog.current_setting('transaction_isolation') collate "C")
            using errcode = '22S09', hint = p_hint;
    end if;
end;
$$;
comment on function internal.require_read_committed(text, text) is
    'Raises 22S09 naming what must run in a READ COMMITTED transaction (with a hint) unless the transaction is: for work that takes turns through a lock.';
