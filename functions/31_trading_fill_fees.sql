-- spreadedge functions: a fill's fee, known after the fill
-- trading.record_fill_fee: sets the fee of a fill recorded without one (fee 0) and applies it where
-- record_fill applies a fee: the trade, the position's fees_paid (and so its realized PnL) and the
-- hourly and daily PnL rollups of the fill's hour and day. audit.refuse_trade_change keeps every
-- other change of a trade refused.
-- why: exchanges often report a fill before its fee (Coinbase's websocket "match" carries none, its
-- REST /fills does, later; other venues send the commission in a later message or only over
-- REST). The fill is recorded at once with fee 0, and record_fill with the same exchange trade id
-- and the real fee is a redelivery that disagrees (23S06): the fee was never recorded, and realized
-- PnL, fees_paid, the rollups and pnl_summary overstated PnL by it for good.
-- why a function of its own, not record_fill accepting a redelivery whose only difference is a
-- fee where the stored one is 0: a redelivery returns the stored trade and writes nothing, and
-- one that disagrees (another source's fee for a fill of a genuine 0 fee, a maker promotion's)
-- must surface, not change PnL; setting a fee is a deliberate correction, named in \df and in
-- the audit log, that record_fill's idempotency contract does not stretch to.

create or replace function audit.refuse_trade_change()
    returns trigger
    volatile
    language plpgsql
as $$
-- BEFORE UPDATE/DELETE row trigger of trading.trades (cloned to every partition): refuses as
-- audit.refuse_change does (55S02), except an UPDATE that gives a fill recorded without a fee
-- (fee 0) its fee, changing nothing but fee, fee_currency and fee_quote (trading.record_fill_fee,
-- which applies the fee to the position and the rollups in the same transaction).
-- why the rule here, not a flag the function sets: the rule is the table's, whoever writes it; a
-- setting could be set by any session of the owner
begin
    if tg_op = 'UPDATE' and old.fee = 0 and old.fee_quote = 0 and new.fee <> 0
       -- why realized_pnl too: it is generated from fee_quote (and not yet computed in NEW here)
       and to_jsonb(new) - '{fee,fee_currency,fee_quote,realized_pnl}'::text[]
           = to_jsonb(old) - '{fee,fee_currency,fee_quote,realized_pnl}'::text[] then
        return new;
    end if;
    raise exception '%.% is append-only: % is not allowed', tg_table_schema, tg_table_name, tg_op
        using errcode = '55S02',
              hint = 'Trades are immutable facts: only the fee of a fill recorded without one may be set, '
                     'with trading.record_fill_fee; they leave only when their partition passes the retention period.';
end;
$$;
comment on function audit.refuse_trade_change() is
    'Refuses UPDATE and DELETE of trades (55S02), but for giving a fill recorded without a fee its fee (fee, fee_currency and fee_quote only: trading.record_fill_fee).';

create or replace function trading.record_fill_fee(
    order_id          bigint,
    exchange_trade_id text,
    fee               numeric,
    fee_currency      text default null,
    fee_quote         numeric default null
)
    returns bigint
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Set the fee of a fill of order_id recorded without one (fee 0) and return its trade id: the
-- trade's fee, fee_currency and fee_quote, the position's fees_paid and the hourly and daily PnL
-- rollups of the fill's hour and day change by the fee's value in the quote asset, in the
-- caller's transaction. The fee is read as record_fill reads it (fee_currency defaults to the
-- quote asset; fee_quote values a third currency or a derivative's base asset, else the market
-- price as the strategy's owner sees it now; a negative fee is a rebate). The fee the trade has
-- (also 0 for 0) returns the trade id and writes nothing; another fee once one is set is 23S06;
-- a trade the order does not have (or an order unknown, out of scope or removed by cleanup) is
-- 23S04; a fee in the base asset of a spot or margin instrument is 22S09 (it changes the quantity
-- the fill added to the position, which later fills were applied to).
#variable_conflict use_column
declare
    v_fee_ccy    text := upper(record_fill_fee.fee_currency collate "C");
    v_order      trading.orders;
    v_trade      trading.trades;
    v_instrument ref.instruments;
    v_fee_quote  numeric;
    v_base_fee   numeric;
