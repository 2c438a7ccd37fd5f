-- spreadedge schema: trading
-- Strategies, orders and their events, fills (trades), positions, funding payments, the daily PnL
-- rollup and portfolio snapshots. Tables are private: applications call the trading.* functions.
-- orders, order_events and trades are partitioned by month (see 40_partitioning.sql.j2); their
-- cross-partition keys (order id, client order id, exchange trade id) live in small key tables.
--
-- A note on checks. PostgreSQL reads a table's CHECK expressions back from their stored text and
-- plans them again in every statement that inserts or updates the table (all of them, whichever
-- columns the statement sets), so the columns of the tables every fill and placement writes take
-- their one-column rules from domains instead (below; migration 0013): a domain's check is read
-- once per session and runs only on the values a statement assigns. That took 4.9 % off a fill's
-- instructions and 3.7 % off a placement's. The rules over several columns stay table checks,
-- kept small: "x <@ '(0,Infinity)'::numrange" (positive and finite: NaN, Infinity and -Infinity
-- fall outside) is one comparison with a constant, where "x > 0 and x < 'Infinity'" is two and
-- stores the 0 as an integer cast to numeric on every use; a zero to compare with is written 0.0
-- (a numeric constant) for the same reason.

create domain trading.positive_number as numeric
    constraint positive_number_check check (value::numeric <@ '(0,Infinity)'::numrange);
comment on domain trading.positive_number is
    'A positive, finite number (NaN and the infinities refused): order and fill quantities and prices.';
create domain trading.finite_number as numeric
    constraint finite_number_check check (value::numeric <@ '(-Infinity,Infinity)'::numrange);
comment on domain trading.finite_number is 'A finite number (NaN and the infinities refused): fees.';
create domain trading.asset_code as text
    constraint asset_code_check check (value ~ '^[A-Z0-9]+$');
comment on domain trading.asset_code is 'An asset code: upper-case letters and digits, e.g. USDT.';
create domain trading.nonempty_text as text
    constraint nonempty_text_check check (value <> '');
comment on domain trading.nonempty_text is 'Text that is not empty: client order ids and exchange trade ids.';
create domain trading.utc_hour as timestamptz
    constraint utc_hour_check check (date_trunc('hour', value, 'UTC') = value);
comment on domain trading.utc_hour is 'The start of a UTC hour.';

create type trading.order_side as enum (
    'buy',   -- increases the position
    'sell'   -- decreases the position
);
comment on type trading.order_side is 'Side of an order or fill.';

create type trading.order_type as enum (
    'market',       -- executes at the best available price; has no price
    'limit',        -- executes at price or better
    'stop_market',  -- becomes a market order when stop_price trades
    'stop_limit'    -- becomes a limit order at price when stop_price trades
);
comment on type trading.order_type is 'How an order executes.';

create type trading.order_status as enum (
    'new',               -- stored, not yet acknowledged by the exchange
    'open',              -- acknowledged, resting on the book, nothing filled
    'partially_filled',  -- some quantity filled, the rest still working
    'filled',            -- the whole quantity filled (terminal)
    'cancelled',         -- cancelled; late fills are still recorded (terminal unless a late fill completes it)
    'rejected',          -- refused by the exchange or by pre-trade checks (terminal, never filled)
    'expired'            -- expired by time in force; late fills are still recorded
);
comment on type trading.order_status is
    'Order state machine: new -> open -> partially_filled -> filled, or cancelled, rejected, expired.';

create type trading.exchange_fill_kind as enum (
    'liquidation',  -- the exchange closed a leveraged position (perpetual, futures, margin) at too little margin
    'adl',          -- auto-deleveraging: the exchange closed (part of) a profitable position against a liquidation
    'settlement',   -- a dated futures contract settled at its expiry
    'delisting'     -- the exchange closed the position when it delisted the instrument
);
comment on type trading.exchange_fill_kind is
    'Why the exchange, not the strategy, made a fill: liquidation, adl (auto-deleveraging), settlement (a future''s expiry), delisting.';

