-- spreadedge functions: pre-trade risk limits
-- monitor.set_risk_limit and monitor.set_kill_switch keep monitor.risk_limits; trading.place_order
-- (30_trading_orders.sql) and trading.amend_order (30_trading_orders_amend.sql) read the strategy's
-- limits and, when it has any, call internal.risk_breach with them, which records a breach
-- (internal.record_risk_event); place_order then stores the order as rejected, and amend_order
-- leaves it as it was.

create or replace function internal.risk_scope(p_strategy text, p_exchange text, p_symbol text)
    returns table (strategy_id integer, exchange_id smallint, instrument_id integer)
    stable
    language plpgsql
as $$
-- The ids of a limit's scope: a strategy, optionally an exchange, optionally an instrument on it.
-- Raises unknown_strategy, unknown_exchange, unknown_instrument, or invalid_risk_limit (22S13) for
-- a symbol without its exchange.
begin
    if p_symbol is not null and p_exchange is null then
        raise exception 'symbol "%" needs its exchange', p_symbol
            using errcode = '22S13', hint = 'Give exchange too: a symbol names an instrument on one exchange.';
    end if;
    return query
    select (internal.find_strategy(p_strategy)).strategy_id,
           case when p_exchange is not null then internal.exchange_id(p_exchange) end,
           case when p_symbol is not null then (internal.find_instrument(p_exchange, p_symbol)).instrument_id end;
end;
$$;
comment on function internal.risk_scope(text, text, text) is
    'Strategy, exchange and instrument ids of a risk limit scope; raises 23S01-23S03, or 22S13 for a symbol without exchange.';

create or replace function internal.check_limit_value(p_value numeric, p_what text)
    returns numeric
    immutable
    language plpgsql
as $$
-- A limit as stored: null (keep) and 0 (remove, stored as null) pass through, a positive finite
-- value is the limit; anything else raises invalid_risk_limit (22S13).
begin
    if p_value is not null and p_value <> 0 and not (p_value > 0 and p_value < 'Infinity') then
        raise exception '% must be positive and finite (0 removes it), got %', p_what, p_value
            using errcode = '22S13';
    end if;
    return nullif(p_value, 0);
end;
$$;
comment on function internal.check_limit_value(numeric, text) is
    'Checks a risk limit value (positive finite; 0 removes the limit, returned as null); raises 22S13.';

create or replace function monitor.set_risk_limit(
    strategy              text,
    exchange              text default null,
    symbol                text default null,
    max_order_notional    numeric default null,
    max_position_notional numeric default null,
    max_open_orders       integer default null,
    max_daily_loss        numeric default null,
    channels              text[] default null,
    limit_asset           text default null
)
    returns integer
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Set the limits of a scope (strategy; exchange; instrument = exchange + symbol). A limit left null
-- keeps its current value, 0 removes it; channels null keeps them (email for a new scope), and a
-- channel given twice is kept once, where it first appears. limit_asset names the asset the
-- notional and loss limits are in (an asset some instrument trades, any case); null keeps it, ''
-- goes back to each instrument's quote asset (see monitor.risk_limits.limit_asset). A scope without
-- a row yet must be given a limit, channels or limit_asset (22S13). Returns the limit row's id.
#variable_conflict use_column
declare
    -- why "C": an asset code is ASCII; a Turkish collation's upper('link') is 'LİNK', which the check refuses
    v_asset text := upper(nullif(set_risk_limit.limit_asset, '') collate "C");
    v_scope record;
    v_id    integer;
    v_channels monitor.notification_channel[];
    v_order numeric := internal.check_limit_value(set_risk_limit.max_order_notional, 'max_order_notional');
    v_pos   numeric := internal.check_limit_value(set_risk_limit.max_position_notional, 'max_position_notional');
    v_open  numeric := internal.check_limit_value(set_risk_limit.max_open_orders, 'max_open_orders');
    v_loss  numeric := internal.check_limit_value(set_risk_limit.max_daily_loss, 'max_daily_loss');
