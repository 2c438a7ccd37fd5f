-- spreadedge functions: invariants
-- ops.check_invariants: every way the stored state can disagree with itself, checked from the
-- facts up. Trades and funding payments are the facts; positions, orders' fill columns, the
-- hourly and daily rollups and portfolio snapshot totals are derived from them, and the audit log
-- must hold every change of every audited table. One row per violation; none when the database is
-- sound. `spreadedge check` runs it and exits non-zero on any row.
--
-- The folds below replay trades in trade_id order. record_fill locks the order row, then the
-- position row, before it draws the trade id, so the trades of one order and of one position have
-- increasing ids in the order they were applied, and the replay reproduces the stored values
-- exactly: no tolerance is needed, and none is allowed.

create or replace function internal.position_fold_step(
    p_state      numeric[],
    p_delta      numeric,
    p_price      numeric,
    p_multiplier numeric
)
    returns numeric[]
    immutable
    language sql
as $$
    -- state: {quantity, avg_entry_price (null when flat), realized_pnl_gross so far, last step's
    -- realized, last step's closed quantity}
    select array[s.quantity, s.avg_entry_price, p_state[3] + s.realized_pnl_gross, s.realized_pnl_gross,
                 case when sign(p_delta) = -sign(p_state[1]) then least(abs(p_delta), abs(p_state[1])) else 0 end]
    from trading.position_after_fill(p_state[1], p_state[2], p_delta, p_price, p_multiplier) s
$$;
comment on function internal.position_fold_step(numeric[], numeric, numeric, numeric) is
    'State step of internal.position_fold: {quantity, avg entry, realized gross, last realized, last closed quantity} after one trade.';

create or replace aggregate internal.position_fold(numeric, numeric, numeric) (
    sfunc = internal.position_fold_step,
    stype = numeric[],
    initcond = '{0,NULL,0,0,0}'
);
comment on aggregate internal.position_fold(numeric, numeric, numeric) is
    'Folds trades (position_delta, price, multiplier), in trade_id order, into {quantity, avg entry, realized gross, last trade''s realized gross and closed quantity}.';

create or replace function internal.fill_fold_step(p_state numeric[], p_quantity numeric, p_price numeric)
    returns numeric[]
    immutable
    language sql
as $$
    -- state: {filled quantity, average fill price}; the same rounding as record_fill's order update
    select array[p_state[1] + p_quantity,
                 round((coalesce(p_state[2], 0) * p_state[1] + p_price * p_quantity)
                       * 1.000000000000000000000000 / (p_state[1] + p_quantity), 18)]
$$;
comment on function internal.fill_fold_step(numeric[], numeric, numeric) is
    'State step of internal.fill_fold: {filled quantity, average fill price} after one more fill.';

create or replace aggregate internal.fill_fold(numeric, numeric) (
    sfunc = internal.fill_fold_step,
    stype = numeric[],
    initcond = '{0,NULL}'
);
comment on aggregate internal.fill_fold(numeric, numeric) is
    'Folds an order''s trades (quantity, price), in trade_id order, into {filled quantity, average fill price}.';

create or replace function internal.same_instant(p_a jsonb, p_b jsonb)
    returns boolean
    stable
    language sql
as $$
    -- Whether two jsonb values are the same time written with different UTC offsets, as to_jsonb
    -- writes a timestamptz in the session's TimeZone ("2026-12-06T05:30:00+05:30" and
    -- "2026-12-06T00:00:00+00:00"). why case: the cast must run only on text shaped like a time.
    select case when jsonb_typeof(p_a) = 'string' and jsonb_typeof(p_b) = 'string'
                     and p_a #>> '{}' ~ E'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?[+-]\\d\\d(:\\d\\d){0,2}$'
                     and p_b #>> '{}' ~ E'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?[+-]\\d\\d(:\\d\\d){0,2}$'
                then (p_a #>> '{}')::timestamptz = (p_b #>> '{}')::timestamptz
                else false end
$$;
comment on function internal.same_instant(jsonb, jsonb) is
    'Whether two jsonb strings are one time written with different UTC offsets (to_jsonb of a timestamptz follows the session TimeZone).';

create or replace function internal.interval_text(p_value jsonb)
    returns text
    immutable
    language sql
as $$
    -- The text of a jsonb string shaped as to_jsonb writes an interval in one of the four
    -- IntervalStyle settings (postgres "1 day 02:00:00", postgres_verbose "@ 1 day 2 hours",
    -- sql_standard "1 2:00:00", iso_8601 "P1DT2H"); null for anything else. why the tight shapes
    -- (each field once, in order, of bounded width): only text the cast is sure to accept is cast,
    -- so a text column's value never makes the check fail.
    select case when jsonb_typeof(p_value) = 'string'
                     and (p_value #>> '{}' ~ E'^(?=.)([+-]?\\d{1,8} years?( |$))?([+-]?\\d{1,8} mons?( |$))?([+-]?\\d{1,8} days?( |$))?([+-]?\\d{1,9}:[0-5]\\d:[0-5]\\d(\\.\\d{1,6})?)?$'
                          or p_value #>> '{}' ~ E'^@ (0|(?=[+-]?\\d)([+-]?\\d{1,8} years? ?)?([+-]?\\d{1,8} mons? ?)?([+-]?\\d{1,8} days? ?)?([+-]?\\d{1,8} hours? ?)?([+-]?\\d{1,8} mins? ?)?([+-]?\\d{1,8}(\\.\\d{1,6})? secs? ?)?(ago)?)$'
                          or p_value #>> '{}' ~ E'^(0|[+-]?\\d{1,8}-\\d{1,2}|([+-]?\\d{1,8}-\\d{1,2} )?([+-]?\\d{1,8} )?[+-]?\\d{1,9}:[0-5]\\d:[0-5]\\d(\\.\\d{1,6})?)$'
                          or p_value #>> '{}' ~ E'^P(?=.)(-?\\d{1,8}Y)?(-?\\d{1,8}M)?(-?\\d{1,8}D)?(T(?=.)(-?\\d{1,9}H)?(-?\\d{1,9}M)?(-?\\d{1,9}(\\.\\d{1,6})?S)?)?$')
                then p_value #>> '{}' end
$$;
comment on function internal.interval_text(jsonb) is
    'The text of a jsonb string shaped as to_jsonb writes an interval (in any IntervalStyle), null otherwise.';

create or replace function internal.same_interval(p_a jsonb, p_b jsonb)
    returns boolean
    stable
    language sql
as $$
    -- Whether two jsonb values are one interval written in different IntervalStyles ("PT30M" and
    -- "00:30:00"): to_jsonb writes an interval in the IntervalStyle of the session. Both are read
    -- back and written in this session's style, so months, days and time are compared field by
    -- field ("1 day" is not "24:00:00", though the two intervals are =). A sql_standard interval
    -- whose fields are all negative ("-1 2:00:00") reads as another in a session of another style;
    -- no audited interval column may be negative.
    select case when internal.interval_text(p_a) is not null and internal.interval_text(p_b) is not null
                then internal.interval_text(p_a)::interval::text = internal.interval_text(p_b)::interval::text
                else false end
$$;
comment on function internal.same_interval(jsonb, jsonb) is
    'Whether two jsonb strings are one interval written in different IntervalStyles (to_jsonb of an interval follows the session IntervalStyle).';

create or replace function internal.jsonb_differences(p_stored jsonb, p_expected jsonb)
    returns text
    -- why stable: format() is
    stable
    language sql
as $$
    -- The keys present in both objects whose values differ, as "key: stored -> expected"; null when
    -- they agree. Keys present in one object only are not compared: a column added or dropped by a
    -- migration changes the shape of the images written after it, not their history.
    -- why same_instant: an audit image writes its times in the TimeZone of the session that made
    -- the change; a row changed from a session in Asia/Kolkata was reported as differing from
    -- its own image by every time column when checked from a UTC session; same_interval likewise
    -- for an interval written in another IntervalStyle (a policy changed from a session with
    -- IntervalStyle iso_8601 logged "PT30M", read as differing from the row's "00:30:00")
    select string_agg(format('%s: %s -> %s', s.key, s.value, e.value), ', ' order by s.key)
    from jsonb_each(p_stored) s
    join jsonb_each(p_expected) e on e.key = s.key
    where s.value is distinct from e.value and not internal.same_instant(s.value, e.value)
      and not internal.same_interval(s.value, e.value)
$$;
comment on function internal.jsonb_differences(jsonb, jsonb) is
    'Keys two jsonb objects share whose values differ ("key: a -> b, ..."); null when they agree.';

create or replace function internal.audit_moved_key(p_row_key text, p_old_row jsonb)
    returns text
    -- why stable: jsonb_object_agg is
    stable
    language sql
as $$
    -- The key an UPDATE image moved its row away from, as audit.row_key writes keys: the columns
    -- of p_row_key (the new key) read from the old row; null when the key did not change, so
    -- the usual UPDATE costs one containment test. A key-changing UPDATE is logged under its new
    -- key only (audit.log_changes), so without it the old key's story seems to stop unfinished.
    select case when not p_old_row @> p_row_key::jsonb
                then (select jsonb_object_agg(k, p_old_row -> k) from jsonb_object_keys(p_row_key::jsonb) k)::text
           end
$$;
comment on function internal.audit_moved_key(text, jsonb) is
    'The old key of an UPDATE audit row that changed its row''s key (canonical json text), null when the key stayed.';

create or replace function internal.order_status_fits(
    p_status   trading.order_status,
    p_filled   numeric,
    p_quantity numeric
)
    returns boolean
    immutable
    language sql
as $$
    select case p_status
               when 'filled' then p_filled = p_quantity
               when 'new' then p_filled = 0.0
               when 'open' then p_filled = 0.0
               when 'rejected' then p_filled = 0.0
               when 'partially_filled' then p_filled <> 0.0 and p_filled < p_quantity
               else p_filled < p_quantity  -- cancelled, expired: a completing late fill makes it filled
           end
$$;
comment on function internal.order_status_fits(trading.order_status, numeric, numeric) is
    'Whether an order''s status agrees with its filled quantity (ops.check_invariants, order_status).';

create or replace function ops.check_invariants()
    returns table (invariant text, subject jsonb, detail text)
    stable
    language plpgsql
as $$
-- Every violation of the stored state's invariants, one row each (none when sound):
--   position_fold      a position differs from the fold of its trades and funding payments (quantity,
--                      average entry, realized gross, fees, funding, fill count, opened_at), or
--                      trades exist with no position row, or a position row with none
--   position_instrument a position's copy of its instrument's multiplier or quote asset differs
--   trade_realized     a trade's realized gross PnL or closed quantity differs from what its step of
--                      the fold realized or closed, or its position delta is not its signed quantity
--                      less a base-asset fee
--   trade_fee          a trade's fee_quote is not its fee (quote asset), fee x price (base asset on
--                      spot or margin), 0 (a zero fee), or is of the other sign than the fee
--   trade_order        a trade's order has no key row, or is of another strategy, instrument or side
--   trade_keys         a trade without its key row, a key row without its trade, or one that
--                      disagrees with it (instrument, side, exchange trade id, time)
--   order_fills        an order's filled quantity or average fill price differs from its trades
--   order_status       an order's status disagrees with its filled quantity
--   order_keys         an order without its key row, a key row that disagrees with it (time,
--                      exchange, client order id, strategy, instrument, exchange order id when
--                      the key has one), or a key row with no
--                      order that no trade or risk event keeps
--   order_events       an order's events (by event_id) do not begin with its placement, one does
--                      not go from the status the one before went to, or the latest does not go
--                      to the order's status (or there is none)
--   rollup_hourly      trading.hourly_pnl differs from the trades and funding of its hour, or has
--                      a row for an hour with none
--   rollup_daily       trading.daily_pnl differs from the trades and funding of its day, or has a
--                      row for a day with none, or a quote asset that is not its instrument's
--   snapshot_total     a portfolio snapshot's total row is missing or is not the sum of its strategy rows
--   spread_legs        a spread trade's buy leg is not a buy order or its sell leg not a sell order, a
--                      leg is of another strategy or for another quantity, both legs are on one
--                      exchange, or they trade other pairs or market types (trading.open_spread_trade
--                      places them so)
--   audit_chain        an audited row's change is not in the audit log: an UPDATE or DELETE image
--                      whose old row is not the previous image, an INSERT of a key still present,
--                      a first image that is not an INSERT (or the BASELINE of a row older than
--                      its table's audit triggers, see audit.record_baseline). An UPDATE of a key
--                      column, logged under the new key, ends the old key's story as a DELETE
--                      would and begins the new key's as an INSERT would.
--   audit_current      an audited row differs from its latest audit image, or has none, or a row
--                      the log has (its latest image not a DELETE nor a move to another key) does
--                      not exist
-- The audit log carries no seals of its own; its rows are protected by privileges and by
-- triggers that refuse UPDATE, DELETE and TRUNCATE (functions/80_audit.sql).
-- When pg_partman retention drops audit.log partitions, rows whose history began in a dropped
-- partition are not reported for a missing first INSERT or a missing image. A retention on
-- trading.trades (retention_trades, unset by default) drops facts the positions and rollups were
-- built from: the folds then report every position and rollup that dropped trades contributed to,
-- so run the check on a database that keeps its whole trade history (or a restored copy).
-- Reads every trade, order, rollup row, snapshot and audit row: run it on a quiet database or a
-- restored copy when those tables are large.
declare
    v_audit_pruned boolean;
    v_table record;
begin
    return query
    with folded as (
        select t.strategy_id, t.instrument_id,
               internal.position_fold(t.position_delta, t.price, t.multiplier order by t.trade_id) as fold,
               sum(t.fee_quote) as fees, count(*)::integer as fills
        from trading.trades t
        group by t.strategy_id, t.instrument_id
    ),
    -- opened_at: when the open position began, as record_fill sets it: the time of the last trade
    -- that opened it from flat or turned it through zero (the quantity before a trade is the one
    -- after it less its delta); null when flat
    opened as (
        select s.strategy_id, s.instrument_id,
               (array_agg(s.executed_at order by s.trade_id desc)
                    filter (where s.step[1] <> 0 and sign(s.step[1] - s.position_delta) <> sign(s.step[1])))[1]
                   as opened_at
        from (select t.strategy_id, t.instrument_id, t.trade_id, t.executed_at, t.position_delta,
                     internal.position_fold(t.position_delta, t.price, t.multiplier)
                         over (partition by t.strategy_id, t.instrument_id order by t.trade_id) as step
              from trading.trades t) s
        group by s.strategy_id, s.instrument_id
    ),
    funded as (
        select f.strategy_id, f.instrument_id, sum(f.amount) as funding
        from trading.funding_payments f
        group by f.strategy_id, f.instrument_id
    ),
    expected as (
        select coalesce(fo.strategy_id, fu.strategy_id) as strategy_id,
               coalesce(fo.instrument_id, fu.instrument_id) as instrument_id,
               coalesce(fo.fold[1], 0) as quantity, fo.fold[2] as avg_entry_price,
               coalesce(fo.fold[3], 0) as realized_pnl_gross, coalesce(fo.fees, 0) as fees_paid,
               coalesce(fu.funding, 0) as funding, coalesce(fo.fills, 0) as trade_count,
               case when fo.fold[1] <> 0 then op.opened_at end as opened_at
        from folded fo
        left join opened op on op.strategy_id = fo.strategy_id and op.instrument_id = fo.instrument_id
        full join funded fu on fu.strategy_id = fo.strategy_id and fu.instrument_id = fo.instrument_id
    )
    select 'position_fold',
           jsonb_build_object('strategy_id', coalesce(p.strategy_id, e.strategy_id),
                              'instrument_id', coalesce(p.instrument_id, e.instrument_id)),
           case when p.strategy_id is null then 'trades or funding exist but the position row does not'
                -- why: record_fill and record_funding make a position row with its first fact, in
                -- one transaction; a row of zeros with none was not reported
                when e.strategy_id is null then 'the position row exists but no trades or funding payments do'
                else d.differences || ' (stored -> fold of the trades and funding)'
           end
    from trading.positions p
    full join expected e on e.strategy_id = p.strategy_id and e.instrument_id = p.instrument_id
    cross join lateral (
        select internal.jsonb_differences(
                   jsonb_build_object('quantity', p.quantity, 'avg_entry_price', p.avg_entry_price,
                                      'realized_pnl_gross', p.realized_pnl_gross, 'fees_paid', p.fees_paid,
                                      'funding', p.funding, 'trade_count', p.trade_count,
                                      'opened_at', p.opened_at),
                   jsonb_build_object('quantity', coalesce(e.quantity, 0), 'avg_entry_price', e.avg_entry_price,
                                      'realized_pnl_gross', coalesce(e.realized_pnl_gross, 0),
                                      'fees_paid', coalesce(e.fees_paid, 0), 'funding', coalesce(e.funding, 0),
                                      'trade_count', coalesce(e.trade_count, 0),
                                      'opened_at', e.opened_at)) as differences
    ) d
    where p.strategy_id is null or e.strategy_id is null or d.differences is not null;

    -- why: the copies of the instrument's multiplier and quote asset the risk check reads are kept
    -- equal by foreign keys, which a write with session_replication_role = replica skips
    return query
    select 'position_instrument',
           jsonb_build_object('strategy_id', p.strategy_id, 'instrument_id', p.instrument_id),
           internal.jsonb_differences(jsonb_build_object('multiplier', p.multiplier, 'quote_asset', p.quote_asset),
                                      jsonb_build_object('multiplier', i.multiplier, 'quote_asset', i.quote_asset))
               || ' (stored -> ref.instruments)'
    from trading.positions p
    left join ref.instruments i on i.instrument_id = p.instrument_id
    where (p.multiplier, p.quote_asset) is distinct from (i.multiplier, i.quote_asset);

    return query
    select 'trade_realized',
           jsonb_build_object('trade_id', s.trade_id),
           case
               when s.realized_pnl_gross <> s.step[4]
                   then format('realized_pnl_gross %s, but its step of the position fold realized %s',
                               s.realized_pnl_gross, s.step[4])
               when s.closed_quantity <> s.step[5]
                   then format('closed_quantity %s, but its step of the position fold closed %s',
                               s.closed_quantity, s.step[5])
               else format('position_delta %s, but a %s of %s with a fee of %s %s changes the position by %s',
                           s.position_delta, s.side, s.quantity, s.fee, s.fee_currency, s.expected_delta)
           end
    from (
        select t.trade_id, t.side, t.quantity, t.position_delta, t.realized_pnl_gross, t.closed_quantity,
               t.fee, t.fee_currency,
               case t.side when 'buy' then t.quantity else -t.quantity end
               - case when t.fee_currency = i.base_asset and i.market_type in ('spot', 'margin') then t.fee else 0 end
                   as expected_delta,
               internal.position_fold(t.position_delta, t.price, t.multiplier)
                   over (partition by t.strategy_id, t.instrument_id order by t.trade_id) as step
        from trading.trades t
        join ref.instruments i on i.instrument_id = t.instrument_id
    ) s
    where s.realized_pnl_gross <> s.step[4]
       or s.closed_quantity <> s.step[5]
       or s.position_delta <> s.expected_delta;

    -- why: a trade's fee_quote is summed into its position's fees and its rollups; a wrong one
    -- was reported only as those sums, blaming the derived rows instead of the trade. A fee in
    -- the quote asset is worth itself, one in the base asset of a spot or margin instrument fee x
    -- price (internal.fee_in_quote); any other was valued by the caller or from market data, and
    -- only its sign is known. why the bounds: past them the product may not fit in numeric, and
    -- record_fill stored such a fill only when it did
    return query
    select 'trade_fee',
           jsonb_build_object('trade_id', f.trade_id),
           case when f.expected is null
                then format('fee_quote %s and the fee %s %s differ in sign', f.fee_quote, f.fee, f.fee_currency)
                else format('fee_quote %s, but a fee of %s %s on a fill at %s is worth %s %s',
                            f.fee_quote, f.fee, f.fee_currency, f.price, f.expected, f.quote_asset)
           end
    from (
        select t.trade_id, t.fee, t.fee_currency, t.fee_quote, t.price, i.quote_asset,
               case when t.fee = 0.0 then 0.0
                    when t.fee_currency = i.quote_asset then t.fee
                    when t.fee_currency = i.base_asset and i.market_type in ('spot', 'margin')
                         and abs(t.fee) < 1e50000 and t.price < 1e50000 then t.fee * t.price
               end as expected,
               t.fee_currency = i.base_asset and i.market_type in ('spot', 'margin') as base_fee
        from trading.trades t
        join ref.instruments i on i.instrument_id = t.instrument_id
    ) f
    where case when f.expected is not null then f.fee_quote <> f.expected
               when f.base_fee then false
               else sign(f.fee_quote) * sign(f.fee) < 0
          end;

    -- why: a trade's strategy and instrument are held to its order's key by a foreign key, which a
    -- write with session_replication_role = replica skips, and nothing held its side to its order's
    return query
    select 'trade_order',
           jsonb_build_object('trade_id', t.trade_id),
           case when k.order_id is null then format('its order %s has no trading.order_keys row', t.order_id)
                when o.order_id is not null and o.side <> t.side
                    then format('a %s, but its order %s is a %s order', t.side, t.order_id, o.side)
                else format('of strategy %s, instrument %s, but its order %s is of strategy %s, instrument %s',
                            t.strategy_id, t.instrument_id, t.order_id, k.strategy_id, k.instrument_id)
           end
    from trading.trades t
    left join trading.order_keys k on k.order_id = t.order_id
    left join trading.orders o on o.order_id = k.order_id and o.created_at = k.created_at
    where k.order_id is null
       or k.strategy_id <> t.strategy_id or k.instrument_id <> t.instrument_id
       or o.side <> t.side;

    return query
    select 'trade_keys',
           jsonb_build_object('trade_id', coalesce(t.trade_id, k.trade_id)),
           case when k.trade_id is null then 'trade has no trading.trade_keys row'
                when t.trade_id is null then 'trading.trade_keys row has no trade'
                else format('key row says instrument %s, %s %s / %s; the trade instrument %s, %s %s / %s',
                            k.instrument_id, k.side, k.exchange_trade_id, k.executed_at,
                            t.instrument_id, t.side, t.exchange_trade_id, t.executed_at)
           end
    from trading.trades t
    full join trading.trade_keys k on k.trade_id = t.trade_id
    where k.trade_id is null or t.trade_id is null
       or k.exchange_trade_id <> t.exchange_trade_id or k.executed_at <> t.executed_at
       or k.instrument_id <> t.instrument_id or k.side <> t.side;

    return query
    with fills as (
        select t.order_id, internal.fill_fold(t.quantity, t.price order by t.trade_id) as fold
        from trading.trades t
        group by t.order_id
    )
    select 'order_fills',
           jsonb_build_object('order_id', o.order_id),
           format('filled_quantity %s, avg_fill_price %s; its trades: %s, %s',
                  o.filled_quantity, coalesce(o.avg_fill_price::text, 'null'),
                  coalesce(f.fold[1], 0), coalesce(f.fold[2]::text, 'null'))
    from trading.orders o
    left join fills f on f.order_id = o.order_id
    where o.filled_quantity <> coalesce(f.fold[1], 0)
       or o.avg_fill_price is distinct from f.fold[2];

    return query
    select 'order_status',
           jsonb_build_object('order_id', o.order_id),
           format('status %s with %s of %s filled', o.status, o.filled_quantity, o.quantity)
    from trading.orders o
    where not internal.order_status_fits(o.status, o.filled_quantity, o.quantity);

    -- why: order_keys finds an order's partition (created_at) and holds its client order id
    -- unique; a key row that disagrees with its order hid the order from every lookup by id,
    -- unreported. A key without its order is kept by orders cleanup only while a trade or a risk
    -- event refers to it
    return query
    select 'order_keys',
           jsonb_build_object('order_id', coalesce(o.order_id, k.order_id)),
           case when k.order_id is null then 'order has no trading.order_keys row'
                when o.order_id is null then 'trading.order_keys row has no order, and no trade or risk event refers to it'
                else d.differences || ' (key row -> order)'
           end
    from trading.orders o
    full join trading.order_keys k on k.order_id = o.order_id
    left join ref.instruments i on i.instrument_id = o.instrument_id
    cross join lateral (
        select case when o.order_id is not null and k.order_id is not null then
                   internal.jsonb_differences(
                       -- why the exchange order id only when the key has one: orders acknowledged
                       -- before migration 0067 with an id another order already had keep it on
                       -- the order row alone
                       jsonb_build_object('created_at', k.created_at, 'exchange_id', k.exchange_id,
                                          'client_order_id', k.client_order_id, 'strategy_id', k.strategy_id,
                                          'instrument_id', k.instrument_id)
                       || jsonb_strip_nulls(jsonb_build_object('exchange_order_id', k.exchange_order_id)),
                       jsonb_build_object('created_at', o.created_at, 'exchange_id', i.exchange_id,
                                          'client_order_id', o.client_order_id, 'strategy_id', o.strategy_id,
                                          'instrument_id', o.instrument_id,
                                          'exchange_order_id', o.exchange_order_id))
               end as differences
    ) d
    where k.order_id is null
       or (o.order_id is null
           and not exists (select from trading.trades t where t.order_id = k.order_id)
           and not exists (select from monitor.risk_events r where r.order_id = k.order_id))
       or d.differences is not null;

    -- why: every status change of an order is an order event (placement from nothing, then each
    -- change from the status the last one went to); a lost, altered or reordered event, or a
    -- status changed without one, was not reported. Orders cleanup deletes an order's events
    -- with it. Events are chained by event_id: occurred_at is the time of the writer's
    -- transaction, which may be earlier than that of a change made before it
    return query
    with chained as (
        select e.order_id, e.event_id, e.from_status, e.to_status,
               lag(e.event_id) over w as prev_event_id, lag(e.to_status) over w as prev_to_status,
               lead(e.event_id) over w is null as latest
        from trading.order_events e
        window w as (partition by e.order_id order by e.event_id)
    )
    select 'order_events',
           jsonb_build_object('order_id', c.order_id, 'event_id', c.event_id),
           case when c.prev_event_id is null
                then format('the first event goes from %s to %s, not from nothing (the placement)', c.from_status, c.to_status)
                else format('goes from %s to %s, but event %s before it went to %s',
                            coalesce(c.from_status::text, 'nothing'), c.to_status, c.prev_event_id, c.prev_to_status)
           end
    from chained c
    where case when c.prev_event_id is null then c.from_status is not null
               else c.from_status is distinct from c.prev_to_status
          end
    union all
    select 'order_events',
           jsonb_build_object('order_id', o.order_id),
           case when c.order_id is null then format('status %s, but the order has no events', o.status)
                else format('status %s, but its latest event, %s, went to %s', o.status, c.event_id, c.to_status)
           end
    from trading.orders o
    left join (select * from chained where latest) c on c.order_id = o.order_id
    -- why not a status order_status reports: one edit of the status is one violation. why no
    -- report of the events of a removed order: the order's DELETE is in the audit log
    where c.order_id is null
       or (c.to_status <> o.status and internal.order_status_fits(o.status, o.filled_quantity, o.quantity));

    return query
    with facts as (
        select t.strategy_id, date_trunc('hour', t.executed_at, 'UTC') as hour, t.instrument_id,
               1 as trades, t.quantity as volume, t.quantity * t.price * t.multiplier as notional,
               t.fee_quote as fees, t.realized_pnl_gross, 0::numeric as funding
        from trading.trades t
        union all
        select f.strategy_id, date_trunc('hour', f.paid_at, 'UTC'), f.instrument_id, 0, 0, 0, 0, 0, f.amount
        from trading.funding_payments f
    ),
    summed as (
        select strategy_id, hour, instrument_id, sum(trades)::integer as trades, sum(volume) as volume,
               sum(notional) as notional, sum(fees) as fees, sum(realized_pnl_gross) as realized_pnl_gross,
               sum(funding) as funding
        from facts
        group by strategy_id, hour, instrument_id
    ),
    compared as (
        select 'rollup_hourly' as invariant,
               coalesce(h.strategy_id, s.strategy_id) as strategy_id,
               to_char(coalesce(h.hour, s.hour) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as period,
               coalesce(h.instrument_id, s.instrument_id) as instrument_id,
               internal.jsonb_differences(
                   jsonb_build_object('trades', coalesce(h.trades, 0), 'volume', coalesce(h.volume, 0),
                                      'notional', coalesce(h.notional, 0), 'fees', coalesce(h.fees, 0),
                                      'realized_pnl_gross', coalesce(h.realized_pnl_gross, 0),
                                      'funding', coalesce(h.funding, 0)),
                   jsonb_build_object('trades', coalesce(s.trades, 0), 'volume', coalesce(s.volume, 0),
                                      'notional', coalesce(s.notional, 0), 'fees', coalesce(s.fees, 0),
                                      'realized_pnl_gross', coalesce(s.realized_pnl_gross, 0),
                                      'funding', coalesce(s.funding, 0))) as differences,
               s.strategy_id is null as no_facts
        from trading.hourly_pnl h
        full join summed s on s.strategy_id = h.strategy_id and s.hour = h.hour and s.instrument_id = h.instrument_id
        union all
        select 'rollup_daily',
               coalesce(d.strategy_id, s.strategy_id),
               coalesce(d.day, s.day)::text,
               coalesce(d.instrument_id, s.instrument_id),
               internal.jsonb_differences(
                   jsonb_build_object('trades', coalesce(d.trades, 0), 'volume', coalesce(d.volume, 0),
                                      'notional', coalesce(d.notional, 0), 'fees', coalesce(d.fees, 0),
                                      'realized_pnl_gross', coalesce(d.realized_pnl_gross, 0),
                                      'funding', coalesce(d.funding, 0)),
                   jsonb_build_object('trades', coalesce(s.trades, 0), 'volume', coalesce(s.volume, 0),
                                      'notional', coalesce(s.notional, 0), 'fees', coalesce(s.fees, 0),
                                      'realized_pnl_gross', coalesce(s.realized_pnl_gross, 0),
                                      'funding', coalesce(s.funding, 0))),
               s.strategy_id is null
        from trading.daily_pnl d
        full join (
            select strategy_id, (hour at time zone 'UTC')::date as day, instrument_id, sum(trades) as trades,
                   sum(volume) as volume, sum(notional) as notional, sum(fees) as fees,
                   sum(realized_pnl_gross) as realized_pnl_gross, sum(funding) as funding
            from summed
            group by 1, 2, 3
        ) s on s.strategy_id = d.strategy_id and s.day = d.day and s.instrument_id = d.instrument_id
    )
    select c.invariant,
           jsonb_build_object('strategy_id', c.strategy_id,
                              case c.invariant when 'rollup_hourly' then 'hour' else 'day' end, c.period,
                              'instrument_id', c.instrument_id),
           -- why: a fill or funding payment makes its hour's and day's rows; a row of zeros with
           -- none (a row moved to another hour or day and zeroed) was not reported
           case when c.no_facts
                then format('a rollup row, but no trades or funding payments in its %s',
                            case c.invariant when 'rollup_hourly' then 'hour' else 'day' end)
                else c.differences || ' (stored -> sum of the trades and funding)'
           end
    from compared c
    where c.differences is not null or c.no_facts;

    -- why: the risk check's daily loss adds up the rows in the order's quote asset, a copy kept
    -- equal to the instrument's by a foreign key, which session_replication_role = replica skips
    return query
    select 'rollup_daily',
           jsonb_build_object('strategy_id', d.strategy_id, 'day', d.day::text, 'instrument_id', d.instrument_id),
           format('quote_asset: %s -> %s (stored -> ref.instruments)', to_jsonb(d.quote_asset), to_jsonb(i.quote_asset))
    from trading.daily_pnl d
    left join ref.instruments i on i.instrument_id = d.instrument_id
    where d.quote_asset is distinct from i.quote_asset;

    return query
    with strategies as (
        select s.taken_at, count(*) as rows_, sum(s.capital) as capital, sum(s.realized_pnl) as realized_pnl,
               sum(s.unrealized_pnl) as unrealized_pnl, sum(s.gross_exposure) as gross_exposure,
               sum(s.net_exposure) as net_exposure, sum(s.open_positions) as open_positions
        from trading.portfolio_snapshots s
        where s.strategy_id is not null
        group by s.taken_at
    )
    select 'snapshot_total',
           jsonb_build_object('taken_at', coalesce(t.taken_at, s.taken_at)),
           case when t.taken_at is null then format('%s strategy rows but no total row', s.rows_)
                else d.differences || ' (total row -> sum of the strategy rows)'
           end
    from (select * from trading.portfolio_snapshots where strategy_id is null) t
    full join strategies s on s.taken_at = t.taken_at
    cross join lateral (
        select internal.jsonb_differences(
                   jsonb_build_object('capital', t.capital, 'realized_pnl', t.realized_pnl,
                                      'unrealized_pnl', t.unrealized_pnl, 'gross_exposure', t.gross_exposure,
                                      'net_exposure', t.net_exposure, 'open_positions', t.open_positions),
                   jsonb_build_object('capital', coalesce(s.capital, 0), 'realized_pnl', coalesce(s.realized_pnl, 0),
                                      'unrealized_pnl', coalesce(s.unrealized_pnl, 0),
                                      'gross_exposure', coalesce(s.gross_exposure, 0),
                                      'net_exposure', coalesce(s.net_exposure, 0),
                                      'open_positions', coalesce(s.open_positions, 0))) as differences
    ) d
    where t.taken_at is null or d.differences is not null;

    -- why no check of a leg's order row that is missing: trading.spread_trades refers to
    -- order_keys, and an orders partition dropped by retention takes its rows
    return query
    select 'spread_legs', jsonb_build_object('spread_trade_id', s.spread_trade_id), p.problems
    from trading.spread_trades s
    cross join lateral (
        select string_agg(x.problem, '; ' order by x.leg, x.n) as problems
        from (
            select l.leg, v.n, v.problem
            from (values ('buy', s.buy_order_id, 1), ('sell', s.sell_order_id, 2)) l (side, order_id, leg)
            join trading.order_keys k on k.order_id = l.order_id
            left join trading.orders o on o.order_id = l.order_id and o.created_at = k.created_at
            cross join lateral (values
                (1, case when o.side::text <> l.side
                         then format('%s leg order %s is a %s order', l.side, l.order_id, o.side) end),
                (2, case when k.strategy_id <> s.strategy_id
                         then format('%s leg order %s is of strategy %s, the spread trade of strategy %s',
                                     l.side, l.order_id, k.strategy_id, s.strategy_id) end),
                (3, case when o.quantity <> s.quantity
                         then format('quantity %s, but %s leg order %s is for %s',
                                     s.quantity, l.side, l.order_id, o.quantity) end)
            ) v (n, problem)
            where v.problem is not null
            union all
            select 3, 1, format('both legs are on %s', e.code)
            from trading.order_keys kb
            join trading.order_keys ks on ks.order_id = s.sell_order_id and ks.exchange_id = kb.exchange_id
            join ref.exchanges e on e.exchange_id = kb.exchange_id
            where kb.order_id = s.buy_order_id
            union all
            -- why: trading.open_spread_trade places both legs on one pair and market type
            select 4, 1, format('the buy leg order %s trades %s/%s %s, the sell leg order %s %s/%s %s',
                                kb.order_id, ib.base_asset, ib.quote_asset, ib.market_type,
                                ks.order_id, iz.base_asset, iz.quote_asset, iz.market_type)
            from trading.order_keys kb
            join ref.instruments ib on ib.instrument_id = kb.instrument_id
            join trading.order_keys ks on ks.order_id = s.sell_order_id
            join ref.instruments iz on iz.instrument_id = ks.instrument_id
            where kb.order_id = s.buy_order_id
              and (ib.base_asset, ib.quote_asset, ib.market_type) <> (iz.base_asset, iz.quote_asset, iz.market_type)
        ) x
    ) p
    where p.problems is not null;

    select coalesce(bool_or(pc.retention is not null), false) into v_audit_pruned
    from partman.part_config pc
    where pc.parent_table = 'audit.log';

    -- why two events for a key-changing UPDATE: it is logged under the new key, where it is the
    -- row's arrival (as an INSERT), and ends the story of the old key (as a DELETE), where its old
    -- row must still be that key's latest image
    return query
    with events as (
        select l.audit_id, l.table_name, l.row_key, l.operation, l.old_row, l.new_row,
               l.operation in ('INSERT', 'BASELINE') or m.moved_key is not null as arrives,
               l.operation = 'DELETE' as leaves
        from audit.log l
        cross join lateral (
            select case when l.operation = 'UPDATE' then internal.audit_moved_key(l.row_key, l.old_row) end as moved_key
        ) m
        union all
        select l.audit_id, l.table_name, m.moved_key, l.operation, l.old_row, null, false, true
        from audit.log l
        cross join lateral (select internal.audit_moved_key(l.row_key, l.old_row) as moved_key) m
        where l.operation = 'UPDATE' and m.moved_key is not null
    ),
    chained as (
        select e.*,
               lag(e.operation) over w as prev_operation,
               lag(e.leaves) over w as prev_leaves,
               lag(e.new_row) over w as prev_new_row,
               lag(e.audit_id) over w as prev_audit_id,
               -- "an INSERT", "an UPDATE", "a DELETE", "a BASELINE"
               case when e.operation in ('INSERT', 'UPDATE') then 'an ' else 'a ' end || e.operation as an_operation,
               case when lag(e.operation) over w in ('INSERT', 'UPDATE') then 'an ' else 'a ' end
                   || lag(e.operation) over w as an_prev_operation
        from events e
        window w as (partition by e.table_name, e.row_key order by e.audit_id)
    )
    select 'audit_chain',
           jsonb_build_object('table', c.table_name, 'key', c.row_key::jsonb, 'audit_id', c.audit_id),
           case
               when c.prev_operation is null then format('the first image of this row is %s, not an INSERT', c.an_operation)
               when c.arrives and c.operation = 'UPDATE'
                   then format('UPDATE moving a row to this key, last seen by %s (audit row %s), not deleted',
                               c.an_prev_operation, c.prev_audit_id)
               when c.arrives
                   then format('%s of a row last seen by %s (audit row %s), not deleted',
                               c.operation, c.an_prev_operation, c.prev_audit_id)
               when c.prev_leaves and c.prev_operation = 'UPDATE'
                   then format('%s of a row moved to another key by audit row %s', c.operation, c.prev_audit_id)
               when c.prev_leaves then format('%s of a row deleted by audit row %s', c.operation, c.prev_audit_id)
               else format('%s whose old row is not the image of audit row %s: %s', c.operation, c.prev_audit_id,
                           internal.jsonb_differences(c.old_row, c.prev_new_row))
           end
    from chained c
    where case
              when c.prev_operation is null then not c.arrives and not v_audit_pruned
              when c.arrives then not c.prev_leaves
              when c.prev_leaves then true
              else internal.jsonb_differences(c.old_row, c.prev_new_row) is not null
          end;

    for v_table in select * from internal.audited_tables() a order by a.table_name loop
        return query execute format(
            $q$
            select 'audit_current',
                   jsonb_build_object('table', %1$L, 'key', r.row_key::jsonb),
                   case when l.audit_id is null then 'the row has no audit image'
                        when l.operation = 'DELETE' then format('the row exists, but audit row %%s deleted it', l.audit_id)
                        else format('differs from audit row %%s: %%s (image -> row)', l.audit_id,
                                    internal.jsonb_differences(l.new_row, r.image))
                   end
            from (select audit.row_key(x.image, %2$L, %3$L) as row_key, x.image
                  from (select to_jsonb(t) - %4$L::text[] as image from %5$s t) x) r
            left join lateral (
                select a.audit_id, a.operation, a.new_row
                from audit.log a
                where a.table_name = %1$L and a.row_key = r.row_key
                order by a.audit_id desc
                limit 1
            ) l on true
            where case when l.audit_id is null then not %6$L::boolean
                       when l.operation = 'DELETE' then true
                       else internal.jsonb_differences(l.new_row, r.image) is not null
                  end
            $q$,
            v_table.table_name, v_table.key1, v_table.key2, v_table.redacted, v_table.relid, v_audit_pruned);
        -- why the other way round too: a row deleted behind the log's back (triggers disabled, or
        -- session_replication_role = replica) leaves no row to compare and no later change to
        -- carry the gap; the log still has it, its latest image not a DELETE
        return query execute format(
            $q$
            select 'audit_current',
                   jsonb_build_object('table', %1$L, 'key', l.row_key::jsonb),
                   format('the row does not exist, but the audit log never deleted it (latest audit row %%s: %%s)',
                          l.audit_id, l.operation)
            from (select distinct on (e.row_key) e.row_key, e.audit_id, e.operation, e.leaves
                  from (select a.row_key, a.audit_id, a.operation, a.operation = 'DELETE' as leaves
                        from audit.log a
                        where a.table_name = %1$L
                        union all
                        -- an UPDATE that moved a row to another key ends the old key's story
                        select m.moved_key, a.audit_id, a.operation, true
                        from audit.log a
                        cross join lateral (select internal.audit_moved_key(a.row_key, a.old_row) as moved_key) m
                        where a.table_name = %1$L and a.operation = 'UPDATE' and m.moved_key is not null) e
                  order by e.row_key, e.audit_id desc) l
            where not l.leaves
              and not exists (select from %4$s t where audit.row_key(to_jsonb(t), %2$L, %3$L) = l.row_key)
            $q$,
            v_table.table_name, v_table.key1, v_table.key2, v_table.relid);
    end loop;
end;
$$;
comment on function ops.check_invariants() is
    'Every violation of the stored state''s invariants (positions, trades, orders, their keys and events, rollups, snapshots, spread trades, audit log), one row each; none when sound. spreadedge check runs it.';