-- ============================================================================
-- Strategies
-- ============================================================================
create table trading.strategies (
    strategy_id integer generated always as identity primary key,
    name        text not null unique check (name <> '' and name = btrim(name) and length(name) <= 100),
    description text,
    capital     numeric not null default 0 check (capital >= 0 and capital < 'Infinity'),
    is_active   boolean not null default true,
    created_at  timestamptz not null default now(),
    owner_user_id bigint references auth.users
);
comment on table trading.strategies is 'Trading strategies; orders, trades and positions belong to one. Create with trading.create_strategy.';
comment on column trading.strategies.strategy_id is 'Surrogate key.';
comment on column trading.strategies.description is 'What the strategy does.';
comment on column trading.strategies.created_at is 'When the strategy was created.';
comment on column trading.strategies.name is 'Unique name callers use, e.g. btc-binance-okx-arb.';
comment on column trading.strategies.capital is
    'Capital allocated, in the valuation asset of its portfolio snapshots (USDT unless a snapshot names another); equity = capital + realized + unrealized PnL.';
comment on column trading.strategies.is_active is 'False when the strategy may no longer place orders.';
comment on column trading.strategies.owner_user_id is
    'The application user the strategy belongs to; row-level security shows its rows to that user (and admins). Null: platform-owned.';
create index strategies_owner_idx on trading.strategies (owner_user_id);

-- ============================================================================
-- Orders
-- ============================================================================
create sequence trading.order_id_seq as bigint;
comment on sequence trading.order_id_seq is 'Order ids, unique across all order partitions.';

-- why: orders is partitioned by created_at, and a unique index on a partitioned table must include
-- the partition key; this table makes order_id and (exchange, client_order_id) unique across all
-- partitions and finds an order's partition from its id alone.
-- It also carries the order's strategy and instrument, checked here once at placement: orders and
-- trades reference their key by (order_id, strategy_id, instrument_id), so a trade's strategy and
-- instrument are its order's, with one foreign key each instead of three (migration 0014).
create table trading.order_keys (
    order_id        bigint primary key,
    created_at      timestamptz not null,
    exchange_id     smallint not null references ref.exchanges,
    client_order_id trading.nonempty_text,
    strategy_id     integer not null references trading.strategies,
    instrument_id   integer not null references ref.instruments,
    -- why here, with the instrument: an exchange numbers its orders per symbol (binance) or
    -- across the venue, so one exchange order id names one order of an instrument; kept unique in
    -- this unpartitioned table, as client order ids are (migration 0067)
    exchange_order_id text,
    unique (exchange_id, client_order_id),
    unique (order_id, strategy_id, instrument_id)
);
comment on table trading.order_keys is
    'One row per order: makes order ids and client order ids (per exchange) unique across order partitions, and holds the order''s trades to its strategy and instrument.';
comment on column trading.order_keys.strategy_id is
    'Strategy of the order; the orders and trades of this order must have it (their foreign keys).';
comment on column trading.order_keys.instrument_id is
    'Instrument of the order; the orders and trades of this order must have it (their foreign keys).';
comment on column trading.order_keys.order_id is 'The order''s id (from trading.order_id_seq).';
comment on column trading.order_keys.exchange_id is 'Exchange the order was sent to.';
comment on column trading.order_keys.client_order_id is 'Caller''s id of the order, unique per exchange; null when none was given.';
comment on column trading.order_keys.created_at is 'The order''s partition key, so lookups by id prune to one partition.';
comment on column trading.order_keys.exchange_order_id is
    'The exchange''s id of the order (its acknowledgement''s), unique per instrument: two orders with one exchange order id are an adapter that mixed them up; null until acknowledged with one.';
-- why partial: a placement writes its key without one, and adds no entry to this index
create unique index order_keys_exchange_order_id_key on trading.order_keys (instrument_id, exchange_order_id)
    where exchange_order_id is not null;
comment on index trading.order_keys_exchange_order_id_key is
    'An exchange order id names one order of an instrument (trading.acknowledge_order).';