begin
    perform internal.require_permission('orders:write');
    -- the arguments as record_fill checks them (22S09)
    if record_fill_fee.exchange_trade_id is null or record_fill_fee.exchange_trade_id = ''
       or length(record_fill_fee.exchange_trade_id) > 128 then
        raise exception 'exchange_trade_id must be 1 to 128 characters, got %',
            coalesce(length(record_fill_fee.exchange_trade_id)::text, 'null') using errcode = '22S09';
    end if;
    perform internal.check_amount_size(record_fill_fee.fee, 'fee');
    if v_fee_ccy is not null and v_fee_ccy !~ '^[A-Z0-9]{1,32}$' then
        raise exception 'fee currency must be an alphanumeric asset code of at most 32 characters, got "%"',
            left(record_fill_fee.fee_currency, 80)
            using errcode = '22S09';
    end if;

    -- why the order row's lock: fills of the order and a second call for this fill take turns on
    -- it, so the fee is read after any other call set it; then the position and the rollups, in
    -- record_fill's order
    v_order := internal.lock_order(record_fill_fee.order_id);
    select t.* into v_trade
    from trading.trade_keys tk
    join trading.trades t on t.trade_id = tk.trade_id and t.executed_at = tk.executed_at
    where tk.instrument_id = v_order.instrument_id and tk.exchange_trade_id = record_fill_fee.exchange_trade_id
      and tk.side = v_order.side and t.order_id = v_order.order_id;
    if not found then
        raise exception 'order % has no trade with exchange trade id "%"',
            v_order.order_id, record_fill_fee.exchange_trade_id
            using errcode = '23S04',
                  hint = 'A fee is set on a fill trading.record_fill recorded for the order; check the order id and the exchange trade id.';
    end if;
    select i.* into v_instrument from ref.instruments i where i.instrument_id = v_trade.instrument_id;
    v_fee_ccy := coalesce(v_fee_ccy, v_instrument.quote_asset);

    -- the fee already set (a retry), or nothing to set (a zero fee is zero in any currency)
    if (v_trade.fee = record_fill_fee.fee and v_trade.fee_currency = v_fee_ccy)
       or (v_trade.fee = 0 and record_fill_fee.fee = 0) then
        return v_trade.trade_id;
    end if;
    if v_trade.fee <> 0 then
        raise exception 'trade % (exchange trade id "%") already has a fee of % %',
            v_trade.trade_id, v_trade.exchange_trade_id, v_trade.fee, v_trade.fee_currency
            using errcode = '23S06',
                  detail = format('stored: fee %s %s; given: fee %s %s',
                                  v_trade.fee, v_trade.fee_currency, record_fill_fee.fee, v_fee_ccy),
                  hint = 'A fill''s fee is set once, on a fill recorded without one, and then stands; compare the two sources.';
    end if;

    if v_fee_ccy = v_instrument.quote_asset then
        v_fee_quote := record_fill_fee.fee;
        v_base_fee := 0;
    else
        select f.fee_quote, f.base_fee into v_fee_quote, v_base_fee
        from internal.fee_in_quote(v_instrument, record_fill_fee.fee, v_fee_ccy, v_trade.price,
                                   record_fill_fee.fee_quote, v_trade.strategy_id) f;
    end if;
    -- why refused, not applied: such a fee changes the quantity the fill added to the position
    -- (its position_delta), and so the average entry and what every later fill of the position
    -- closed and realized; replaying them would rewrite other trades, which are facts
    if v_base_fee <> 0 then
        raise exception 'a fee in %, the base asset of % instrument %, cannot be set after the fill',
            v_fee_ccy, v_instrument.market_type, v_instrument.symbol
            using errcode = '22S09',
                  detail = 'It changes the quantity the fill added to the position, which later fills were applied to.',
                  hint = 'Record a fill whose fee may be paid in its base asset with the fee (trading.record_fill), once the fee is known.';
    end if;

    update trading.trades t
    set fee = record_fill_fee.fee,
        fee_currency = v_fee_ccy,
        fee_quote = v_fee_quote
    where t.trade_id = v_trade.trade_id and t.executed_at = v_trade.executed_at;
    update trading.positions p
    set fees_paid = p.fees_paid + v_fee_quote,
        updated_at = now()
    where p.strategy_id = v_trade.strategy_id and p.instrument_id = v_trade.instrument_id;
    perform internal.add_to_rollups(v_trade.strategy_id, v_trade.instrument_id, v_trade.executed_at, 0, 0, 0,
                                    v_fee_quote, 0, 0, v_instrument.quote_asset);
    return v_trade.trade_id;
end;
$$;
comment on function trading.record_fill_fee(bigint, text, numeric, text, numeric) is
    'Set the fee of a fill recorded without one (fee 0; the exchange reported the fee later): the trade, the position''s fees_paid and realized PnL, and the hourly and daily rollups change by its quote value. Idempotent; another fee once one is set is 23S06, an unknown trade 23S04, a base-asset fee on spot or margin 22S09. Returns the trade id.';
