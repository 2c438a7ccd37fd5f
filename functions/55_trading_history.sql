-- spreadedge functions: history pages (the REST API's list endpoints, also usable from psql)
-- Each page is one call that returns json: {"items": [...], "next_cursor": "..." | null}. Items
-- come newest first; a cursor is the keyset position of a page's last row, so inserts made while a
-- client pages through never make it skip or repeat a row, and names its list (orders, trades or
-- snapshots), so the page function of another list refuses it. Decimals are exact JSON strings
-- without trailing zeros (no float rounding in any client) and times are ISO 8601 in UTC. The functions
-- are security invoker: a session scoped to a user (spreadedge.user_id, set by
-- auth.validate_session) that is not a superuser sees only what row-level security lets it see.

create or replace function internal.iso_utc(p_at timestamptz)
    returns text
    stable
    language sql
as $$
    -- ISO 8601 in UTC with microseconds, e.g. 2026-01-02T03:04:05.000006Z, whatever the TimeZone.
    select to_char(p_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
comment on function internal.iso_utc(timestamptz) is 'A time as ISO 8601 text in UTC (…Z), independent of the session TimeZone.';

-- The cursors carry the list that issued them (see internal.page_cursor); the two-argument
-- forms, which did not, would let a trade cursor page through orders from a wrong position. The forms
-- without p_filters carried no filters: a cursor of a filtered page, passed back with other
-- filters, paged them from a position they never had.
drop function if exists internal.page_cursor(timestamptz, bigint);
drop function if exists internal.read_page_cursor(text);
drop function if exists internal.page_cursor(text, timestamptz, bigint);
drop function if exists internal.read_page_cursor(text, text);

create or replace function internal.page_cursor(
    p_list    text,
    p_at      timestamptz,
    p_id      bigint,
    p_filters text default null
)
    returns text
    stable
    language sql
as $$
    -- Opaque keyset cursor: base64url, unpadded, of "<list>:<microseconds since 1970 UTC>:<id>.",
    -- or "<list>:<microseconds>:<id>:<filters>." for a filtered page, <filters> being
    -- p_filters (internal.page_filters: 8 hex digits of the md5 of the json array of the page's
    -- filters), null when no filter is given (an unfiltered page's cursor has no filters part).
    -- why the list (orders, trades or snapshots): a cursor of one list is a position in another's
    -- keyset too, and passed to the wrong endpoint it would page from the wrong row;
    -- internal.read_page_cursor refuses it.
    -- why the filters: a cursor of ?status=open passed back with ?status=filled would page the
    -- filled orders from the open one's position, leaving out every filled order newer than it;
    -- internal.read_page_cursor refuses a cursor whose filters are not the page's
    -- why the final period: a cursor cut short still decoded to a position ("…:2586" cut to
    -- "…:258"), which silently skipped the rows tied in time between the two ids; cutting even one
    -- character of the base64 loses the period (or leaves bad base64), so internal.read_page_cursor
    -- refuses it, at no cost to the page
    select rtrim(translate(encode(convert_to(
               p_list || ':' || (extract(epoch from p_at) * 1000000)::bigint::text || ':' || p_id::text
               || coalesce(':' || p_filters, '') || '.',
               'UTF8'), 'base64'), E'+/\n', '-_'), '=')
$$;
comment on function internal.page_cursor(text, timestamptz, bigint, text) is
    'The opaque next_cursor of a page of a list (orders, trades or snapshots) whose last row has this time and id, and of the page''s filters (8 hex digits; null: none).';

create or replace function internal.page_filters(variadic p_filters text[])
    returns text
    stable
    language sql
as $$
    -- The filters part of a page's cursors (internal.page_cursor): 8 hex digits of the md5 of the
    -- json array of the page's filters in the page function's order (times as internal.iso_utc
    -- text); null when no filter is given.
    select case when num_nonnulls(variadic p_filters) > 0
                then left(md5(json_build_array(variadic p_filters)::text), 8) end
$$;
comment on function internal.page_filters(text[]) is
    'The filters part of a page''s cursors: 8 hex digits of the md5 of the json array of the filters; null when none is given.';

create or replace function internal.read_page_cursor(
    p_list    text,
    p_cursor  text,
    p_filters text default null,
    out at    timestamptz,
    out id    bigint
)
    stable
    language plpgsql
as $$
-- The (time, id) a cursor from internal.page_cursor for the list p_list and the filters p_filters
-- (see internal.page_cursor) stands for; both null for a null cursor. Anything else, a cursor of
-- another list, of other filters or one cut short (it lacks the final period) too, raises
-- invalid_argument (22S09) naming the cursor parameter.
declare
    v_text  text;
    v_parts text[];
begin
    if p_cursor is null then
        return;
    end if;
    if p_cursor ~ '^[A-Za-z0-9_-]{4,96}$' then
        begin
            v_text := convert_from(decode(rpad(translate(p_cursor, '-_', '+/'),
                                               (length(p_cursor) + 3) / 4 * 4, '='), 'base64'), 'UTF8');
        exception
            -- why only these: bad base64 and bytes that are not UTF-8 mean "not our cursor"
            when invalid_parameter_value or character_not_in_repertoire then
                v_text := null;
        end;
    end if;
    v_parts := regexp_match(v_text, E'^([a-z]+):(-?[0-9]{1,17}):([0-9]{1,18})(?::([0-9a-f]{8}))?\\.$');
    if v_parts is null then
        raise exception 'cursor "%" is not a cursor this API returned', left(p_cursor, 80)
            using errcode = '22S09', column = 'cursor',
                  hint = 'Pass the next_cursor of the previous page unchanged, or no cursor for the first page.';
    end if;
    if v_parts[1] <> p_list then
        raise exception 'cursor "%" is a cursor of the % history, not of the % history',
                        left(p_cursor, 80), v_parts[1], p_list
            using errcode = '22S09', column = 'cursor',
                  hint = 'Pass a next_cursor back only to the list that returned it, or no cursor for the first page.';
    end if;
    if v_parts[4] is distinct from p_filters then
        raise exception 'cursor "%" was returned for other filters than these', left(p_cursor, 80)
            using errcode = '22S09', column = 'cursor',
                  hint = 'Pass a next_cursor back with the filters of the page that returned it (the limit may change), or no cursor for the first page.';
    end if;
    at := timestamptz 'epoch' + v_parts[2]::bigint * interval '1 microsecond';
    id := v_parts[3]::bigint;
end;
$$;
comment on function internal.read_page_cursor(text, text, text) is
    'Decodes a page cursor of a list (orders, trades or snapshots) and filters (see internal.page_cursor) into its (time, id); raises 22S09 for anything else: a cursor of another list, of other filters or one cut short too.';

create or replace function internal.check_time_range(p_start_date timestamptz, p_end_date timestamptz)
    returns void
    immutable
    language plpgsql
as $$
-- A start (inclusive) before the end (exclusive) when both are given; otherwise invalid_argument
-- (22S09) naming end_date.
begin
    if p_start_date >= p_end_date then
        raise exception 'start_date % is not before end_date %', p_start_date, p_end_date
            using errcode = '22S09', column = 'end_date';
    end if;
end;
$$;
comment on function internal.check_time_range(timestamptz, timestamptz) is
    'Checks that a history time range starts before it ends; raises 22S09 naming end_date.';

create or replace function internal.check_page_request(
    p_page_size  integer,
    p_start_date timestamptz,
    p_end_date   timestamptz
)
    returns void
    immutable
    language plpgsql
as $$
-- Page size 1 to 1000 and a valid time range (internal.check_time_range); otherwise
-- invalid_argument (22S09) naming the parameter.
begin
    if p_page_size is null or p_page_size < 1 or p_page_size > 1000 then
        raise exception 'page_size must be between 1 and 1000, got %', coalesce(p_page_size::text, 'null')
            using errcode = '22S09', column = 'page_size';
    end if;
    perform internal.check_time_range(p_start_date, p_end_date);
end;
$$;
comment on function internal.check_page_request(integer, timestamptz, timestamptz) is
    'Checks a history page''s size (1-1000) and time range; raises 22S09 naming the parameter.';

create or replace function internal.check_enum_value(p_value text, p_values text[], p_parameter text)
    returns void
    immutable
    language plpgsql
as $$
-- Null or one of p_values; otherwise invalid_argument (22S09) naming the parameter and the values.
begin
    if p_value is not null and not p_value = any (p_values) then
        raise exception '% must be one of %, got "%"', p_parameter, array_to_string(p_values, ', '), left(p_value, 80)
            using errcode = '22S09', column = p_parameter;
    end if;
end;
$$;
comment on function internal.check_enum_value(text, text[], text) is
    'Raises 22S09 naming the parameter unless the value is null or one of the allowed values.';

create or replace function internal.instrument_ids_matching(p_symbol text, p_exchange text)
    returns integer[]
    stable
    -- why plpgsql: a SQL function whose body has a subquery is not inlined, so every page parsed
    -- and planned it again (0.3 M instructions), and its one "is null or" filter read every
    -- instrument (2 M with 1,200 instruments); PL/pgSQL keeps a plan per branch for the session,
    -- each reading an index: (exchange_id, symbol), or (symbol) for a symbol alone
    language plpgsql
as $$
-- Instruments matching a symbol and/or exchange code; null when neither is given (no filter).
begin
    if p_symbol is null and p_exchange is null then
        return null;
    elsif p_exchange is null then
        return array(select i.instrument_id from ref.instruments i where i.symbol = p_symbol);
    elsif p_symbol is null then
        return array(select i.instrument_id
                     from ref.exchanges e
                     join ref.instruments i on i.exchange_id = e.exchange_id
                     where e.code = p_exchange);
    end if;
    return array(select i.instrument_id
                 from ref.exchanges e
                 join ref.instruments i on i.exchange_id = e.exchange_id and i.symbol = p_symbol
                 where e.code = p_exchange);
end;
$$;
comment on function internal.instrument_ids_matching(text, text) is
    'Ids of the instruments with this symbol and/or exchange; null when both are null.';

create or replace function internal.strategy_ids_named(p_strategy text)
    returns integer[]
    stable
    language sql
as $$
    -- Strategies the caller can see (row-level security applies), all or the one named.
    select array(select s.strategy_id from trading.strategies s
                 where p_strategy is null or s.name = p_strategy order by s.strategy_id)
$$;
comment on function internal.strategy_ids_named(text) is
    'Ids of the strategies the caller can see (all, or the one named); row-level security applies.';

create or replace function internal.page_drivers(
    p_instrument_ids integer[],
    p_strategy_ids   integer[],
    out strategy_ids   integer[],
    out instrument_ids integer[]
)
    stable
    language plpgsql
as $$
-- The drivers a history page merges (internal.order_page_rows, internal.trade_page_rows), as two
-- parallel arrays: (strategy, instrument) pairs when both lists are given, else strategies (every
-- one when neither is) or instruments (a null strategy). The strategies are cut down to
-- internal.visible_strategy_ids() here, once, which is what row-level security would do in every
-- statement. Both null when the page has nothing to read.
declare
    v_visible    integer[] := internal.visible_strategy_ids();
    v_strategies integer[] := p_strategy_ids;
begin
    if v_visible is not null then
        v_strategies := array(select s.strategy_id
                              from unnest(coalesce(p_strategy_ids, v_visible)) as s(strategy_id)
                              where s.strategy_id = any (v_visible));
    end if;
    select array_agg(d.strategy_id order by d.strategy_id, d.instrument_id),
           array_agg(d.instrument_id order by d.strategy_id, d.instrument_id)
    into strategy_ids, instrument_ids
    from (select s.strategy_id, null::integer as instrument_id
          from trading.strategies s
          where p_instrument_ids is null and v_strategies is null
          union all
          select s.strategy_id, null
          from unnest(v_strategies) as s(strategy_id)
          where p_instrument_ids is null
          union all
          select null, i.instrument_id
          from unnest(p_instrument_ids) as i(instrument_id)
          where v_strategies is null
          union all
          select s.strategy_id, i.instrument_id
          from unnest(v_strategies) as s(strategy_id)
          cross join unnest(p_instrument_ids) as i(instrument_id)) d;
end;
$$;
comment on function internal.page_drivers(integer[], integer[]) is
    'The (strategy, instrument) drivers a history page merges, strategies cut to the visible ones; both null when there is nothing to read.';