create table trading.orders (
    order_id          bigint not null,
    created_at        timestamptz not null default now(),
    strategy_id       integer not null,
    instrument_id     integer not null,
    side              trading.order_side not null,
    order_type        trading.order_type not null,
    -- why domains: see the note on checks at the top of this file
    quantity          trading.positive_number not null,
    price             trading.positive_number,
    stop_price        trading.positive_number,
    status            trading.order_status not null default 'new',
    filled_quantity   numeric not null default 0,
    avg_fill_price    numeric,
    client_order_id   text,
    exchange_order_id text,
    status_reason     text,
    updated_at        timestamptz not null default now(),
    primary key (order_id, created_at),
    -- why one key: the order's key carries its strategy and instrument (see trading.order_keys)
    foreign key (order_id, strategy_id, instrument_id)
        references trading.order_keys (order_id, strategy_id, instrument_id),
    -- why: an order is never filled beyond its quantity (overfill is refused before it gets here)
    check (filled_quantity >= 0.0 and filled_quantity <= quantity),
    -- why: an average fill price exists exactly when something was filled
    check ((filled_quantity = 0.0) = (avg_fill_price is null)),
    -- why: market orders have no limit price; limit orders must have one
    check ((order_type in ('market', 'stop_market')) = (price is null)),
    check ((order_type in ('stop_market', 'stop_limit')) = (stop_price is not null))
) partition by range (created_at);
comment on table trading.orders is
    'Orders, partitioned by month of created_at. Written only by trading.place_order, cancel_order, record_fill and friends.';
comment on column trading.orders.order_id is 'Order id, unique across partitions (see trading.order_keys).';
comment on column trading.orders.created_at is 'When the order was placed; the partition key.';
comment on column trading.orders.strategy_id is 'Strategy that placed the order.';
comment on column trading.orders.instrument_id is 'Instrument ordered.';
comment on column trading.orders.side is 'buy or sell.';
comment on column trading.orders.order_type is 'market, limit, stop_market or stop_limit.';
comment on column trading.orders.status is 'Where the order is in its state machine.';
comment on column trading.orders.updated_at is 'When the order last changed.';
comment on column trading.orders.quantity is 'Ordered quantity in base units (contracts for derivatives).';
comment on column trading.orders.price is 'Limit price; null for market and stop-market orders.';
comment on column trading.orders.stop_price is 'Trigger price of stop orders.';
comment on column trading.orders.filled_quantity is 'Sum of the quantities of this order''s trades.';
comment on column trading.orders.avg_fill_price is 'Quantity-weighted average price of this order''s trades.';
comment on column trading.orders.client_order_id is 'Caller''s id, unique per exchange: a retried placement returns the same order.';
comment on column trading.orders.exchange_order_id is 'The exchange''s id, set when the exchange acknowledges the order.';
comment on column trading.orders.status_reason is 'Why the order was cancelled, rejected or expired.';
create index orders_strategy_created_idx on trading.orders (strategy_id, created_at);
create index orders_instrument_created_idx on trading.orders (instrument_id, created_at);
-- why: a scoped trader's orders of a symbol are read per (strategy, instrument) pair, newest first
-- from a keyset position (trading.order_history_page); order_id breaks ties in created_at
create index orders_strategy_instrument_created_idx on trading.orders (strategy_id, instrument_id, created_at, order_id);
comment on index trading.orders_strategy_instrument_created_idx is
    'A (strategy, instrument) pair''s orders in keyset order: the history pages of a scoped caller filtered by symbol or exchange.';
-- why: active orders are few and read often (open order lists, cancel-all)
create index orders_active_idx on trading.orders (strategy_id)
    where status in ('new', 'open', 'partially_filled');

-- why a table of its own, not a column of trading.orders: every fill updates its order, and the
-- audit image of that update (old and new rows as jsonb) would carry the column too: 0.8 % more
-- instructions a fill for orders that are a handful among millions (migration 0075)
create table trading.exchange_initiated_orders (
    order_id bigint primary key references trading.order_keys,
    kind     trading.exchange_fill_kind not null
);
comment on table trading.exchange_initiated_orders is
    'Orders the exchange made rather than the strategy (trading.record_exchange_fill), with why: a liquidation, an ADL, a future''s settlement, a close at delisting. Orders not here were placed by their strategy.';
