-- spreadedge functions: cross-exchange spreads
-- market.current_spreads (now, from market.latest_prices) and market.spread_opportunities (over
-- quote history). A spread is "buy at the ask on one exchange, sell at the bid on another" for
-- instruments of the same base asset, quote asset and market type (BTC/USDT spot on Binance and
-- OKX, say; USD and USDT are different quotes). With the taker fee rates f_buy and f_sell:
--   gross_bps = (bid - ask) / ask x 10,000
--   net_bps   = (bid x (1 - f_sell) - ask x (1 + f_buy)) / ask x 10,000
-- both rounded to 4 decimals. Sizes are in units of the base asset (book size x the instrument's
-- multiplier: contracts differ in size between exchanges, 0.01 BTC on one, 1 BTC on another).
-- Only spot, margin and perpetual instruments are compared:
-- why never an option: its price is a premium that depends on a strike and an expiry that
--   ref.instruments does not keep (a 150 call and a 100 call of BTC/USDT are different assets;
--   trading.asset_price leaves options out for the same reason)
-- why not dated futures either: ref.instruments keeps no expiry, so a December and a March future,
--   whose prices differ by their basis, cannot be told apart

create or replace function internal.gross_bps(p_ask numeric, p_bid numeric)
    returns numeric
    immutable
    parallel safe
    language sql
as $$
    -- Spread in basis points of buying at p_ask and selling at p_bid, before fees.
    -- why scalar functions: as single expressions they are inlined into the view's query
    select round((p_bid - p_ask) / p_ask * 10000, 4)
$$;
comment on function internal.gross_bps(numeric, numeric) is
    'Gross spread in bps of buying at an ask and selling at a bid: (bid - ask) / ask x 10,000.';

create or replace function internal.net_bps_of_legs(p_ask numeric, p_ask_cost numeric, p_bid_net numeric)
    returns numeric
    immutable
    parallel safe
    language sql
as $$
    -- Net spread in basis points from its legs: p_ask_cost = ask x (1 + buy fee) paid for a unit,
    -- p_bid_net = bid x (1 - sell fee) received for it (market.current_spreads computes each leg
    -- once per quote instead of once per pair of exchanges).
    select round((p_bid_net - p_ask_cost) / p_ask * 10000, 4)
$$;
comment on function internal.net_bps_of_legs(numeric, numeric, numeric) is
    'Net spread in bps from the ask, the ask with the buy fee and the bid net of the sell fee: (bid net - ask cost) / ask x 10,000.';

create or replace function internal.net_bps(p_ask numeric, p_bid numeric, p_buy_fee numeric, p_sell_fee numeric)
    returns numeric
    immutable
    parallel safe
    language sql
as $$
    -- Spread in basis points of buying at p_ask and selling at p_bid, net of both taker fee rates.
    select internal.net_bps_of_legs(p_ask, p_ask * (1 + p_buy_fee), p_bid * (1 - p_sell_fee))
$$;
comment on function internal.net_bps(numeric, numeric, numeric, numeric) is
    'Net spread in bps: (bid x (1 - sell fee) - ask x (1 + buy fee)) / ask x 10,000.';

create or replace function internal.find_pair(p_symbol text, out base_asset text, out quote_asset text)
    stable
    language plpgsql
as $$
-- The base and quote assets of a cross-exchange symbol written BASE/QUOTE (e.g. BTC/USDT); raises
-- invalid_argument for another form and unknown_pair when no instrument trades it.
declare
    -- why "C": a Turkish collation's upper('link/usdt') is 'LİNK/USDT', which is not BASE/QUOTE
    v_parts text[] := regexp_match(upper(btrim(p_symbol) collate "C"), '^([A-Z0-9]+)/([A-Z0-9]+)$');
begin
    if v_parts is null then
        raise exception 'symbol % is not BASE/QUOTE', coalesce('"' || p_symbol || '"', 'null')
            using errcode = '22S09', hint = 'Spreads compare instruments across exchanges by asset pair, e.g. BTC/USDT.';
    end if;
    if not exists (select from ref.instruments i where i.base_asset = v_parts[1] and i.quote_asset = v_parts[2]) then
        raise exception 'no instrument trades %/%', v_parts[1], v_parts[2] using errcode = '23S20';
    end if;
    base_asset := v_parts[1];
    quote_asset := v_parts[2];
