-- spreadedge functions: ref
-- Lookups of exchanges and instruments by the names callers use, and ref.upsert_instrument.

create or replace function internal.exchange_id(p_code text)
    returns smallint
    stable
    language plpgsql
as $$
-- The id of the exchange with this code; unknown codes raise unknown_exchange (23S01).
declare
    v_id smallint;
begin
    select e.exchange_id into v_id from ref.exchanges e where e.code = p_code;
    if v_id is null then
        -- why here, after the lookup: a null code finds nothing, and testing it first would cost
        -- every lookup that succeeds
        if p_code is null then
            raise exception 'exchange must be given, got null' using errcode = '22S09';
        end if;
        raise exception 'exchange "%" does not exist', p_code
            using errcode = '23S01',
                  hint = 'Known exchanges are listed in ref.exchanges (binance, coinbase, kraken, bybit, gateio, okx).';
    end if;
    return v_id;
end;
$$;
comment on function internal.exchange_id(text) is 'Exchange id of an exchange code; raises 23S01 unknown_exchange, or 22S09 for a null code.';

create or replace function internal.refuse_unknown_instrument(p_exchange text, p_symbol text)
    returns void
    immutable
    language plpgsql
as $$
-- Raises unknown_instrument (23S02) for a symbol no instrument of the exchange has, or
-- invalid_argument (22S09) for a null symbol; called by the lookups once they found nothing (why
-- not test the null first: it would cost every lookup that succeeds).
begin
    if p_symbol is null then
        raise exception 'symbol must be given, got null' using errcode = '22S09';
    end if;
    raise exception 'instrument "%" does not exist on exchange "%"', p_symbol, p_exchange
        using errcode = '23S02',
              hint = 'Create it with ref.upsert_instrument.';
end;
$$;
comment on function internal.refuse_unknown_instrument(text, text) is
    'Raises 23S02 unknown_instrument for (exchange, symbol), or 22S09 for a null symbol; the lookups call it when they find nothing.';

create or replace function internal.find_instrument(p_exchange text, p_symbol text)
    returns ref.instruments
    stable
    language plpgsql
as $$
-- The instrument with this symbol on this exchange; raises unknown_exchange or unknown_instrument.
declare
    v_instrument ref.instruments;
begin
    select i.* into v_instrument
    from ref.instruments i
    where i.exchange_id = internal.exchange_id(p_exchange) and i.symbol = p_symbol;
    if v_instrument.instrument_id is null then
        perform internal.refuse_unknown_instrument(p_exchange, p_symbol);
    end if;
    return v_instrument;
end;
$$;
comment on function internal.find_instrument(text, text) is
    'The instrument row for (exchange code, symbol); raises 23S01 unknown_exchange or 23S02 unknown_instrument (22S09 for a null one).';

create or replace function internal.lock_instrument(p_exchange text, p_symbol text)
    returns ref.instruments
    volatile
    language plpgsql
as $$
-- internal.find_instrument, with the row locked FOR KEY SHARE until the transaction ends: the
-- rules read (tick, lot, minimum notional, multiplier, market type) are those in force when it
-- commits, since ref.upsert_instrument locks the row FOR UPDATE before it changes it.
declare
    v_instrument ref.instruments;
begin
    select i.* into v_instrument
    from ref.instruments i
    where i.exchange_id = internal.exchange_id(p_exchange) and i.symbol = p_symbol
    for key share;
    if v_instrument.instrument_id is null then
        perform internal.refuse_unknown_instrument(p_exchange, p_symbol);
    end if;
    return v_instrument;
end;
$$;
comment on function internal.lock_instrument(text, text) is
    'The instrument row for (exchange code, symbol), locked FOR KEY SHARE; raises 23S01 unknown_exchange or 23S02 unknown_instrument (22S09 for a null one).';