comment on column trading.exchange_initiated_orders.order_id is 'The order (its key stays while its trades refer to it).';
comment on column trading.exchange_initiated_orders.kind is 'Why the exchange made the fill: liquidation, adl, settlement or delisting.';

create sequence trading.order_event_id_seq as bigint;
comment on sequence trading.order_event_id_seq is 'Order event ids.';

create table trading.order_events (
    event_id    bigint not null default nextval('trading.order_event_id_seq'),
    occurred_at timestamptz not null default now(),
    order_id    bigint not null references trading.order_keys,
    from_status trading.order_status,
    to_status   trading.order_status not null,
    trade_id    bigint,
    reason      text,
    primary key (event_id, occurred_at)
) partition by range (occurred_at);
comment on table trading.order_events is
    'Every status change and amendment of every order (from_status null for placement; an amendment by trading.amend_order keeps the status: from_status = to_status), partitioned by month.';
comment on column trading.order_events.event_id is 'Event id, increasing in write order.';
comment on column trading.order_events.occurred_at is 'When the change happened; the partition key.';
comment on column trading.order_events.order_id is 'The order that changed.';
comment on column trading.order_events.from_status is 'Status before (null when the order was placed).';
comment on column trading.order_events.to_status is 'Status after (the same as before for an amendment).';
comment on column trading.order_events.trade_id is 'The trade that caused the change, for fills.';
comment on column trading.order_events.reason is 'Reason given for a cancel, reject or expiry; for an amendment what changed, e.g. "amended: quantity 1 -> 2, price 60000 -> 60100", then ": " and the reason given.';
create index order_events_order_idx on trading.order_events (order_id);

-- ============================================================================
-- Trades (fills)
-- ============================================================================
create sequence trading.trade_id_seq as bigint;
comment on sequence trading.trade_id_seq is 'Trade ids, unique across all trade partitions.';

-- why: trades is partitioned by executed_at; this table makes (instrument, exchange trade id, side) unique
-- across partitions, so a fill reported twice (websocket and REST) is recorded once.
-- why per instrument: exchanges number trades per symbol (binance, okx, coinbase), so two fills
-- of one exchange may share an id; keyed by exchange, the second was refused (migration 0033)
-- why per side: both sides of a trade carry its id, and two of the system's strategies (on two
-- sub-accounts) may be its two sides; keyed without it, the second fill was refused (migration 0035)
create table trading.trade_keys (
    exchange_trade_id trading.nonempty_text not null,
    trade_id          bigint not null unique,
    executed_at       timestamptz not null,
    instrument_id     integer not null references ref.instruments,
    side              trading.order_side not null,
    primary key (instrument_id, exchange_trade_id, side)
);
comment on table trading.trade_keys is
    'One row per trade: makes exchange trade ids unique per instrument and side across trade partitions.';
comment on column trading.trade_keys.instrument_id is 'The trade''s instrument (and so its exchange).';
comment on column trading.trade_keys.exchange_trade_id is
    'The exchange''s id of the trade, unique per instrument and side (both sides of a trade carry it).';
comment on column trading.trade_keys.side is
    'The trade''s side (its order''s): two of the system''s strategies on the two sides of one exchange trade each have a fill of its id.';
comment on column trading.trade_keys.trade_id is 'The trade''s id in trading.trades.';
comment on column trading.trade_keys.executed_at is 'The trade''s partition key, so lookups prune to one partition.';