begin
    perform internal.require_permission('risk:manage');
    if set_risk_limit.channels is not null
       -- why array_ndims: array_position raised a bare 0A000 on a two-dimensional array
       -- ({{email}}); a null element is never contained (<@), so that check refuses nulls too
       and (array_ndims(set_risk_limit.channels) > 1
            or not set_risk_limit.channels <@ enum_range(null::monitor.notification_channel)::text[]) then
        raise exception 'channels must be a list of email, slack, discord, webhook, got %', set_risk_limit.channels
            using errcode = '22S13';
    end if;
    -- why once each: a channel listed twice would notify every breach twice on it
    if set_risk_limit.channels is not null then
        v_channels := array(select u.c::monitor.notification_channel
                            from unnest(set_risk_limit.channels) with ordinality u(c, n)
                            group by u.c order by min(u.n));
    end if;
    -- why only assets instruments trade: amounts are converted to it at their market prices, so
    -- an asset no instrument trades (a typo: USTD) would reject every order it has to convert
    if v_asset is not null and not exists (select from ref.instruments i
                                           where i.base_asset = v_asset or i.quote_asset = v_asset) then
        raise exception 'limit_asset "%" is an asset no instrument trades', left(set_risk_limit.limit_asset, 40)
            using errcode = '22S13',
                  hint = 'Name an instrument''s base or quote asset, e.g. USDT, or '''' for each instrument''s quote asset.';
    end if;
    select * into v_scope from internal.risk_scope(set_risk_limit.strategy, set_risk_limit.exchange, set_risk_limit.symbol);
    -- why: placements checked against the strategy's limits hold this lock shared until they
    -- commit (trading.place_order), so a changed limit waits for them and holds every later one
    perform pg_advisory_xact_lock('trading.strategies'::regclass::oid::integer, v_scope.strategy_id);
    -- why: a new scope given nothing made a row that limits nothing (`risk set alpha` said the
    -- limits were set) and made every placement of the strategy run the check for nothing. Channels
    -- alone are something: where its kill switch will be notified
    -- why cardinality: an empty channel list is nowhere to notify, so nothing either
    if num_nonnulls(v_order, v_pos, v_open, v_loss, nullif(cardinality(v_channels), 0), v_asset) = 0
       and not exists (select from monitor.risk_limits l
                       where (l.strategy_id, l.exchange_id, l.instrument_id) is not distinct from
                             (v_scope.strategy_id, v_scope.exchange_id, v_scope.instrument_id)) then
        raise exception 'nothing to set: this scope has no risk limits yet, and no limit, channel or limit_asset was given'
            using errcode = '22S13',
                  hint = 'Give max_order_notional, max_position_notional, max_open_orders or max_daily_loss (positive), or channels.';
    end if;
    insert into monitor.risk_limits as l
        (strategy_id, exchange_id, instrument_id, max_order_notional, max_position_notional, max_open_orders,
         max_daily_loss, channels, updated_by, limit_asset)
    values
        (v_scope.strategy_id, v_scope.exchange_id, v_scope.instrument_id, v_order, v_pos, v_open, v_loss,
         coalesce(v_channels, '{email}'),
         nullif(current_setting('spreadedge.actor', true), ''), v_asset)
    on conflict (strategy_id, exchange_id, instrument_id) do update
    set max_order_notional = case when set_risk_limit.max_order_notional is null then l.max_order_notional else v_order end,
        max_position_notional = case when set_risk_limit.max_position_notional is null then l.max_position_notional else v_pos end,
        max_open_orders = case when set_risk_limit.max_open_orders is null then l.max_open_orders else v_open end,
        max_daily_loss = case when set_risk_limit.max_daily_loss is null then l.max_daily_loss else v_loss end,
        channels = coalesce(v_channels, l.channels),
        limit_asset = case when set_risk_limit.limit_asset is null then l.limit_asset else v_asset end,
        updated_at = now(),
        updated_by = excluded.updated_by
    returning l.limit_id into v_id;
    return v_id;
end;
$$;
comment on function monitor.set_risk_limit(text, text, text, numeric, numeric, integer, numeric, text[], text) is
    'Set the pre-trade limits of a strategy (optionally of one exchange or instrument): null keeps a limit, 0 removes it; limit_asset names the asset the notional and loss limits are in ('''': each instrument''s quote asset). Waits for the strategy''s placements in flight that are checked against its limits; later ones are checked against the new limits. Returns the limit id.';