end;
$$;
comment on function internal.find_pair(text) is
    'Base and quote assets of a BASE/QUOTE symbol; raises 22S09 for another form, 23S20 when nothing trades it.';

create or replace function internal.max_quote_age()
    returns interval
    stable
    language plpgsql
as $$
-- The session's spreadedge.max_quote_age as an interval: null when unset or empty, or when it
-- reaches before the earliest time PostgreSQL holds (no quote is that old). A value that is not
-- an interval, not positive, or with a negative part ('1 mon -28 days') raises 22S09 naming the
-- setting.
-- why: read by market.current_spreads, where a bad value failed every read with a raw 22007 that
-- named no setting, and a zero or negative one silently showed no spread at all
declare
    v_text text := nullif(btrim(current_setting('spreadedge.max_quote_age', true)), '');
    v_age  interval;
begin
    if v_text is null then
        return null;
    end if;
    begin
        v_age := v_text::interval;
    exception when invalid_datetime_format or datetime_field_overflow or interval_field_overflow then
        v_age := null;
    end;
    -- why no negative part: '1 mon -28 days' compares as 2 days, but subtracted from a time in
    -- March it spans nothing, and no quote counted
    if v_age is null or v_age <= interval '0' or internal.interval_has_negative_part(v_age) then
        raise exception 'spreadedge.max_quote_age must be a positive interval with no negative part, got "%"', v_text
            using errcode = '22S09',
                  hint = 'For example set spreadedge.max_quote_age = ''30 seconds''; reset it to count every newest quote.';
    end if;
    -- why null for an age reaching before the earliest time PostgreSQL holds (4714 BC): no quote
    -- is that old, so every newest quote counts, as unset; the view's statement_timestamp() - age
    -- failed every read with a raw 22008 (timestamp out of range) for '10000 years'
    begin
        perform statement_timestamp() - v_age;
    exception when datetime_field_overflow then
        return null;
    end;
    return v_age;
end;
$$;
comment on function internal.max_quote_age() is
    'The session''s spreadedge.max_quote_age (market.current_spreads): null when unset or older than any time (every quote counts); 22S09 unless a positive interval with no negative part.';