create table trading.trades (
    trade_id           bigint not null,
    executed_at        timestamptz not null,
    order_id           bigint not null,
    strategy_id        integer not null,
    instrument_id      integer not null,
    side               trading.order_side not null,
    -- why domains, and fee_quote's table check: see the note on checks at the top of this file
    -- (realized_pnl is generated from fee_quote, and PostgreSQL cannot change the type of a
    -- column a generated column uses without rewriting the table)
    quantity           trading.positive_number not null,
    price              trading.positive_number not null,
    fee                trading.finite_number not null,
    fee_currency       trading.asset_code not null,
    fee_quote          numeric not null check (fee_quote <@ '(-Infinity,Infinity)'::numrange),
    position_delta     numeric not null,
    realized_pnl_gross numeric not null,
    realized_pnl       numeric not null generated always as (realized_pnl_gross - fee_quote) stored,
    exchange_trade_id  text not null,
    is_late            boolean not null default false,
    recorded_at        timestamptz not null default now(),
    -- why a copy: the instrument's multiplier may change later (ref.upsert_instrument); a trade
    -- was realized at this one (migration 0015)
    multiplier         trading.positive_number not null,
    -- why kept: a close at exactly the entry price realizes nothing, so the realized PnL cannot tell
    -- a closing trade from an opening one (trades/summary's win rate; migration 0022)
    closed_quantity    numeric not null,
    primary key (trade_id, executed_at),
    -- why one key: a trade's strategy and instrument are its order's (see trading.order_keys)
    foreign key (order_id, strategy_id, instrument_id)
        references trading.order_keys (order_id, strategy_id, instrument_id)
) partition by range (executed_at);
comment on table trading.trades is
    'Fills: immutable facts, partitioned by month of executed_at. Each keeps the PnL and fee it caused. Write with trading.record_fill.';
comment on column trading.trades.trade_id is 'Trade id; the trades of one position have increasing ids in the order they were applied.';
comment on column trading.trades.executed_at is 'When the exchange executed the fill; the partition key.';
comment on column trading.trades.order_id is 'The order filled.';
comment on column trading.trades.strategy_id is 'Strategy of the order.';
comment on column trading.trades.instrument_id is 'Instrument of the order.';
comment on column trading.trades.side is 'Side of the order.';
comment on column trading.trades.price is 'Execution price in the quote asset.';
comment on column trading.trades.exchange_trade_id is
    'The exchange''s id of the trade, unique per instrument and side (trading.trade_keys).';
comment on column trading.trades.quantity is 'Filled quantity in base units (contracts for derivatives).';
comment on column trading.trades.fee is 'Fee charged, in fee_currency; negative for a rebate.';
comment on column trading.trades.fee_currency is 'Currency the fee was charged in: the quote asset, the base asset or a third currency.';
comment on column trading.trades.fee_quote is 'The fee''s value in the quote asset, realized as a cost when paid.';
comment on column trading.trades.position_delta is
    'Signed change of the position quantity: +quantity for a buy, -quantity for a sell, less a base-asset fee on spot.';
comment on column trading.trades.realized_pnl_gross is 'PnL this fill realized by closing position, before fees.';
comment on column trading.trades.realized_pnl is 'realized_pnl_gross - fee_quote.';
comment on column trading.trades.is_late is 'True when the fill arrived after its order was cancelled or expired.';
comment on column trading.trades.recorded_at is 'When spreadedge recorded the fill.';
comment on column trading.trades.multiplier is
    'The instrument''s contract multiplier the fill was realized at (the instrument''s may change later).';
comment on column trading.trades.closed_quantity is
    'How much of the position this fill closed (0 when it opened or added to it): the least of |position_delta| and the position it reduced.';
create index trades_strategy_executed_idx on trading.trades (strategy_id, executed_at);
create index trades_instrument_executed_idx on trading.trades (instrument_id, executed_at);
-- why: a scoped trader's trades of a symbol are read per (strategy, instrument) pair, newest first
-- from a keyset position (trading.trade_history_page); trade_id breaks ties in executed_at
create index trades_strategy_instrument_executed_idx on trading.trades (strategy_id, instrument_id, executed_at, trade_id);
comment on index trading.trades_strategy_instrument_executed_idx is
    'A (strategy, instrument) pair''s trades in keyset order: the history pages of a scoped caller filtered by symbol or exchange.';
create index trades_order_idx on trading.trades (order_id);
-- why BRIN: a period across all strategies (pnl_summary without a strategy) reads its partial hours
-- by time alone; fills arrive nearly in time order, so a BRIN finds them for almost no write cost
create index trades_executed_brin_idx on trading.trades using brin (executed_at);

-- ============================================================================
-- Positions
-- ============================================================================
create table trading.positions (
    strategy_id        integer not null references trading.strategies,
    instrument_id      integer not null,
    quantity           numeric not null default 0,
    avg_entry_price    numeric,
    realized_pnl_gross numeric not null default 0,
    fees_paid          numeric not null default 0,
    funding            numeric not null default 0,
    realized_pnl       numeric not null generated always as (realized_pnl_gross - fees_paid + funding) stored,
    trade_count        integer not null default 0,
    opened_at          timestamptz,
    updated_at         timestamptz not null default now(),
    multiplier         numeric not null,
    quote_asset        text not null,
    primary key (strategy_id, instrument_id),
    -- why the multiplier too: the pre-trade risk check values a strategy's positions without a
    -- join to ref.instruments (a sort and a merge join: 0.11 M of the 1.91 M instructions of a
    -- placement that adds to a position); the key keeps the copy equal to the instrument's and
    -- carries changes over
    foreign key (instrument_id, multiplier) references ref.instruments (instrument_id, multiplier)
        on update cascade,
    -- why the quote asset too: the risk check adds up only the positions in the order's quote
    -- asset (a probe of ref.instruments per position cost a placement 8 %)
    foreign key (instrument_id, quote_asset) references ref.instruments (instrument_id, quote_asset)
        on update cascade,
    -- why: a flat position has no entry price; an open one always has one
    check ((quantity = 0.0) = (avg_entry_price is null)),
    check ((quantity = 0.0) = (opened_at is null))
)
-- why: every fill updates its position row; free space on the page keeps those updates HOT
with (fillfactor = 50);
comment on table trading.positions is
    'One position per (strategy, instrument): signed quantity, average-cost entry and realized PnL. Read with trading.get_position.';
comment on column trading.positions.strategy_id is 'Strategy holding the position.';
comment on column trading.positions.instrument_id is 'Instrument held.';
comment on column trading.positions.trade_count is 'Number of fills applied.';
comment on column trading.positions.updated_at is 'When the position last changed.';
comment on column trading.positions.quantity is 'Signed quantity: positive long, negative short, 0 flat.';
comment on column trading.positions.avg_entry_price is 'Average cost of the open quantity (18 decimals); null when flat.';
comment on column trading.positions.realized_pnl_gross is 'PnL realized by reducing fills, before fees.';
comment on column trading.positions.fees_paid is 'Fees paid in the quote asset (negative part = rebates).';
comment on column trading.positions.funding is 'Funding received (positive) or paid (negative).';
comment on column trading.positions.realized_pnl is 'realized_pnl_gross - fees_paid + funding.';
comment on column trading.positions.multiplier is
    'The instrument''s contract multiplier, kept equal to ref.instruments.multiplier by the foreign key (changes cascade).';
comment on column trading.positions.quote_asset is
    'The instrument''s quote asset (prices and PnL are in it), kept equal to ref.instruments.quote_asset by the foreign key.';
comment on column trading.positions.opened_at is 'When the current non-zero position was opened (or flipped).';

-- ============================================================================
-- Funding payments (perpetuals)
-- ============================================================================
create table trading.funding_payments (
    funding_id    bigint generated always as identity primary key,
    strategy_id   integer not null references trading.strategies,
    instrument_id integer not null references ref.instruments,
    amount        numeric not null check (amount > '-Infinity' and amount < 'Infinity'),
    paid_at       timestamptz not null,
    recorded_at   timestamptz not null default now(),
    -- why: a position receives at most one payment per funding time; a repeat is the same payment
    unique (strategy_id, instrument_id, paid_at)
);
comment on table trading.funding_payments is
    'Funding payments of perpetual positions; they add to realized PnL. Write with trading.record_funding.';
comment on column trading.funding_payments.funding_id is 'Surrogate key.';
comment on column trading.funding_payments.strategy_id is 'Strategy holding the position.';
comment on column trading.funding_payments.instrument_id is 'The perpetual.';
comment on column trading.funding_payments.paid_at is 'Funding time of the payment.';
comment on column trading.funding_payments.recorded_at is 'When spreadedge recorded it.';
comment on column trading.funding_payments.amount is 'Received (positive) or paid (negative), in the quote asset.';
create index funding_payments_paid_idx on trading.funding_payments (strategy_id, paid_at);

-- ============================================================================
-- Daily PnL rollup
-- ============================================================================
create table trading.daily_pnl (
    strategy_id        integer not null references trading.strategies,
    day                date not null,
    instrument_id      integer not null references ref.instruments,
    trades             integer not null default 0,
    volume             numeric not null default 0,
    notional           numeric not null default 0,
    fees               numeric not null default 0,
    realized_pnl_gross numeric not null default 0,
    funding            numeric not null default 0,
    realized_pnl       numeric not null generated always as (realized_pnl_gross - fees + funding) stored,
    quote_asset        text not null,
    primary key (strategy_id, day, instrument_id),
    -- why the quote asset: the risk check's daily loss adds up only the losses in the order's
    -- quote asset, without a join to ref.instruments
    foreign key (instrument_id, quote_asset) references ref.instruments (instrument_id, quote_asset)
        on update cascade
)
-- why: each fill updates its day's row; free space keeps those updates HOT
with (fillfactor = 70);
comment on table trading.daily_pnl is
    'Per strategy, UTC day and instrument: the sums of trades and funding, kept current by record_fill and record_funding.';
comment on column trading.daily_pnl.strategy_id is 'Strategy.';
comment on column trading.daily_pnl.day is 'UTC day.';
comment on column trading.daily_pnl.instrument_id is 'Instrument.';
comment on column trading.daily_pnl.trades is 'Number of fills.';
comment on column trading.daily_pnl.realized_pnl_gross is 'Sum of the fills'' realized gross PnL.';
comment on column trading.daily_pnl.funding is 'Sum of funding payments.';
comment on column trading.daily_pnl.realized_pnl is 'realized_pnl_gross - fees + funding.';
comment on column trading.daily_pnl.quote_asset is
    'The instrument''s quote asset (notional, fees and PnL are in it), kept equal to ref.instruments.quote_asset by the foreign key.';
comment on column trading.daily_pnl.volume is 'Sum of filled quantities.';
comment on column trading.daily_pnl.notional is 'Sum of quantity x price x multiplier, in the quote asset.';
comment on column trading.daily_pnl.fees is 'Sum of fee_quote.';
-- why: the trade and PnL series of monitor.collect_metrics and monitor.trades_per_period read a
-- day across every strategy; the key (strategy first) cannot (migration 0059)
create index daily_pnl_day_idx on trading.daily_pnl (day);
comment on index trading.daily_pnl_day_idx is
    'The rows of a day across strategies: the trade and PnL series of monitor.collect_metrics and monitor.trades_per_period.';

-- why an hourly rollup too: a period that starts or ends inside a day reads its whole hours here
-- and only the trades of its partial hours, so any period costs a few hundred rows
create table trading.hourly_pnl (
    strategy_id        integer not null references trading.strategies,
    hour               trading.utc_hour not null,
    instrument_id      integer not null references ref.instruments,
    trades             integer not null default 0,
    volume             numeric not null default 0,
    notional           numeric not null default 0,
    fees               numeric not null default 0,
    realized_pnl_gross numeric not null default 0,
    funding            numeric not null default 0,
    primary key (strategy_id, hour, instrument_id)
)
-- why: each fill updates its hour's row; free space keeps those updates HOT
with (fillfactor = 70);
comment on table trading.hourly_pnl is
    'Per strategy, UTC hour and instrument: the sums of trades and funding, kept current by record_fill and record_funding.';
comment on column trading.hourly_pnl.strategy_id is 'Strategy.';
comment on column trading.hourly_pnl.hour is 'Start of the UTC hour.';
comment on column trading.hourly_pnl.instrument_id is 'Instrument.';
comment on column trading.hourly_pnl.trades is 'Number of fills.';
comment on column trading.hourly_pnl.volume is 'Sum of filled quantities.';
comment on column trading.hourly_pnl.notional is 'Sum of quantity x price x multiplier, in the quote asset.';
comment on column trading.hourly_pnl.fees is 'Sum of fee_quote.';
comment on column trading.hourly_pnl.realized_pnl_gross is 'Sum of the fills'' realized gross PnL.';
comment on column trading.hourly_pnl.funding is 'Sum of funding payments.';
-- why: as for the days, an hour (or the last 48) across every strategy (migration 0059)
create index hourly_pnl_hour_idx on trading.hourly_pnl (hour);
comment on index trading.hourly_pnl_hour_idx is
    'The rows of an hour across strategies: the trade series of monitor.collect_metrics and monitor.trades_per_period.';

-- ============================================================================
-- Portfolio snapshots
-- ============================================================================
create table trading.portfolio_snapshots (
    snapshot_id    bigint generated always as identity primary key,
    taken_at       timestamptz not null,
    strategy_id    integer references trading.strategies,
    capital        numeric not null,
    realized_pnl   numeric not null,
    unrealized_pnl numeric not null,
    equity         numeric not null generated always as (capital + realized_pnl + unrealized_pnl) stored,
    gross_exposure numeric not null,
    net_exposure   numeric not null,
    open_positions integer not null,
    valuation_asset text check (valuation_asset ~ '^[A-Z0-9]{1,32}$'),
    -- why: one row per strategy per snapshot, plus one total row (strategy_id null)
    unique nulls not distinct (taken_at, strategy_id)
);
comment on table trading.portfolio_snapshots is
    'Equity, exposure and PnL per strategy and in total (strategy_id null) at a point in time. Take with trading.take_portfolio_snapshot.';
comment on column trading.portfolio_snapshots.snapshot_id is 'Surrogate key.';
comment on column trading.portfolio_snapshots.taken_at is 'Time of the snapshot.';
comment on column trading.portfolio_snapshots.strategy_id is 'Strategy, or null for the total row.';
comment on column trading.portfolio_snapshots.capital is 'Capital allocated.';
comment on column trading.portfolio_snapshots.realized_pnl is 'Realized PnL of all positions (net of fees, with funding).';
comment on column trading.portfolio_snapshots.equity is 'capital + realized_pnl + unrealized_pnl.';
comment on column trading.portfolio_snapshots.open_positions is 'Positions with a non-zero quantity.';
comment on column trading.portfolio_snapshots.unrealized_pnl is 'Open positions marked at the mark price of the snapshot time.';
comment on column trading.portfolio_snapshots.gross_exposure is 'Sum of |quantity| x mark x multiplier, in valuation_asset.';
comment on column trading.portfolio_snapshots.net_exposure is 'Sum of signed quantity x mark x multiplier, in valuation_asset.';
comment on column trading.portfolio_snapshots.valuation_asset is
    'The asset capital, PnL and exposure of the row are in: positions quoted in another asset are converted at the marks the strategy''s owner sees. Null: a snapshot taken before migration 0031, which added up quote assets at par.';
create index portfolio_snapshots_strategy_idx on trading.portfolio_snapshots (strategy_id, taken_at);

-- ============================================================================
-- History API items
-- ============================================================================
-- why types: internal.order_item and internal.trade_item write a row of one of these with to_json,
-- whose keys come from the type; json_build_object of the same 17 keys, a variadic "any" call,
-- cost half as much again (a fifth of an orders page)
create type internal.order_json as (
    order_id          bigint,
    created_at        text,
    strategy          text,
    exchange          text,
    symbol            text,
    side              trading.order_side,
    order_type        trading.order_type,
    quantity          text,
    price             text,
    stop_price        text,
    status            trading.order_status,
    filled_quantity   text,
    avg_fill_price    text,
    client_order_id   text,
    exchange_order_id text,
    status_reason     text,
    updated_at        text,
    exchange_initiated trading.exchange_fill_kind
);
comment on type internal.order_json is
    'An order as the history API shows it (internal.order_item): names, decimals as text, times as ISO 8601 UTC text.';

create type internal.trade_json as (
    trade_id           bigint,
    executed_at        text,
    order_id           bigint,
    strategy           text,
    exchange           text,
    symbol             text,
    side               trading.order_side,
    quantity           text,
    price              text,
    fee                text,
    fee_currency       text,
    fee_quote          text,
    realized_pnl_gross text,
    realized_pnl       text,
    exchange_trade_id  text,
    is_late            boolean,
    recorded_at        text
);
comment on type internal.trade_json is
    'A trade as the history API shows it (internal.trade_item): names, decimals as text, times as ISO 8601 UTC text.';
