-- spreadedge schema: ref
-- Exchanges, the market types each offers with default fees, and instruments with the trading
-- rules (tick, lot, minimum notional, multiplier) that orders are validated against.

create type ref.market_type as enum (
    'spot',       -- cash market: buy and own the base asset
    'margin',     -- spot market on borrowed funds
    'futures',    -- dated futures contracts
    'perpetual',  -- perpetual swaps: no expiry, periodic funding payments
    'option'      -- options contracts
);
comment on type ref.market_type is 'The kinds of market an exchange offers.';

-- ============================================================================
-- Exchanges
-- ============================================================================
create table ref.exchanges (
    exchange_id smallint generated always as identity primary key,
    code        text not null unique
        -- why: codes are what callers type (place_order(exchange => 'binance')): keep them simple
        check (code ~ '^[a-z][a-z0-9_]*$'),
    name        text not null,
    created_at  timestamptz not null default now()
);
comment on table ref.exchanges is 'Exchanges spreadedge trades on; callers name them by code.';
comment on column ref.exchanges.exchange_id is 'Surrogate key.';
comment on column ref.exchanges.created_at is 'When the exchange was added.';
comment on column ref.exchanges.code is 'Lower-case code callers use, e.g. binance.';
comment on column ref.exchanges.name is 'Display name, e.g. Binance.';

create table ref.exchange_markets (
    exchange_id smallint not null references ref.exchanges,
    market_type ref.market_type not null,
    maker_fee   numeric not null check (maker_fee > -1 and maker_fee < 1),
    taker_fee   numeric not null check (taker_fee > -1 and taker_fee < 1),
    primary key (exchange_id, market_type)
);
comment on table ref.exchange_markets is
    'The market types each exchange offers, with the default fee rates new instruments of that type get.';
comment on column ref.exchange_markets.exchange_id is 'The exchange offering the market.';
comment on column ref.exchange_markets.market_type is 'The kind of market offered.';
comment on column ref.exchange_markets.maker_fee is 'Default maker fee rate as a fraction of notional (0.001 = 10 bps; negative = rebate).';
comment on column ref.exchange_markets.taker_fee is 'Default taker fee rate as a fraction of notional.';

-- ============================================================================
-- Instruments
-- ============================================================================
create table ref.instruments (
    instrument_id integer generated always as identity primary key,
    exchange_id   smallint not null,
    symbol        text not null check (symbol <> '' and symbol = btrim(symbol)),
    base_asset    text not null check (base_asset ~ '^[A-Z0-9]+$'),
    quote_asset   text not null check (quote_asset ~ '^[A-Z0-9]+$'),
    market_type   ref.market_type not null,
    -- why: prices and quantities must be exact multiples of these; zero would make every value valid
    tick_size     numeric not null check (tick_size <@ '(0,Infinity)'::numrange),
    lot_size      numeric not null check (lot_size <@ '(0,Infinity)'::numrange),
    min_notional  numeric not null default 0 check (min_notional <@ '[0,Infinity)'::numrange),
    maker_fee     numeric not null check (maker_fee > -1 and maker_fee < 1),
    taker_fee     numeric not null check (taker_fee > -1 and taker_fee < 1),
    -- why: PnL of one contract is multiplier x price move; 1 for spot
    multiplier    numeric not null default 1 check (multiplier <@ '(0,Infinity)'::numrange),
    is_active     boolean not null default true,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    unique (exchange_id, symbol),
    -- why: the key trading.positions copies the multiplier through, so that it always equals this one
    unique (instrument_id, multiplier),
    -- why: the target of trading.positions' and trading.daily_pnl's keys on their quote asset copy
    unique (instrument_id, quote_asset),
    -- why: an instrument can only be of a market type its exchange offers
    foreign key (exchange_id, market_type) references ref.exchange_markets
);
comment on table ref.instruments is
    'Tradable instruments: one symbol on one exchange, with the rules orders must follow. Write with ref.upsert_instrument.';