create or replace view market.current_spreads as
    -- why numbers for the asset pair and the exchange: every sort here compares rows of one pair on
    -- their spread and breaks ties by exchange; keyed on the pair's three text columns and the
    -- exchange code, sorting was 38 % of the view's instructions, half of it walking those
    -- variable-length columns (PostgreSQL finds a column of a sorted row by walking the ones
    -- before it). The pair is numbered once (dense_rank in output order), the exchange by its
    -- code's order.
    with quoted as (
        -- each quote's two legs, net of its taker fee (see internal.net_bps)
        select dense_rank() over (order by i.base_asset, i.quote_asset, i.market_type)::integer as pair,
               x.place, l.bid * (1 - i.taker_fee) as bid_net, l.ask * (1 + i.taker_fee) as ask_cost, l.ask,
               i.base_asset, i.quote_asset, i.market_type, x.code as exchange, i.symbol, l.bid,
               l.bid_size * i.multiplier as bid_size, l.ask_size * i.multiplier as ask_size, l.quoted_at
        from market.latest_prices l
        join ref.instruments i on i.instrument_id = l.instrument_id
        join (select e.exchange_id, e.code, row_number() over (order by e.code)::integer as place
              from ref.exchanges e) x on x.exchange_id = i.exchange_id
        where l.quoted_at is not null and i.is_active and i.market_type in ('spot', 'margin', 'perpetual')
          -- why a limit the session may set: a quote hours old is not a price now, and as the best
          -- bid of its pair it showed a phantom spread and hid the real one of fresher quotes
          -- (unset: every newest quote counts; the sub-select is computed once, not per row)
          -- why statement_timestamp(), not now(): in a long transaction (a strategy polling the
          -- view without autocommit) now() stays at its start, and a quote minutes old by the
          -- clock still counted as fresh
          and l.quoted_at >= (select coalesce(statement_timestamp() - internal.max_quote_age(), '-infinity'))
    ),
    -- why the two best exchanges to sell on: for a given buy, the best sale is the highest bid net
    -- of its taker fee on another exchange, which is on the best exchange or, when that is the
    -- buy's own, on the second; joining every buy to every sale took twice as long
    sellers as (
        select r.pair, r.place, r.bid_net, r.exchange, r.symbol, r.bid, r.bid_size, r.quoted_at
        from (select x.*,
                     row_number() over (partition by x.pair order by x.bid_net desc, x.place) as rank
              from (select distinct on (q.pair, q.place)
                           q.pair, q.place, q.bid_net, q.exchange, q.symbol, q.bid, q.bid_size, q.quoted_at
                    from quoted q
                    -- why: an empty bid side (size 0) is no price to sell at (nor an empty ask
                    -- side one to buy at, below): it showed a spread nobody could take
                    where q.bid_size > 0
                    order by q.pair, q.place, q.bid_net desc, q.symbol) x) r
        where r.rank <= 2
    )
    select best.base_asset || '/' || best.quote_asset as symbol, best.market_type, best.buy_exchange,
           best.buy_symbol, best.ask, best.ask_size, best.sell_exchange, best.sell_symbol, best.bid,
           best.bid_size, internal.gross_bps(best.ask, best.bid) as gross_bps, best.net_bps,
           least(best.buy_quoted_at, best.sell_quoted_at) as oldest_quote_at
    from (
        select distinct on (b.pair)
               b.pair, internal.net_bps_of_legs(b.ask, b.ask_cost, s.bid_net) as net_bps,
               b.base_asset, b.quote_asset, b.market_type, b.exchange as buy_exchange,
               s.exchange as sell_exchange, b.symbol as buy_symbol, b.ask, b.ask_size,
               s.symbol as sell_symbol, s.bid, s.bid_size, b.quoted_at as buy_quoted_at,
               s.quoted_at as sell_quoted_at
        from quoted b
        join sellers s on s.pair = b.pair and s.place <> b.place
        where b.ask_size > 0
        order by b.pair, net_bps desc, b.place, s.place
    ) best
    order by best.pair;
comment on view market.current_spreads is
    'Per asset pair and market type (spot, margin, perpetual), the best buy-on-one-exchange, sell-on-another spread of the newest quotes (only those younger than the setting spreadedge.max_quote_age when it is set; a side of size 0 is neither bought nor sold): gross and net of both taker fees, in bps; sizes in base-asset units.';
comment on column market.current_spreads.ask_size is
    'Size at the best ask of the buy instrument, in units of the base asset (book size x multiplier).';
comment on column market.current_spreads.bid_size is
    'Size at the best bid of the sell instrument, in units of the base asset (book size x multiplier).';

create or replace function market.spread_opportunities(
    symbol      text,
    since       timestamptz,
    until       timestamptz,
    min_net_bps numeric default 0,
    bucket      interval default interval '1 second'
)
    returns table (
        bucket_start  timestamptz,
        market_type   ref.market_type,
        buy_exchange  text,
        ask           numeric,
        ask_size      numeric,
        sell_exchange text,
        bid           numeric,
        bid_size      numeric,
        quantity      numeric,
        gross_bps     numeric,
        net_bps       numeric
    )
    stable
    security definer
    set search_path = ''
    language plpgsql