-- It gained p_amendment (trading.amend_order's refusals say so in their notification).
drop function if exists internal.record_risk_event(integer, integer, bigint, integer, monitor.risk_limit_kind, numeric, numeric, text);

create or replace function internal.record_risk_event(
    p_strategy_id   integer,
    p_instrument_id integer,
    p_order_id      bigint,
    p_limit_id      integer,
    p_kind          monitor.risk_limit_kind,
    p_limit_value   numeric,
    p_observed      numeric,
    p_reason        text,
    p_amendment     boolean default false
)
    returns bigint
    volatile
    language plpgsql
as $$
-- Record a risk event and queue its notification on the limit's channels; returns its id. The
-- payload names the strategy, the exchange (the instrument's, else the limit's scope's: a kill
-- switch of one exchange has no instrument) and the instrument. The subject says the order was
-- rejected, or with p_amendment that its amendment was refused (trading.amend_order: the order
-- keeps working with its old values).
declare
    v_id      bigint;
    v_subject text;
begin
    insert into monitor.risk_events (strategy_id, instrument_id, order_id, limit_id, limit_kind, limit_value,
                                     observed_value, reason)
    values (p_strategy_id, p_instrument_id, p_order_id, p_limit_id, p_kind, p_limit_value, p_observed, p_reason)
    returning risk_event_id into v_id;
    select format('[RISK] %s: %s', s.name,
                  case when p_order_id is null then p_reason
                       else format('order %s %s: %s', p_order_id,
                                   case when p_amendment then 'amendment refused' else 'rejected' end, p_reason) end)
    into v_subject
    from trading.strategies s where s.strategy_id = p_strategy_id;
    perform internal.queue_notifications(
        l.channels,
        jsonb_build_object('source', 'risk', 'subject', v_subject, 'text', v_subject, 'risk_event_id', v_id,
                           'strategy', (select s.name from trading.strategies s where s.strategy_id = p_strategy_id),
                           'exchange', (select e.code from ref.exchanges e
                                        where e.exchange_id = coalesce((select i.exchange_id from ref.instruments i
                                                                        where i.instrument_id = p_instrument_id),
                                                                       l.exchange_id)),
                           'instrument', (select e.code || '/' || i.symbol from ref.instruments i
                                          join ref.exchanges e on e.exchange_id = i.exchange_id
                                          where i.instrument_id = p_instrument_id),
                           'order_id', p_order_id, 'limit_kind', p_kind, 'limit_value', p_limit_value,
                           'observed_value', p_observed, 'reason', p_reason, 'at', internal.iso_utc(now())),
        v_id)
    from monitor.risk_limits l
    where l.limit_id = p_limit_id;
    return v_id;
end;
$$;
comment on function internal.record_risk_event(integer, integer, bigint, integer, monitor.risk_limit_kind, numeric, numeric, text, boolean) is
    'Records a risk event and queues its notification (strategy, exchange, instrument, limit, reason; an order rejected, or its amendment refused) on the limit''s channels.';

create or replace function monitor.set_kill_switch(
    strategy text,
    enabled  boolean,
    exchange text default null,
    symbol   text default null,
    reason   text default null
)
    returns void
    volatile
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Turn the kill switch of a scope on (every new order in it is rejected) or off. A change is
-- recorded as a risk event and notified; setting it to what it already is changes nothing. The
-- reason names a narrower scope than the strategy: 'kill switch on for okx', 'kill switch off
-- for okx/BTC-USDT-SWAP' (the strategy's own: 'kill switch on'), then ': ' and reason if given.
#variable_conflict use_column
declare
    v_scope record;
    v_limit monitor.risk_limits;
    v_was   boolean;
begin
    perform internal.require_permission('risk:manage');
    if set_kill_switch.enabled is null then
        raise exception 'enabled must be true or false, got null' using errcode = '22S13';
    end if;
    select * into v_scope from internal.risk_scope(set_kill_switch.strategy, set_kill_switch.exchange, set_kill_switch.symbol);
    -- why: placements checked against the strategy's limits hold this lock shared until they
    -- commit (trading.place_order), so a kill switch turned on waits for those in flight, and once
    -- it returns every order committed after it was checked against it
    perform pg_advisory_xact_lock('trading.strategies'::regclass::oid::integer, v_scope.strategy_id);
    select l.kill_switch into v_was
    from monitor.risk_limits l
    where (l.strategy_id, l.exchange_id, l.instrument_id) is not distinct from
          (v_scope.strategy_id, v_scope.exchange_id, v_scope.instrument_id)
    for update;
    if coalesce(v_was, false) = set_kill_switch.enabled then
        return;
    end if;
    insert into monitor.risk_limits as l (strategy_id, exchange_id, instrument_id, kill_switch, updated_by)
    values (v_scope.strategy_id, v_scope.exchange_id, v_scope.instrument_id, set_kill_switch.enabled,
            nullif(current_setting('spreadedge.actor', true), ''))
    on conflict (strategy_id, exchange_id, instrument_id) do update
    set kill_switch = excluded.kill_switch, updated_at = now(), updated_by = excluded.updated_by
    -- why: the scope had no row to lock above, and a concurrent call made it; that call already
    -- turned the switch and recorded the change, so an event here would announce it twice
    where l.kill_switch is distinct from excluded.kill_switch
    returning l.* into v_limit;
    if not found then
        return;
    end if;
    perform internal.record_risk_event(
        v_scope.strategy_id, v_scope.instrument_id, null, v_limit.limit_id, 'kill_switch', null, null,
        concat_ws(': ',
                  format('kill switch %s', case when set_kill_switch.enabled then 'on' else 'off' end)
                  || coalesce(' for ' || (select e.code from ref.exchanges e where e.exchange_id = v_scope.exchange_id)
                              || coalesce('/' || (select i.symbol from ref.instruments i
                                                  where i.instrument_id = v_scope.instrument_id), ''),
                              ''),
                  -- why nullif: an empty reason left "kill switch on: " in the event and its message
                  nullif(btrim(set_kill_switch.reason), '')));