create or replace function ref.upsert_instrument(
    exchange     text,
    symbol       text,
    base_asset   text,
    quote_asset  text,
    market_type  text,
    tick_size    numeric,
    lot_size     numeric,
    min_notional numeric default null,
    maker_fee    numeric default null,
    taker_fee    numeric default null,
    multiplier   numeric default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Create or update the instrument (exchange, symbol). A rule not given (min_notional, a fee or
-- the multiplier null) keeps its listed value, fees only under the same market type; a new symbol
-- gets a minimum notional of 0, the exchange's fee rates for the market type and a multiplier of
-- 1, and may not differ only in case from a symbol the exchange lists (22S09). Tick size, lot
-- size and minimum notional are below 10^15, tick and lot size at least 10^-30 (22S09). An
-- update lists the instrument again (is_active true) if it was delisted; one that changes
-- nothing writes nothing and takes no lock. Returns the instrument id.
#variable_conflict use_column
declare
    v_exchange_id smallint := internal.exchange_id(upsert_instrument.exchange);
    v_market      ref.exchange_markets;
    v_id          integer;
    v_listed      ref.instruments;
    v_multiplier  numeric;
    v_maker_fee   numeric;
    v_taker_fee   numeric;
    v_locked      boolean := false;
begin
    perform internal.require_permission('instruments:write');
    -- why the lengths: a symbol and the asset codes are index keys, and a btree entry over about
    -- 2.7 kB fails with an internal error (54000)
    if upsert_instrument.symbol is null or btrim(upsert_instrument.symbol) = ''
       or length(upsert_instrument.symbol) > 128 then
        raise exception 'symbol must be 1 to 128 characters, got %',
            coalesce(length(upsert_instrument.symbol) || ' characters', 'null')
            using errcode = '22S09';
    end if;
    -- why: callers look instruments up by the exact symbol, so one with surrounding white space
    -- or a control character (a tab, a line break) could never be found by the symbol people
    -- read; the table's check caught only surrounding spaces, with a bare check violation (23514)
    if upsert_instrument.symbol ~ E'^\\s|\\s$|[[:cntrl:]]' then
        raise exception 'symbol "%" has surrounding white space or a control character', upsert_instrument.symbol
            using errcode = '22S09',
                  hint = 'Give the exchange''s symbol as it lists it, e.g. BTCUSDT or BTC-USDT-SWAP.';
    end if;
    -- why: a no-break or other Unicode space that \s misses (U+00A0, U+202F) or an invisible
    -- character (zero-width space, joiner, BOM, bidirectional mark, variation selector) looks like
    -- nothing, so BTCUSDT followed by one was a second BTCUSDT that no caller could find; the
    -- characters are those trading.create_strategy refuses in a name
    if internal.has_hidden_characters(upsert_instrument.symbol) then
        raise exception 'symbol "%" holds an invisible character or a space other than U+0020', upsert_instrument.symbol
            using errcode = '22S09',
                  hint = 'Give the exchange''s symbol as it lists it, e.g. BTCUSDT or BTC-USDT-SWAP.';
    end if;
    if upsert_instrument.base_asset is null or upsert_instrument.base_asset !~ '^[A-Za-z0-9]{1,32}$'
       or upsert_instrument.quote_asset is null or upsert_instrument.quote_asset !~ '^[A-Za-z0-9]{1,32}$' then
        -- why quoted only when given: a null printed as "<NULL>", a code no caller typed
        raise exception 'base and quote assets must be alphanumeric codes of at most 32 characters, got % and %',
            coalesce('"' || left(upsert_instrument.base_asset, 40) || '"', 'null'),
            coalesce('"' || left(upsert_instrument.quote_asset, 40) || '"', 'null')
            using errcode = '22S09';
    end if;
    -- why collate "C" in every upper() of an asset code (and lower() of a symbol): the codes are
    -- ASCII, and in a Turkish default collation (tr_TR, ICU tr) upper('link') is 'LİNK' (dotted İ),
    -- which the table's check refused, and lower('LINKUSDT') is 'lınkusdt', so linkusdt next to
    -- LINKUSDT was a second instrument; "C" folds ASCII letters alone, on a server of any locale
    if upper(upsert_instrument.base_asset collate "C") = upper(upsert_instrument.quote_asset collate "C") then
        raise exception 'base and quote assets must differ, got % for both', upper(upsert_instrument.base_asset collate "C")
            using errcode = '22S09';
    end if;
    if upsert_instrument.market_type is null
       or upsert_instrument.market_type not in (select unnest(enum_range(null::ref.market_type))::text) then
        raise exception 'market type % is not one of spot, margin, futures, perpetual, option',
            coalesce('"' || upsert_instrument.market_type || '"', 'null')
            using errcode = '22S09';
    end if;
    select m.* into v_market
    from ref.exchange_markets m
    where m.exchange_id = v_exchange_id and m.market_type = upsert_instrument.market_type::ref.market_type;
    if v_market.exchange_id is null then
        raise exception 'exchange "%" does not offer % markets', upsert_instrument.exchange, upsert_instrument.market_type
            using errcode = '22S09',
                  hint = 'See ref.exchange_markets for the market types each exchange offers.';
    end if;
    if tick_size is null or not (tick_size > 0 and tick_size < 'Infinity') then
        raise exception 'tick size must be positive and finite, got %', internal.number_shown(tick_size) using errcode = '22S09';
    end if;
    if lot_size is null or not (lot_size > 0 and lot_size < 'Infinity') then
        raise exception 'lot size must be positive and finite, got %', internal.number_shown(lot_size) using errcode = '22S09';
    end if;
    if not (coalesce(min_notional, 0) >= 0 and coalesce(min_notional, 0) < 'Infinity') then
        raise exception 'minimum notional must be zero or positive and finite, got %', internal.number_shown(min_notional)
            using errcode = '22S09';
    end if;
    -- why below 10^15: a tick, lot or minimum notional of 1e300 was listed, and an order's
    -- price, quantity or notional had then to be at least as large; with a tick and a lot of
    -- 10^70000 the smallest notional passed numeric's 10^131072, and no order could be placed.
    -- 10^15 is far beyond any exchange's tick, lot or minimum order value (even in a currency of
    -- small unit, such as IDR), and below it the smallest order (one lot at one tick) is below
    -- 10^30 x the multiplier
    if tick_size >= 1e15 then
        raise exception 'tick size must be below 10^15, got %', internal.number_shown(tick_size)
            using errcode = '22S09', hint = 'Give the exchange''s tick size in units of the quote asset.';
    end if;
    if lot_size >= 1e15 then
        raise exception 'lot size must be below 10^15, got %', internal.number_shown(lot_size)
            using errcode = '22S09', hint = 'Give the exchange''s lot size in units of the base asset (contracts for a derivative).';
    end if;
    if min_notional >= 1e15 then
        raise exception 'minimum notional must be below 10^15, got %', internal.number_shown(min_notional)
            using errcode = '22S09', hint = 'Give the exchange''s minimum order value in units of the quote asset.';
    end if;
    -- why at least 10^-30: a tick or lot of 1e-300 was listed, and an order's price or quantity
    -- then had to carry 300 decimals into its trades, positions and rollups (numeric keeps up to
    -- 16,383). No exchange's tick or lot comes near 10^-30 (token amounts go to 10^-18)
    if tick_size < 1e-30 then
        raise exception 'tick size must be at least 10^-30, got %', internal.number_shown(tick_size)
            using errcode = '22S09', hint = 'Give the exchange''s tick size in units of the quote asset.';
    end if;
    if lot_size < 1e-30 then
        raise exception 'lot size must be at least 10^-30, got %', internal.number_shown(lot_size)
            using errcode = '22S09', hint = 'Give the exchange''s lot size in units of the base asset (contracts for a derivative).';
    end if;
    if multiplier is not null and not (multiplier > 0 and multiplier < 'Infinity') then
        raise exception 'multiplier must be positive and finite, got %', internal.number_shown(multiplier) using errcode = '22S09';
    end if;
    -- why: a spot or margin quantity is in units of the base asset, and a base-asset fee changes it
    -- unit for unit; with another multiplier the position would take the fee off in contracts
    if upsert_instrument.market_type in ('spot', 'margin') and multiplier <> 1 then
        raise exception 'multiplier of a % instrument must be 1, got %', upsert_instrument.market_type,
            internal.number_shown(multiplier)
            using errcode = '22S09',
                  hint = 'Only futures, perpetual and option contracts have a contract multiplier.';
    end if;
    -- why one rate at a time: a null rate keeps the listed one, and "got maker <NULL> and taker 5"
    -- read as if the maker rate were missing
    if not (coalesce(maker_fee, 0) > -1 and coalesce(maker_fee, 0) < 1) then
        raise exception 'maker fee rate must be a fraction between -1 and 1, got %', internal.number_shown(maker_fee)
            using errcode = '22S09',
                  hint = 'Rates are fractions of notional: 0.001 is 10 bps.';
    end if;
    if not (coalesce(taker_fee, 0) > -1 and coalesce(taker_fee, 0) < 1) then
        raise exception 'taker fee rate must be a fraction between -1 and 1, got %', internal.number_shown(taker_fee)
            using errcode = '22S09',
                  hint = 'Rates are fractions of notional: 0.001 is 10 bps.';
    end if;

    -- why a loop: a new symbol another transaction lists first is then updated as listed, with
    -- the rules not given here kept from its listing rather than reset to a new one's
    <<listing>>
    loop
        select i.* into v_listed
        from ref.instruments i
        where i.exchange_id = v_exchange_id and i.symbol = upsert_instrument.symbol;
        exit listing when found;
        -- why: callers find an instrument by its exact symbol, so btcusdt next to BTCUSDT was a
        -- second instrument of the same market, with its own positions, outside the risk limits
        -- and kill switch scoped to BTCUSDT. why the lock: two listings of one symbol in two
        -- cases at once would each miss the other; the lock makes them take turns, and the check
        -- (a statement after it) then sees the one that committed first
        perform pg_advisory_xact_lock('ref.instruments'::regclass::oid::integer,
                                      hashtext(v_exchange_id || ':' || lower(upsert_instrument.symbol collate "C")));
        select i.* into v_listed
        from ref.instruments i
        where i.exchange_id = v_exchange_id and lower(i.symbol collate "C") = lower(upsert_instrument.symbol collate "C")
          and i.symbol <> upsert_instrument.symbol
        order by i.instrument_id
        limit 1;
        if found then
            raise exception 'symbol "%" differs only in case from "%", listed on %', upsert_instrument.symbol,
                v_listed.symbol, upsert_instrument.exchange
                using errcode = '22S09',
                      hint = format('Symbols are matched exactly: give %s as the exchange lists it.', v_listed.symbol);
        end if;
        insert into ref.instruments as i
            (exchange_id, symbol, base_asset, quote_asset, market_type, tick_size, lot_size,
             min_notional, maker_fee, taker_fee, multiplier)
        values
            (v_exchange_id, upsert_instrument.symbol, upper(upsert_instrument.base_asset collate "C"),
             upper(upsert_instrument.quote_asset collate "C"), upsert_instrument.market_type::ref.market_type,
             upsert_instrument.tick_size, upsert_instrument.lot_size, coalesce(upsert_instrument.min_notional, 0),
             coalesce(upsert_instrument.maker_fee, v_market.maker_fee),
             coalesce(upsert_instrument.taker_fee, v_market.taker_fee),
             coalesce(upsert_instrument.multiplier, 1))
        on conflict (exchange_id, symbol) do nothing
        returning i.instrument_id into v_id;
        if v_id is not null then
            return v_id;
        end if;
    end loop;

    -- why twice, first on the row as read and then on the row locked: an upsert that changes
    -- nothing (a sync job's run over every listing) returns after the first pass without a lock.
    -- Held FOR UPDATE to its commit, it stopped every placement and fill of the instrument, and a
    -- sync job's transaction of many listings deadlocked (40P01) with a spread trade placing its
    -- legs in the other order.
    <<rules>>
    loop
        -- why keep what is not given: a re-upsert that changes only the tick size reset a
        -- perpetual's multiplier to 1 (the PnL of its open positions x 100 at 0.01), its minimum
        -- notional to 0 and negotiated fee rates to the exchange's; the fee rates of another market
        -- type are its own
        v_multiplier := case
            when upsert_instrument.multiplier is not null then upsert_instrument.multiplier
            when upsert_instrument.market_type in ('spot', 'margin') then 1
            else v_listed.multiplier
        end;
        if v_listed.market_type::text = upsert_instrument.market_type then
            v_maker_fee := coalesce(upsert_instrument.maker_fee, v_listed.maker_fee);
            v_taker_fee := coalesce(upsert_instrument.taker_fee, v_listed.taker_fee);
        else
            v_maker_fee := coalesce(upsert_instrument.maker_fee, v_market.maker_fee);
            v_taker_fee := coalesce(upsert_instrument.taker_fee, v_market.taker_fee);
        end if;
        exit rules when v_locked;
        if (v_listed.base_asset, v_listed.quote_asset, v_listed.market_type::text, v_listed.tick_size,
            v_listed.lot_size, v_listed.min_notional, v_listed.maker_fee, v_listed.taker_fee,
            v_listed.multiplier, v_listed.is_active)
           is not distinct from
           (upper(upsert_instrument.base_asset collate "C"), upper(upsert_instrument.quote_asset collate "C"),
            upsert_instrument.market_type, upsert_instrument.tick_size, upsert_instrument.lot_size,
            coalesce(upsert_instrument.min_notional, v_listed.min_notional), v_maker_fee, v_taker_fee,
            v_multiplier, true) then
            return v_listed.instrument_id;
        end if;
        -- why FOR UPDATE: a placement or fill holds the row FOR KEY SHARE until it commits, so
        -- this waits for those in flight and new ones wait for it; the checks below then see them
        -- all, and the rules are worked out again from the row as it is now
        select i.* into v_listed
        from ref.instruments i
        where i.instrument_id = v_listed.instrument_id
        for update;
        v_locked := true;
    end loop;

    -- An instrument's orders and trades were validated, and its positions and PnL computed, as
    -- what it was listed as: a spot BTC/USDT pair takes a fee in BTC off the quantity received, a
    -- perpetual does not. Once it has any, its assets and market type are fixed; a listing that
    -- changes them is a new instrument (a new symbol).
    if (v_listed.base_asset, v_listed.quote_asset, v_listed.market_type::text)
       is distinct from (upper(upsert_instrument.base_asset collate "C"), upper(upsert_instrument.quote_asset collate "C"),
                         upsert_instrument.market_type)
       -- why funding payments too: they exist for perpetuals only, and a position can hold
       -- nothing but funding (recorded before its fills)
       and (exists (select from trading.orders o where o.instrument_id = v_listed.instrument_id)
            or exists (select from trading.trades t where t.instrument_id = v_listed.instrument_id)
            or exists (select from trading.funding_payments f where f.instrument_id = v_listed.instrument_id)) then
        raise exception '% on % has orders, trades or funding payments: its assets and market type stay %/% %',
            upsert_instrument.symbol,
            upsert_instrument.exchange, v_listed.base_asset, v_listed.quote_asset, v_listed.market_type
            using errcode = '55S07',
                  detail = format('Asked for %s/%s %s.', upper(upsert_instrument.base_asset collate "C"),
                                  upper(upsert_instrument.quote_asset collate "C"), upsert_instrument.market_type),
                  hint = 'List the new contract under a symbol of its own.';
    end if;

    update ref.instruments i
    set base_asset = upper(upsert_instrument.base_asset collate "C"),
        quote_asset = upper(upsert_instrument.quote_asset collate "C"),
        market_type = upsert_instrument.market_type::ref.market_type,
        tick_size = upsert_instrument.tick_size,
        lot_size = upsert_instrument.lot_size,
        min_notional = coalesce(upsert_instrument.min_notional, v_listed.min_notional),
        maker_fee = v_maker_fee,
        taker_fee = v_taker_fee,
        multiplier = v_multiplier,
        is_active = true,
        updated_at = now()
    where i.instrument_id = v_listed.instrument_id
      -- why: an unchanged re-upsert must not write a row version (nor an audit row)
      and (i.base_asset, i.quote_asset, i.market_type::text, i.tick_size, i.lot_size, i.min_notional,
           i.maker_fee, i.taker_fee, i.multiplier, i.is_active)
          is distinct from
          (upper(upsert_instrument.base_asset collate "C"), upper(upsert_instrument.quote_asset collate "C"),
           upsert_instrument.market_type, upsert_instrument.tick_size, upsert_instrument.lot_size,
           coalesce(upsert_instrument.min_notional, v_listed.min_notional), v_maker_fee, v_taker_fee,
           v_multiplier, true);
    return v_listed.instrument_id;
end;
$$;
comment on function ref.upsert_instrument(text, text, text, text, text, numeric, numeric, numeric, numeric, numeric, numeric) is
    'Create or update an instrument (exchange, symbol) with its trading rules. A rule not given (min_notional, a fee or the multiplier null) keeps its listed value (fees: under the same market type); a new symbol gets minimum notional 0, the exchange''s fee rates for its market type and multiplier 1. A symbol has no surrounding white space, control or invisible character and no space but U+0020, a new one does not differ only in case from one the exchange lists, base and quote differ, a spot or margin multiplier is 1, the tick size, lot size and minimum notional are below 10^15 and the tick and lot size at least 10^-30 (22S09). An update lists a delisted instrument again (is_active true); one that changes nothing writes nothing and takes no lock. Its assets and market type are fixed once it has orders, trades or funding payments (55S07). Returns its id.';