as $$
-- Every moment of [since, until) when buying the pair BASE/QUOTE on one exchange and selling it on
-- another paid at least min_net_bps after taker fees. Time is cut into buckets (1 second by
-- default, aligned to UTC); in each, every instrument of the pair counts with its last quote of
-- the bucket, and every ordered pair of exchanges quoted in the bucket is compared, once (spot,
-- margin and perpetual instruments only: see the file header). ask_size and bid_size are in units
-- of the base asset (book size x the instrument's multiplier), and quantity is what both sides of
-- the book offered in those units: least(ask_size, bid_size). A side of size 0 is not bought or sold.
#variable_conflict use_column
declare
    v_pair record := internal.find_pair(spread_opportunities.symbol);
begin
    if spread_opportunities.since is null or spread_opportunities.until is null
       or spread_opportunities.since > spread_opportunities.until then
        raise exception 'since % and until % are not a period', coalesce(spread_opportunities.since::text, 'null'),
            coalesce(spread_opportunities.until::text, 'null')
            using errcode = '22S09';
    end if;
    -- why no month part: such a bucket compares as its total ('1 mon -30 days 1 second' as 1
    -- second) but date_bin cannot bin by months and failed with a raw 0A000
    if spread_opportunities.bucket is null or spread_opportunities.bucket <= interval '0'
       or spread_opportunities.bucket > interval '1 day'
       or extract(year from spread_opportunities.bucket) * 12 + extract(month from spread_opportunities.bucket) <> 0 then
        raise exception 'bucket % is not between 0 and 1 day', coalesce(spread_opportunities.bucket::text, 'null')
            using errcode = '22S09';
    end if;
    perform internal.check_finite(spread_opportunities.min_net_bps, 'min_net_bps');
    return query
    with bucketed as (
        select q.instrument_id,
               date_bin(spread_opportunities.bucket, q.quoted_at, timestamptz '2000-01-01 00:00:00+00') as bucket_start,
               q.quoted_at, i.market_type, e.code as exchange, i.taker_fee,
               q.bid, q.bid_size * i.multiplier as bid_size, q.ask, q.ask_size * i.multiplier as ask_size
        from ref.instruments i
        join ref.exchanges e on e.exchange_id = i.exchange_id
        join market.quotes q on q.instrument_id = i.instrument_id
        where i.base_asset = v_pair.base_asset and i.quote_asset = v_pair.quote_asset
          and i.market_type in ('spot', 'margin', 'perpetual')
          and q.quoted_at >= spread_opportunities.since and q.quoted_at < spread_opportunities.until
    ),
    last_quotes as (
        select distinct on (q.instrument_id, q.bucket_start) q.*
        from bucketed q
        order by q.instrument_id, q.bucket_start, q.quoted_at desc
    )
    -- why one row per exchange pair: an exchange that lists the pair twice (two spot symbols) is
    -- one place to buy or sell, as in market.current_spreads; compared instrument by instrument it
    -- gave the same bucket and exchange pair two or four rows (no symbol tells them apart), so
    -- opportunities and their quantities were counted twice. The best net spread of the pair counts.
    select p.bucket_start, p.market_type, p.buy_exchange, p.ask, p.ask_size, p.sell_exchange, p.bid,
           p.bid_size, p.quantity, p.gross_bps, p.net_bps
    from (
        select distinct on (b.bucket_start, b.market_type, b.exchange, s.exchange)
               b.bucket_start, b.market_type, b.exchange as buy_exchange, b.ask, b.ask_size,
               s.exchange as sell_exchange, s.bid, s.bid_size, least(b.ask_size, s.bid_size) as quantity,
               internal.gross_bps(b.ask, s.bid) as gross_bps,
               internal.net_bps(b.ask, s.bid, b.taker_fee, s.taker_fee) as net_bps
        from last_quotes b
        join last_quotes s
            on s.bucket_start = b.bucket_start and s.market_type = b.market_type and s.exchange <> b.exchange
        where internal.net_bps(b.ask, s.bid, b.taker_fee, s.taker_fee) >= spread_opportunities.min_net_bps
          -- why: an empty side of a book (size 0) is no price to trade at, as in
          -- market.current_spreads; it was listed as an opportunity of quantity 0, and as an
          -- exchange pair's best it hid the pair's real one
          and b.ask_size > 0 and s.bid_size > 0
        order by b.bucket_start, b.market_type, b.exchange, s.exchange, 11 desc, 9 desc,
                 b.instrument_id, s.instrument_id
    ) p
    order by p.bucket_start, p.net_bps desc, p.buy_exchange, p.sell_exchange, p.market_type;
end;
$$;
comment on function market.spread_opportunities(text, timestamptz, timestamptz, numeric, interval) is
    'Moments of a period when buying BASE/QUOTE (spot, margin or perpetual) on one exchange and selling on another paid at least min_net_bps after taker fees (per time bucket, one row per exchange pair: its best); sizes and quantity in base-asset units.';
