-- spreadedge functions: argument checks (schema internal)
-- Argument checks shared by the API functions, raising project SQLSTATEs (ops.error_codes).

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
            message = format('%s must be positive and finite, got %s', p_what, coalesce(p_value::text, 'null'));
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
            message = format('%s must be a finite number, got %s', p_what, coalesce(p_value::text, 'null'));
    end if;
    return p_value;
end;
$$;
comment on function internal.check_finite(numeric, text) is
    'Returns the value if it is a finite number, else raises 22S09 invalid_argument naming the argument.';

create or replace function internal.check_time(p_value timestamptz, p_what text)
    returns timestamptz
    stable
    language plpgsql
as $$
-- Returns p_value when it is a real time no more than a day ahead of now; otherwise raises
-- invalid_argument. why: trading facts never happen in the future, and a typo in a year would
-- otherwise land silently in a default partition.
begin
    if p_value is null or not isfinite(p_value) or p_value > now() + interval '1 day'
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
    'Returns the time if between the genesis block (2009-01-03) and one day ahead, else raises 22S09.';
