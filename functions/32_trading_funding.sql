-- spreadedge functions: funding
-- trading.record_funding: a perpetual's funding payment, added to the position's realized PnL and
-- to the hourly and daily PnL rollups. Idempotent on (strategy, instrument, paid_at).

create or replace function trading.record_funding(
    strategy text,
    exchange text,
    symbol   text,
    amount   numeric,
    -- why no time by default: it is the payment's key, and now() made a retry of a call whose
    -- reply was lost (a dropped connection after commit) a second payment
    paid_at  timestamptz default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Record a funding payment (positive received, negative paid, in the quote asset; finite and below
-- 10^100000 in magnitude, else 22S09) and return its id.
-- paid_at, the exchange's funding time, is required (22S09 without it): the same payment recorded
-- again returns the same id; a different amount at the same paid_at raises conflicting_duplicate
-- (23S06).
#variable_conflict use_column
declare
    v_strategy   trading.strategies;
    v_instrument ref.instruments;
    v_existing   trading.funding_payments;
    v_id         bigint;
begin
    perform internal.require_permission('orders:write');
    -- why the lookups after the check: a declare initializer runs before the body, so a user
    -- without the permission who named an unknown (or unseen) strategy or instrument got its lookup's error,
    -- an answer that depends on data the caller may not see, instead of permission_denied
    v_strategy := internal.find_strategy(record_funding.strategy);
    v_instrument := internal.find_instrument(record_funding.exchange, record_funding.symbol);
    -- finite and below 10^100000 (internal.check_amount_size says why)
    perform internal.check_amount_size(record_funding.amount, 'funding amount');
    if record_funding.paid_at is null then
        raise exception 'paid_at is required: the exchange''s funding time of the payment'
            using errcode = '22S09',
                  hint = 'Pass the time the exchange settled the funding; it makes a retried call the same payment.';
    end if;
    perform internal.check_time(record_funding.paid_at, 'paid_at');

    -- why FOR KEY SHARE, as in record_fill: the position's copy of the multiplier must be the
    -- instrument's at commit; a concurrent change of it waits, or this read waits and sees it
    select i.* into v_instrument from ref.instruments i where i.instrument_id = v_instrument.instrument_id
    for key share;
    -- why after the lock: ref.upsert_instrument may change the market type of an instrument
    -- without funding yet; tested before it, a payment waiting on that change was recorded on the
    -- spot instrument it became
    if v_instrument.market_type <> 'perpetual' then
        raise exception 'funding applies to perpetuals only; % on % is a % instrument',
            v_instrument.symbol, record_funding.exchange, v_instrument.market_type
            using errcode = '22S10';
    end if;
    -- why: lock the position first, in the same order as record_fill, so the two never deadlock
    insert into trading.positions (strategy_id, instrument_id, multiplier, quote_asset)
    values (v_strategy.strategy_id, v_instrument.instrument_id, v_instrument.multiplier, v_instrument.quote_asset)
    on conflict do nothing;
    perform 1 from trading.positions p
    where p.strategy_id = v_strategy.strategy_id and p.instrument_id = v_instrument.instrument_id
    for update;

    insert into trading.funding_payments (strategy_id, instrument_id, amount, paid_at)
    values (v_strategy.strategy_id, v_instrument.instrument_id, record_funding.amount, record_funding.paid_at)
    on conflict (strategy_id, instrument_id, paid_at) do nothing
    returning funding_id into v_id;
    if v_id is null then
        select f.* into v_existing
        from trading.funding_payments f
        where f.strategy_id = v_strategy.strategy_id and f.instrument_id = v_instrument.instrument_id
          and f.paid_at = record_funding.paid_at;
        if v_existing.amount = record_funding.amount then
            return v_existing.funding_id;
        end if;
        raise exception 'funding at % for % on % is already recorded as % (got %)',
            record_funding.paid_at, v_instrument.symbol, record_funding.exchange, v_existing.amount, record_funding.amount
            using errcode = '23S06';
    end if;

    update trading.positions p
    set funding = p.funding + record_funding.amount, updated_at = now()
    where p.strategy_id = v_strategy.strategy_id and p.instrument_id = v_instrument.instrument_id;
    perform internal.add_to_rollups(v_strategy.strategy_id, v_instrument.instrument_id, record_funding.paid_at,
                                    0, 0, 0, 0, 0, record_funding.amount, v_instrument.quote_asset);
    return v_id;
end;
$$;
comment on function trading.record_funding(text, text, text, numeric, timestamptz) is
    'Record a perpetual funding payment (+ received, - paid; finite and below 10^100000 in magnitude, else 22S09) into realized PnL; paid_at (the exchange''s funding time) is required, 22S09 without it; idempotent on paid_at. Returns its id.';