end;
$$;
comment on function monitor.set_kill_switch(text, boolean, text, text, text) is
    'Turn a strategy''s (or exchange''s, or instrument''s) kill switch on or off; the change is a notified risk event whose reason names the exchange or instrument scope. Waits for the strategy''s placements in flight that are checked against its limits, so every order committed after it returns was checked against the switch.';

create or replace function internal.working_orders(
    p_strategy_id   integer,
    p_exchange_id   smallint,
    p_instrument_id integer,
    p_at_most       integer
)
    returns bigint
    stable
    -- why generic plans: a custom plan of this count (orders is partitioned) costs more to make
    -- than the count costs to run, and PL/pgSQL would make one on every call
    set plan_cache_mode = force_generic_plan
    language plpgsql
as $$
-- Working orders (new, open, partially filled) of a strategy, optionally of one exchange or
-- instrument, counted up to p_at_most (null: all of them): the count never reads more than the
-- limit needs.
begin
    return (select count(*)
            from (select
                  from trading.orders o
                  where o.strategy_id = p_strategy_id and o.status in ('new', 'open', 'partially_filled')
                    and (p_instrument_id is null or o.instrument_id = p_instrument_id)
                    and (p_exchange_id is null
                         or o.instrument_id in (select i.instrument_id from ref.instruments i
                                                where i.exchange_id = p_exchange_id))
                  limit p_at_most) w);
end;
$$;
comment on function internal.working_orders(integer, smallint, integer, integer) is
    'Working orders of a strategy (optionally one exchange or instrument), counted up to a limit (null: all).';

-- The check used to read the strategy's limits itself, one statement more on every checked
-- placement: trading.place_order reads them anyway to know whether to check, and now passes them.
drop function if exists internal.risk_breach(integer, ref.instruments, trading.order_side, numeric, numeric);
-- It returned the breach as a record of five OUT parameters, whose row type PostgreSQL built
-- again on every call; it now records the breach itself and returns the reason alone.
drop function if exists internal.risk_breach(integer, monitor.risk_limits[], ref.instruments, trading.order_side, numeric, numeric);
-- It gained p_amending for trading.amend_order.
drop function if exists internal.risk_breach(integer, bigint, monitor.risk_limits[], ref.instruments, trading.order_side, numeric, numeric);

-- (Amounts were converted at internal.limit_rate's rate, internal.asset_price_as's price of the
-- quote asset: for an inverse pair 1 / its mark, rounded to 16 digits, so an order of 1 BTC at
-- 60,000 USDT was 1.00000000000000000002 BTC and broke a limit of 1 BTC.)
drop function if exists internal.in_limit_asset(numeric, numeric, text);
drop function if exists internal.limit_rate(smallint, text, text, integer);

create or replace function internal.to_limit_asset(p_amount numeric, p_exchange_id smallint, p_asset text,
                                                   p_limit_asset text, p_strategy_id integer)
    returns numeric
    stable
    language sql