comment on column ref.instruments.instrument_id is 'Surrogate key.';
comment on column ref.instruments.exchange_id is 'The exchange the instrument trades on.';
comment on column ref.instruments.market_type is 'Spot, margin, futures, perpetual or option.';
comment on column ref.instruments.created_at is 'When the instrument was first upserted.';
comment on column ref.instruments.updated_at is 'When its rules or status last changed.';
comment on column ref.instruments.symbol is 'The exchange''s symbol, unique per exchange, e.g. BTCUSDT or BTC-USDT-SWAP.';
comment on column ref.instruments.base_asset is 'Asset bought or sold, upper case, e.g. BTC.';
comment on column ref.instruments.quote_asset is 'Asset prices and PnL are in, upper case, e.g. USDT.';
comment on column ref.instruments.tick_size is 'Order prices must be a multiple of this.';
comment on column ref.instruments.lot_size is 'Order quantities must be a multiple of this.';
comment on column ref.instruments.min_notional is 'Smallest quantity x price x multiplier an order may have, in the quote asset.';
comment on column ref.instruments.maker_fee is 'Maker fee rate as a fraction of notional.';
comment on column ref.instruments.taker_fee is 'Taker fee rate as a fraction of notional.';
comment on column ref.instruments.multiplier is 'Contract multiplier: quote value of a price move of 1 on a quantity of 1.';
comment on column ref.instruments.is_active is 'False once the instrument is delisted; orders are then refused.';
create index instruments_base_quote_idx on ref.instruments (base_asset, quote_asset);
-- why: the history pages and summaries filter by symbol across exchanges (internal.instrument_ids_matching)
create index instruments_symbol_idx on ref.instruments (symbol);

-- ============================================================================
-- The six exchanges and what they offer
-- ============================================================================
insert into ref.exchanges (code, name) values
    ('binance', 'Binance'), ('coinbase', 'Coinbase'), ('kraken', 'Kraken'),
    ('bybit', 'Bybit'), ('gateio', 'Gate.io'), ('okx', 'OKX');

-- Published base-tier fee rates of each venue (maker, taker): every market type the seeds list
-- for the venue (Coinbase's margin since migration 0070), and those the venue lists besides
-- (binance and kraken perpetuals, coinbase futures and perpetuals, bybit margin and options,
-- gateio options), so an instrument of either kind can be listed.
insert into ref.exchange_markets (exchange_id, market_type, maker_fee, taker_fee)
select e.exchange_id, m.market_type::ref.market_type, m.maker_fee, m.taker_fee
from (values
    ('binance',  'spot',      0.001,   0.001),
    ('binance',  'margin',    0.001,   0.001),
    ('binance',  'futures',   0.0002,  0.0005),
    ('binance',  'perpetual', 0.0002,  0.0005),
    ('binance',  'option',    0.0003,  0.0003),
    ('coinbase', 'spot',      0.004,   0.006),
    ('coinbase', 'margin',    0.004,   0.006),
    ('coinbase', 'futures',   0.0002,  0.0005),
    ('coinbase', 'perpetual', 0.0002,  0.0005),
    ('kraken',   'spot',      0.0025,  0.004),
    ('kraken',   'margin',    0.0025,  0.004),
    ('kraken',   'futures',   0.0002,  0.0005),
    ('kraken',   'perpetual', 0.0002,  0.0005),
    ('bybit',    'spot',      0.001,   0.001),
    ('bybit',    'margin',    0.001,   0.001),
    ('bybit',    'futures',   0.0002,  0.00055),
    ('bybit',    'perpetual', 0.0002,  0.00055),
    ('bybit',    'option',    0.0002,  0.0003),
    ('gateio',   'spot',      0.002,   0.002),
    ('gateio',   'margin',    0.002,   0.002),
    ('gateio',   'futures',   0.0002,  0.0005),
    ('gateio',   'perpetual', 0.0002,  0.0005),
    ('gateio',   'option',    0.0003,  0.0003),
    ('okx',      'spot',      0.0008,  0.001),
    ('okx',      'margin',    0.0008,  0.001),
    ('okx',      'futures',   0.0002,  0.0005),
    ('okx',      'perpetual', 0.0002,  0.0005),
    ('okx',      'option',    0.0002,  0.0003)
) as m (exchange, market_type, maker_fee, taker_fee)
join ref.exchanges e on e.code = m.exchange;
