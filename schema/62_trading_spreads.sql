-- spreadedge schema: spread trades
-- One arbitrage = two leg orders: buy an asset pair on one exchange, sell it on another. Opened
-- with trading.open_spread_trade, reported by trading.spread_trade_pnl and spread_trade_summary.

insert into ops.error_codes (sqlstate, name, description) values
    ('22S20', 'invalid_spread_legs', 'A spread trade''s buy and sell legs are on the same exchange, or their contracts differ in size.');

create table trading.spread_trades (
    spread_trade_id  bigint generated always as identity primary key,
    strategy_id      integer not null references trading.strategies,
    buy_order_id     bigint not null unique references trading.order_keys,
    sell_order_id    bigint not null unique references trading.order_keys,
    quantity         numeric not null check (quantity > 0 and quantity < 'Infinity'),
    client_spread_id text unique check (client_spread_id <> ''),
    opened_at        timestamptz not null default now(),
    -- why: the legs are two different orders
    check (buy_order_id <> sell_order_id)
);
comment on table trading.spread_trades is
    'Spread trades: the buy and sell leg orders of one cross-exchange arbitrage. Open with trading.open_spread_trade.';
comment on column trading.spread_trades.spread_trade_id is 'Surrogate key.';
comment on column trading.spread_trades.strategy_id is 'Strategy that opened the spread trade.';
comment on column trading.spread_trades.buy_order_id is 'The buy leg order.';
comment on column trading.spread_trades.sell_order_id is 'The sell leg order.';
comment on column trading.spread_trades.quantity is 'Quantity of each leg, in the legs'' units (base units for spot, contracts for derivatives).';
comment on column trading.spread_trades.client_spread_id is 'Caller''s id of the spread trade: a retried open returns the same spread trade.';
comment on column trading.spread_trades.opened_at is 'When the spread trade was opened.';
create index spread_trades_strategy_opened_idx on trading.spread_trades (strategy_id, opened_at);