as $$
    -- p_amount, in p_asset (an instrument's quote asset on exchange p_exchange_id), in a risk
    -- limit's limit_asset, at the pair trading.asset_price would choose (internal.asset_amount_as:
    -- times its mark, or divided by an inverse pair's), marked as the strategy's owner sees the
    -- market (another trader's private fill never values it); null when no pair has a price.
    -- why not times asset_price_as's price: for an inverse pair it is 1 / the mark rounded to 16
    -- digits, and 60,000 USDT x 1/60,000 came out 1.00000000000000000002 BTC, beyond a limit of
    -- 1 BTC that the order meets exactly
    select internal.asset_amount_as(p_amount, p_exchange_id, p_asset, p_limit_asset, true,
                                    (select s.owner_user_id from trading.strategies s where s.strategy_id = p_strategy_id))
$$;
comment on function internal.to_limit_asset(numeric, smallint, text, text, integer) is
    'An amount in an instrument''s quote asset converted into a risk limit''s limit_asset (internal.asset_amount_as: times its pair''s mark, or divided by an inverse pair''s), as the strategy''s owner sees the market; null when unknown.';

create or replace function internal.order_in_limit_asset(p_amount numeric, p_exchange_id smallint, p_asset text,
                                                         p_limit_asset text, p_strategy_id integer)
    returns numeric
    stable
    language plpgsql
as $$
-- An order's notional p_amount converted into a risk limit's limit_asset
-- (internal.to_limit_asset). Raises invalid_argument (22S09) when it is too large a number for
-- numeric.
-- why: place_order refuses an order whose own notional overflows, but one that fits (9e131071
-- BTC) overflowed once converted (x 60,000 USDT a BTC), and the placement failed with a bare 22003
begin
    -- why the test first: only an amount that may pass numeric's 10^131072 pays for the block
    -- that catches it (a subtransaction)
    if abs(p_amount) < 1e65000 then
        return internal.to_limit_asset(p_amount, p_exchange_id, p_asset, p_limit_asset, p_strategy_id);
    end if;
    begin
        return internal.to_limit_asset(p_amount, p_exchange_id, p_asset, p_limit_asset, p_strategy_id);
    exception when numeric_value_out_of_range then
        raise exception 'order notional % is too large a number in %', btrim(to_char(p_amount, '9.999EEEE')),
            p_limit_asset
            using errcode = '22S09',
                  hint = 'Check the quantity and the price: converted into the risk limit''s limit_asset, the notional overflows numeric.';
    end;
end;
$$;
comment on function internal.order_in_limit_asset(numeric, smallint, text, text, integer) is
    'An order''s notional converted into a risk limit''s limit_asset (internal.to_limit_asset; null when unknown); 22S09 when the result overflows numeric.';

create or replace function internal.risk_amount_text(p_amount numeric, p_limit numeric, p_at_limit_breaks boolean)
    returns text
    immutable
    language sql
as $$
    -- An observed amount as a risk reason shows it: without trailing zeros, rounded to 12
    -- decimals (or to the limit's own scale when finer), with as many more as it takes to stay
    -- beyond p_limit (p_at_limit_breaks: at or beyond it), as the unrounded amount is.
    -- why: an amount converted at an inverse pair's price (a division) or at a quote's mid has
    -- 20 to 40 digits, which made the reason unreadable; rounded to 12 decimals alone, an amount
    -- just above its limit read "order notional 1 exceeds max_order_notional 1"
    select trim_scale(round(p_amount,
                            (select min(s)
                             from generate_series(greatest(12, scale(p_limit)),
                                                  greatest(12, scale(p_limit), scale(p_amount))) s
                             where case when p_at_limit_breaks then round(p_amount, s) >= p_limit
                                        else round(p_amount, s) > p_limit end)))::text
$$;
comment on function internal.risk_amount_text(numeric, numeric, boolean) is
    'An observed risk amount for a reason: rounded to 12 decimals (the limit''s scale when finer), more when needed to stay beyond the limit, trailing zeros trimmed.';

create or replace function internal.owner_fill_price(p_instrument_id integer, p_strategy_id integer)
    returns numeric
    stable
    -- why plpgsql: its plans are kept for the session (see trading.mark_price), and it is called
    -- only for a position without market data, so a placement whose positions all have some never
    -- runs it
    language plpgsql
as $$
-- The latest fill price of an instrument as the owner of strategy p_strategy_id sees it
-- (internal.owner_mark_price's fallback): any strategy's fill for an unowned strategy or an owner
-- with strategies:all, else the latest fill of the owner's own strategies; null when none.
-- why: the risk check valued a position without market data at the instrument's latest fill,
-- whoever made it, and its reason and risk event (which the owner reads) told a trader another
-- trader's private fill price
declare
    v_owner bigint;
begin
    select s.owner_user_id into v_owner from trading.strategies s where s.strategy_id = p_strategy_id;
    -- why apart: an unowned strategy (the engine's) sees every fill, and owner_mark_price would
    -- read the market data the caller just found missing again
    if v_owner is null then
        return internal.latest_fill_price(p_instrument_id);
    end if;
    -- the caller found no market data, so this is owner_mark_price's fallback
    return internal.owner_mark_price(p_instrument_id, v_owner);
end;
$$;
comment on function internal.owner_fill_price(integer, integer) is
    'Latest fill price of an instrument as a strategy''s owner sees it (internal.owner_mark_price); used by the risk check for a position without market data.';

create or replace function internal.risk_breach(
    p_strategy_id integer,
    p_order_id    bigint,
    p_limits      monitor.risk_limits[],
    p_instrument  ref.instruments,
    p_side        trading.order_side,
    p_quantity    numeric,
    p_price       numeric,
    p_amending    boolean default false
)
    returns text
    -- why volatile: it takes the strategy's advisory lock before counting working orders, and
    -- records the breach
    volatile
    -- why generic plans: the daily-loss sum looked cheaper custom-planned, so PL/pgSQL planned it
    -- again on every order (0.09 ms of planning for a 0.04 ms sum)
    set plan_cache_mode = force_generic_plan
    -- why no sequential scans: the generic plan read the whole (small) positions table for the
    -- strategy's dozen rows rather than probe its primary key, 0.2 M instructions more per check
    set enable_seqscan = off
    language plpgsql
as $$
-- The first limit new order p_order_id (its key written, its row not yet) would break: recorded
-- as a risk event of the order with its notification queued, and its reason returned; null when
-- the order breaks none. p_limits are the strategy's limits (any order, any scope: those of
-- another exchange or instrument are skipped). p_price values the order (its limit or stop price,
-- else the mark price; null when none is known: an order that a notional limit must value is then
-- refused). Limits of every scope the order falls in apply: kill switches first, then the
-- narrowest scope first; within a limit: kill switch, order notional (an order without a price
-- breaks it), open orders, position notional, daily loss (the realized PnL of today's UTC day
-- and of any later day: fills stamped ahead of the clock).
-- Amounts are in the limit's limit_asset, converted by internal.to_limit_asset (an amount that cannot
-- be converted breaks the limit); a limit without one is in the order's quote asset and adds up
-- only the positions and PnL of instruments quoted in it (never BTC and USDT at par).
-- An order that only reduces its instrument's position (the other side, at most the position's
-- quantity) is not held to max_position_notional or max_daily_loss, so that a strategy beyond
-- them can still get out; the kill switch, max_order_notional and max_open_orders hold every
-- order. Checks read committed state; before counting working orders the placement takes the
-- strategy's advisory lock until commit, so that placements of a strategy with max_open_orders
-- take turns and that count never misses a concurrent order; such a placement in a REPEATABLE
-- READ or SERIALIZABLE transaction (whose snapshot predates its turn) is refused with 22S09.
-- The other positions of a position notional are valued at their market mark, else at the
-- latest fill the strategy's owner sees (internal.owner_fill_price), else their entry price.
-- A measure is read only for a limit that has it and only until a breach is found.
-- With p_amending, p_order_id is a working order that trading.amend_order would enlarge to
-- p_quantity at p_price: max_open_orders does not apply (the count of working orders does not
-- change), and the risk event's notification says the amendment was refused.
-- why few statements and expressions: PL/pgSQL sets up each expression again in every
-- transaction, so on this path each one costs every checked placement
declare
    l          monitor.risk_limits;
    v_kind     monitor.risk_limit_kind;
    v_value    numeric;
    v_observed numeric;
    -- the strategy's position in the order's instrument, read once by the first limit that needs
    -- it, and whether the order only reduces it
    v_held     numeric;
    v_reduces  boolean;
    v_reason   text;
begin
    -- why sorted only here: a strategy mostly has one limit, and sorting in the caller's
    -- statement would cost every placement
    if cardinality(p_limits) > 1 then
        select array_agg(r order by r.kill_switch desc, r.instrument_id nulls last, r.exchange_id nulls last)
        into p_limits
        from unnest(p_limits) r;
    end if;
    <<limits>>
    foreach l in array p_limits loop
        -- a limit of another exchange or instrument (null scope columns match every order)
        continue when l.exchange_id <> p_instrument.exchange_id or l.instrument_id <> p_instrument.instrument_id;
        if l.kill_switch then
            v_kind := 'kill_switch';
            exit limits;
        end if;
        -- why coalesce: an order without a price, or whose quote asset has no price in limit_asset,
        -- cannot be valued and breaks the limit
        if l.max_order_notional is not null
           and coalesce(case when l.limit_asset is null then p_quantity * p_price * p_instrument.multiplier
                             else internal.order_in_limit_asset(p_quantity * p_price * p_instrument.multiplier,
                                                                p_instrument.exchange_id, p_instrument.quote_asset,
                                                                l.limit_asset, p_strategy_id) end
                        > l.max_order_notional, true) then
            v_kind := 'max_order_notional';
            v_value := l.max_order_notional;
            v_observed := case when l.limit_asset is null then p_quantity * p_price * p_instrument.multiplier
                               else internal.order_in_limit_asset(p_quantity * p_price * p_instrument.multiplier,
                                                                  p_instrument.exchange_id, p_instrument.quote_asset,
                                                                  l.limit_asset, p_strategy_id) end;
            exit limits;
        end if;
        if l.max_open_orders is not null and not p_amending then
            -- why: the lock below makes such placements take turns, but only a READ COMMITTED
            -- statement counts with a snapshot taken after its turn came; a REPEATABLE READ or
            -- SERIALIZABLE transaction counts in the snapshot of its first statement, which misses
            -- an order another session placed and committed since (with max_open_orders 1, both
            -- were placed). READ UNCOMMITTED is READ COMMITTED in PostgreSQL
            perform internal.require_read_committed('an order under a max_open_orders limit',
                'Place it in a transaction at the default isolation level: the count of working orders must see the orders placed before its turn.');
            perform pg_advisory_xact_lock('monitor.risk_limits'::regclass::oid::integer, p_strategy_id);
            v_observed := internal.working_orders(p_strategy_id, l.exchange_id, l.instrument_id,
                                                  l.max_open_orders) + 1;
            if v_observed > l.max_open_orders then
                v_kind := 'max_open_orders';
                v_value := l.max_open_orders;
                -- why count them all now: the count above stops at the limit, and the reason and
                -- the risk event said "3 working orders" of a strategy with 50; only a breach pays
                v_observed := internal.working_orders(p_strategy_id, l.exchange_id, l.instrument_id, null) + 1;
                exit limits;
            end if;
        end if;
        if v_reduces is null and (l.max_position_notional is not null or l.max_daily_loss is not null) then
            select p.quantity, case when p_side = 'buy' then -p.quantity else p.quantity end >= p_quantity
            into v_held, v_reduces
            from trading.positions p
            where p.strategy_id = p_strategy_id and p.instrument_id = p_instrument.instrument_id;
            if not found then
                v_held := 0;
                v_reduces := false;
            end if;
        end if;
        if l.max_position_notional is not null and not v_reduces then
            if p_price is null then
                v_kind := 'max_position_notional';
                v_value := l.max_position_notional;
                v_observed := null;
                exit limits;
            end if;
            -- the order's position after it, at p_price
            v_observed := abs(v_held + case when p_side = 'buy' then p_quantity else -p_quantity end)
                          * p_instrument.multiplier * p_price;
            -- and the scope's other positions at their mark (an instrument's limit has none)
            -- why the position's own multiplier (trading.positions.multiplier): joining
            -- the positions to ref.instruments for it planned a sort and a merge join,
            -- a third of the statement's instructions
            if l.limit_asset is not null then
                -- every position in limit_asset, whatever the scope (one statement: such limits
                -- are rare, and their conversions cost more than the plan); null when one of
                -- them cannot be converted
                select internal.order_in_limit_asset(v_observed, p_instrument.exchange_id, p_instrument.quote_asset,
                                                     l.limit_asset, p_strategy_id)
                       + case when bool_or(v.notional is null) then null else coalesce(sum(v.notional), 0) end
                into v_observed
                from (select internal.to_limit_asset(
                                 abs(p.quantity) * p.multiplier
                                 * coalesce(internal.market_mark(lp.bid, lp.bid_size, lp.ask, lp.ask_size, lp.quoted_at,
                                                                 lp.last_price, lp.traded_at),
                                            internal.owner_fill_price(p.instrument_id, p_strategy_id), p.avg_entry_price),
                                 i.exchange_id, i.quote_asset, l.limit_asset, p_strategy_id) as notional
                      from trading.positions p
                      join ref.instruments i on i.instrument_id = p.instrument_id
                      left join market.latest_prices lp on lp.instrument_id = p.instrument_id
                      where p.strategy_id = p_strategy_id and p.instrument_id <> p_instrument.instrument_id
                        and p.quantity <> 0
                        and l.instrument_id is null
                        and (l.exchange_id is null or i.exchange_id = l.exchange_id)) v;
            elsif l.instrument_id is null and l.exchange_id is null then
                select v_observed + coalesce(sum(abs(p.quantity) * p.multiplier
                           -- trading.mark_price's steps, without its call: the latest
                           -- fill only for an instrument without market data, as the
                           -- strategy's owner sees fills (internal.owner_fill_price)
                           * coalesce(internal.market_mark(lp.bid, lp.bid_size, lp.ask, lp.ask_size, lp.quoted_at,
                                                           lp.last_price, lp.traded_at),
                                      internal.owner_fill_price(p.instrument_id, p_strategy_id), p.avg_entry_price)), 0)
                into v_observed
                from trading.positions p
                left join market.latest_prices lp on lp.instrument_id = p.instrument_id
                where p.strategy_id = p_strategy_id and p.instrument_id <> p_instrument.instrument_id
                  and p.quantity <> 0
                  -- why the position's own quote asset (trading.positions.quote_asset): a probe
                  -- of ref.instruments per position cost a placement 8 %
                  and p.quote_asset = p_instrument.quote_asset;
            elsif l.instrument_id is null then
                -- an exchange's limit: why a statement of its own, as for the daily loss below
                select v_observed + coalesce(sum(abs(p.quantity) * p.multiplier
                           * coalesce(internal.market_mark(lp.bid, lp.bid_size, lp.ask, lp.ask_size, lp.quoted_at,
                                                           lp.last_price, lp.traded_at),
                                      internal.owner_fill_price(p.instrument_id, p_strategy_id), p.avg_entry_price)), 0)
                into v_observed
                from trading.positions p
                left join market.latest_prices lp on lp.instrument_id = p.instrument_id
                where p.strategy_id = p_strategy_id and p.instrument_id <> p_instrument.instrument_id
                  and p.quantity <> 0
                  and p.quote_asset = p_instrument.quote_asset
                  and p.instrument_id in (select i.instrument_id from ref.instruments i
                                          where i.exchange_id = l.exchange_id);
            end if;
            if v_observed is null or v_observed > l.max_position_notional then
                v_kind := 'max_position_notional';
                v_value := l.max_position_notional;
                exit limits;
            end if;
        end if;
        if l.max_daily_loss is not null and not v_reduces then
            -- today's loss is that of today's UTC day and of any later one: a trade is never in the
            -- future, so a day row ahead of the clock holds fills stamped ahead of it (written while
            -- it ran ahead and since set right, or an exchange's time up to a day ahead); counted
            -- only on their own day, a loss made hours ago let the strategy trade on past its limit
            -- why one statement per scope: a generic plan of one statement for all three
            -- filtered every row on the scope and started up the exchange's subquery each time
            if l.limit_asset is not null then
                -- every instrument's PnL in limit_asset, whatever the scope (see above); null when
                -- one of them cannot be converted
                select -case when bool_or(v.pnl is null) then null else coalesce(sum(v.pnl), 0) end
                into v_observed
                -- why 0 for a day without realized PnL: a day of opening fills of an instrument
                -- whose quote asset has no price in limit_asset has nothing to convert
                from (select case when d.realized_pnl = 0 then 0
                                  else internal.to_limit_asset(d.realized_pnl, i.exchange_id, i.quote_asset,
                                                               l.limit_asset, p_strategy_id)
                             end as pnl
                      from trading.daily_pnl d
                      join ref.instruments i on i.instrument_id = d.instrument_id
                      where d.strategy_id = p_strategy_id and d.day >= (now() at time zone 'UTC')::date
                        and (l.exchange_id is null or i.exchange_id = l.exchange_id)
                        and (l.instrument_id is null or i.instrument_id = l.instrument_id)) v;
            elsif l.exchange_id is null then
                select -coalesce(sum(d.realized_pnl), 0)
                into v_observed
                from trading.daily_pnl d
                where d.strategy_id = p_strategy_id and d.day >= (now() at time zone 'UTC')::date
                  -- why the row's own quote asset: see the position notional's
                  and d.quote_asset = p_instrument.quote_asset;
            elsif l.instrument_id is not null then
                select -coalesce(sum(d.realized_pnl), 0)
                into v_observed
                from trading.daily_pnl d
                where d.strategy_id = p_strategy_id and d.day >= (now() at time zone 'UTC')::date
                  and d.instrument_id = l.instrument_id;
            else
                select -coalesce(sum(d.realized_pnl), 0)
                into v_observed
                from trading.daily_pnl d
                where d.strategy_id = p_strategy_id and d.day >= (now() at time zone 'UTC')::date
                  and d.quote_asset = p_instrument.quote_asset
                  and d.instrument_id in (select i.instrument_id from ref.instruments i
                                          where i.exchange_id = l.exchange_id);
            end if;
            if v_observed is null or v_observed >= l.max_daily_loss then
                v_kind := 'max_daily_loss';
                v_value := l.max_daily_loss;
                exit limits;
            end if;
        end if;
    end loop;
    -- why return first: the reason's format calls would be set up in every placement's transaction
    if v_kind is null then
        return null;
    end if;
    v_reason := case v_kind
        when 'kill_switch' then 'kill switch is on'
        when 'max_order_notional' then
            case when p_price is null
                 then format('max_order_notional: the order has no price and %s has no market price to value it',
                             p_instrument.symbol)
                 when v_observed is null
                 then format('max_order_notional: %s has no market price in %s to value the order',
                             p_instrument.quote_asset, l.limit_asset)
                 else format('order notional %s%s exceeds max_order_notional %s%s',
                             internal.risk_amount_text(v_observed, v_value, false),
                             ' ' || l.limit_asset, v_value, ' ' || l.limit_asset) end
        when 'max_position_notional' then
            case when p_price is null
                 then format('max_position_notional: the order has no price and %s has no market price to value it',
                             p_instrument.symbol)
                 when v_observed is null
                 then format('max_position_notional: a position of the scope is quoted in an asset with no market price in %s to value it',
                             l.limit_asset)
                 else format('position notional %s%s after the order exceeds max_position_notional %s%s',
                             internal.risk_amount_text(v_observed, v_value, false), ' ' || l.limit_asset, v_value,
                             ' ' || l.limit_asset) end
        when 'max_open_orders' then
            format('%s working orders with this one exceed max_open_orders %s', v_observed, v_value)
        when 'max_daily_loss' then
            case when v_observed is null
                 then format('max_daily_loss: a realized PnL of today is in an asset with no market price in %s to value it',
                             l.limit_asset)
                 else format('realized loss today %s%s reached max_daily_loss %s%s',
                             internal.risk_amount_text(v_observed, v_value, true),
                             ' ' || l.limit_asset, v_value, ' ' || l.limit_asset) end
    end;
    perform internal.record_risk_event(p_strategy_id, p_instrument.instrument_id, p_order_id, l.limit_id,
                                       v_kind, v_value, v_observed, v_reason, p_amending);
    return v_reason;
end;
$$;
comment on function internal.risk_breach(integer, bigint, monitor.risk_limits[], ref.instruments, trading.order_side, numeric, numeric, boolean) is
    'The first of a strategy''s pre-trade risk limits a new order would break, recorded as a notified risk event of the order; returns its reason, or null; an order that only reduces its position is not held to position notional or daily loss; takes the strategy''s advisory lock before counting working orders (22S09 outside READ COMMITTED); values a position without market data at the latest fill its strategy''s owner sees; used by trading.place_order, and by trading.amend_order (p_amending: max_open_orders does not apply).';
