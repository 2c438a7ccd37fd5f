"""The trading commands of the CLI: demo and pnl, run through click against a test database."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner

from db_fixtures import database_copy, janitor
from spreadedge.cli import main
from spreadedge.cluster import Cluster
from spreadedge.demo import DemoDay, run_demo
from trading_helpers import counts, trade

DEMO_TEMPLATE = "cli_demo_template"


def invoke(url, *args):
    result = CliRunner().invoke(main, ["--database-url", url, *args], catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def demo_template(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    """A database with the demo day (120 orders) loaded once through the CLI, which demo_url clones
    for each test (the demo takes seconds, a clone a tenth of one)."""
    with janitor(pg_cluster, DEMO_TEMPLATE, template_db):
        url = pg_cluster.url(DEMO_TEMPLATE)
        before = _yesterday()
        result = invoke(url, "demo", "--orders", "120")
        assert result.exit_code == 0, result.output
        with psycopg.connect(url) as conn:
            # yesterday by the demo's clock, which it read between these two readings
            assert _loaded_day(conn) in {before, _yesterday()}
        yield DEMO_TEMPLATE


@pytest.fixture
def demo_url(pg_cluster: Cluster, demo_template: str) -> Iterator[str]:
    """URL of the test's own copy of the demo database, dropped after the test."""
    with database_copy(pg_cluster, demo_template, "cli_demo") as url:
        yield url


@pytest.fixture
def demo_db(demo_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(demo_url, autocommit=True) as conn:
        yield conn


def test_demo_loads_a_day_covering_the_trading_model(demo_db):
    facts = demo_db.execute("""
        select count(distinct e.code) filter (where true),
               count(*) filter (where o.status = 'partially_filled' or (o.status = 'cancelled' and o.filled_quantity > 0)),
               count(*) filter (where o.status = 'rejected'),
               (select count(*) from trading.trades where fee_currency = 'BNB'),
               (select count(*) from trading.trades t join ref.instruments i using (instrument_id)
                where t.fee_currency = i.base_asset),
               (select count(*) from trading.funding_payments),
               (select count(distinct strategy_id) from trading.trades)
        from trading.orders o join ref.instruments i using (instrument_id) join ref.exchanges e using (exchange_id)
    """).fetchone()
    exchanges, part_filled, rejected, bnb_fees, base_fees, funding, strategies = facts
    assert exchanges == 6
    assert part_filled > 0 and rejected >= 0 and bnb_fees > 0 and base_fees > 0 and funding > 0
    assert strategies == 4


def test_demo_positions_flip_sides(demo_db):
    flips = demo_db.execute("""
        select count(*) from (
            select side, lag(side) over (partition by strategy_id, instrument_id order by trade_id) as before
            from (select strategy_id, instrument_id, trade_id,
                         sign(sum(position_delta) over (partition by strategy_id, instrument_id order by trade_id)) as side
                  from trading.trades) running) s
        where side * before < 0""").fetchone()[0]
    assert flips > 0


def test_running_the_demo_again_writes_nothing(demo_db, demo_url):
    before = counts(demo_db)
    result = invoke(demo_url, "demo", "--orders", "120")
    assert result.exit_code == 0, result.output
    assert counts(demo_db) == before


def _yesterday() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def _loaded_day(conn: psycopg.Connection) -> datetime:
    """The day the demo loaded, as stored: its first order's time (midnight UTC). A test asks the
    database, not the clock: the demo was loaded earlier, maybe on the other side of midnight."""
    return conn.execute("select min(created_at) from trading.orders").fetchone()[0].astimezone(UTC)


# the strategy's position on the instrument just before each funding payment, and the mid of the
# instrument's latest quote then
_FUNDING_FACTS = """
    select f.instrument_id, f.paid_at, f.amount, i.multiplier,
           coalesce((select sum(t.position_delta) from trading.trades t
                     where t.strategy_id = f.strategy_id and t.instrument_id = f.instrument_id
                       and t.executed_at < f.paid_at), 0) as position,
           (select (q.bid + q.ask) / 2 from market.quotes q
            where q.instrument_id = f.instrument_id and q.quoted_at <= f.paid_at
            order by q.quoted_at desc limit 1) as mark
    from trading.funding_payments f join ref.instruments i using (instrument_id)
    order by f.paid_at, f.instrument_id, f.strategy_id"""


def test_demo_pays_funding_only_on_a_position_held_at_the_funding_time(demo_db):
    facts = demo_db.execute(_FUNDING_FACTS).fetchall()
    assert len(facts) > 0
    assert [(paid_at, amount) for _, paid_at, amount, _, position, _ in facts if position == 0] == []


def test_demo_funding_is_the_position_notional_times_one_rate_per_perpetual(demo_db):
    rates: dict[tuple[int, datetime], list[Decimal]] = {}
    for instrument_id, paid_at, amount, multiplier, position, mark in demo_db.execute(_FUNDING_FACTS):
        if position == 0:
            continue  # test_demo_pays_funding_only_on_a_position_held_at_the_funding_time
        # a long pays a positive rate: amount = -(position x multiplier x mark x rate)
        rates.setdefault((instrument_id, paid_at), []).append(-amount / (position * multiplier * mark))
    assert rates
    for implied in rates.values():
        assert max(implied) - min(implied) < Decimal("0.0000001")
        assert Decimal("-0.0002") <= implied[0] <= Decimal("0.0004")


def test_demo_pays_funding_only_within_the_demo_day_every_eight_hours(demo_db):
    day = _loaded_day(demo_db)
    times = {row[0] for row in demo_db.execute("select distinct paid_at from trading.funding_payments")}
    assert times and times <= {day + timedelta(hours=h) for h in (0, 8, 16)}


def test_demo_places_exactly_the_orders_asked_for_and_reports_each_to_the_progress_bar(db):
    placed: list[int] = []
    run = run_demo(db, orders=57, day=_yesterday(), progress=placed.append)
    orders = db.execute("select count(*) from trading.orders").fetchone()[0]
    assert (sum(placed), orders, run.written["place"]) == (57, 57, 57)


def test_demo_prices_every_order_inside_its_instruments_quote_at_that_time(demo_db):
    outside = demo_db.execute("""
        select o.client_order_id, o.price, q.bid, q.ask
        from trading.orders o
        cross join lateral (
            select q.bid, q.ask from market.quotes q where q.instrument_id = o.instrument_id
            order by q.quoted_at <= o.created_at desc, abs(extract(epoch from o.created_at - q.quoted_at))
            limit 1) q
        where o.price not between q.bid and q.ask""").fetchall()
    assert outside == []


def test_demo_day_is_the_same_for_the_same_day_and_number_of_orders():
    day = _yesterday()
    assert list(DemoDay(day).steps(200)) == list(DemoDay(day).steps(200))


def _everything(conn):
    """Row counts of the business tables, the audit log and the demo's market data."""
    market = conn.execute(
        "select (select count(*) from market.quotes), (select count(*) from market.ticks),"
        " (select count(*) from market.candles), (select count(*) from market.technical_indicators)"
    ).fetchone()
    return {**counts(conn), "market": market}


def test_running_the_demo_on_another_day_writes_nothing(demo_db, demo_url):
    before = _everything(demo_db)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    with psycopg.connect(demo_url) as conn:
        run_demo(conn, orders=120, day=day)
    assert _everything(demo_db) == before


def test_running_the_demo_with_other_orders_succeeds_and_writes_nothing(demo_db, demo_url):
    before = _everything(demo_db)
    result = invoke(demo_url, "demo", "--orders", "30")
    assert (result.exit_code, _everything(demo_db)) == (0, before)


def test_running_the_demo_again_says_which_day_is_already_loaded(demo_db, demo_url):
    result = invoke(demo_url, "demo", "--orders", "30")
    assert (result.exit_code, result.output) == (
        0,
        f"the demo is already loaded (day {_loaded_day(demo_db):%Y-%m-%d}): nothing written\n",
    )


def test_pnl_prints_a_table_per_strategy(seeded, db_url):
    trade(seeded, "buy", "2", "100", fee=Decimal("0.2"))
    trade(seeded, "sell", "2", "105", fee=Decimal("0.21"))
    result = invoke(db_url, "pnl")
    assert result.exit_code == 0
    # the position is closed: no unrealized PnL
    assert result.output.splitlines() == [
        "strategy  quote  trades  volume  notional  fees  gross pnl  funding  net pnl  unrealized pnl",
        "--------  -----  ------  ------  --------  ----  ---------  -------  -------  --------------",
        "alpha     USDT        2       4    410.00  0.41      10.00     0.00     9.59            0.00",
    ]


def test_pnl_json_keeps_exact_decimals(seeded, db_url):
    trade(seeded, "buy", "2", "100", fee=Decimal("0.123456789"))
    result = invoke(db_url, "pnl", "--json", "--by", "instrument")
    rows = json.loads(result.output)
    assert [(r["exchange"], r["symbol"], r["fees"], r["realized_pnl"]) for r in rows] == [
        ("binance", "BTCUSDT", "0.123456789", "-0.123456789")
    ]


def test_pnl_json_writes_tiny_and_zero_decimals_without_an_exponent(seeded, db_url):
    trade(seeded, "buy", "1", "100")
    trade(seeded, "sell", "1", "100", fee=Decimal("0.0000001"))
    rows = json.loads(invoke(db_url, "pnl", "--json").output)
    assert [(r["fees"], r["realized_pnl_gross"], r["realized_pnl"]) for r in rows] == [
        ("0.0000001", "0.000000000000", "-0.000000100000")
    ]


def test_pnl_table_rounds_money_half_away_from_zero_like_sql_round(seeded, db_url):
    trade(seeded, "buy", "1", "100", fee=Decimal("0.125"))
    result = invoke(db_url, "pnl")
    # the open position is marked at its own fill (no market data): no unrealized PnL
    assert (
        result.output.splitlines()[2]
        == "alpha     USDT        1       1    100.00  0.13       0.00     0.00    -0.13            0.00"
    )


def test_pnl_table_shows_a_loss_under_half_a_cent_as_zero_without_a_minus_sign(seeded, db_url):
    trade(seeded, "buy", "1", "100", fee=Decimal("0.004"))
    result = invoke(db_url, "pnl")
    assert (
        result.output.splitlines()[2]
        == "alpha     USDT        1       1    100.00  0.00       0.00     0.00     0.00            0.00"
    )


def test_pnl_with_an_unknown_strategy_says_so_without_a_traceback(seeded, db_url):
    result = CliRunner().invoke(main, ["--database-url", db_url, "pnl", "--strategy", "ghost"])
    assert (result.exit_code, result.output) == (
        1,
        'Error: strategy "ghost" does not exist\nhint: Create it with trading.create_strategy.\n',
    )


def test_demo_loads_market_data_for_all_six_exchanges_with_candles_and_spreads(demo_db):
    facts = demo_db.execute("""
        select (select count(distinct i.exchange_id) from market.quotes q join ref.instruments i using (instrument_id)),
               (select count(distinct i.exchange_id) from market.ticks t join ref.instruments i using (instrument_id)),
               (select count(*) from market.candles where interval = '1d'),
               (select count(*) from market.technical_indicators where rsi_14 is not null),
               (select count(*) from market.current_spreads),
               (select count(*) from market.quotes where bid > ask)
    """).fetchone()
    exchanges_quoted, exchanges_traded, daily_candles, indicator_rows, spreads, crossed = facts
    # 15 instruments: the 14 crypto ones and USDT/USD (kraken), which pairs with nothing for a spread
    assert (exchanges_quoted, exchanges_traded, daily_candles, spreads, crossed) == (6, 6, 15, 5, 0)
    assert indicator_rows > 0


# bug: the demo day's USD positions (coinbase, kraken) had no price in USDT, and
# trading.take_portfolio_snapshot(), the README's example, failed with 22S23 after make run
@pytest.mark.parametrize("asset", ["USDT", "USD"])
def test_the_demo_day_can_be_snapshotted_in_usdt_and_in_usd(demo_db, asset):
    rows = demo_db.execute(
        "select strategy_id, valuation_asset from trading.take_portfolio_snapshot(valuation_asset => %s)",
        [asset],
    ).fetchall()

    assert {valuation for _, valuation in rows} == {asset}
    assert len(rows) == 5  # the four demo strategies and the total


@pytest.mark.parametrize("command", [["pnl"], ["spreads"], ["health"]])
def test_a_command_on_a_database_never_migrated_says_to_migrate(pg_cluster, command):
    with janitor(pg_cluster, "never_migrated"):
        result = invoke(pg_cluster.url("never_migrated"), *command)
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == ["hint: run spreadedge migrate (with the same --database-url)"]
    assert "this database is not migrated, or not up to date with this code" in result.output
    assert "Traceback" not in result.output


def test_a_command_on_a_database_migrated_by_older_code_says_to_migrate(db, db_url):
    # what code newer than the database meets: a function it calls has other arguments there
    db.execute("drop function trading.pnl_summary(text, timestamptz, timestamptz, text)")

    result = invoke(db_url, "pnl")

    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == ["hint: run spreadedge migrate (with the same --database-url)"]


def test_an_extensions_raised_error_is_its_message_not_a_traceback(db, db_url):
    # a plain RAISE (P0001), as pg_partman's functions raise, in place of the function pnl calls
    db.execute("drop function trading.pnl_summary(text, timestamptz, timestamptz, text)")
    db.execute(
        "create function trading.pnl_summary(strategy text, since timestamptz, until timestamptz,"
        " group_by text) returns table (x integer) language plpgsql"
        " as $$ begin raise exception 'maintenance is behind' using hint = 'run it again'; end $$"
    )

    result = invoke(db_url, "pnl")

    assert (result.exit_code, result.output) == (1, "Error: maintenance is behind\nhint: run it again\n")


def _trades_since(seeded, db_url, since):
    """Two trades of yesterday, at 10:00 and 14:00 UTC: how many `pnl --since SINCE` counts."""
    day = _yesterday()
    trade(seeded, "buy", "1", "100", executed_at=day + timedelta(hours=10))
    trade(seeded, "sell", "1", "100", executed_at=day + timedelta(hours=14))
    result = invoke(db_url, "pnl", "--json", "--by", "total", "--since", f"{day:%Y-%m-%d}{since}")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)[0]["trades"]


def test_pnl_since_with_a_utc_offset_is_that_moment(seeded, db_url):
    # 12:00 at +02:00 is 10:00 UTC: both trades
    assert _trades_since(seeded, db_url, "T12:00:00+02:00") == 2


def test_pnl_since_with_z_is_utc(seeded, db_url):
    assert _trades_since(seeded, db_url, "T12:00:00Z") == 1


def test_pnl_since_in_hours_and_minutes_without_a_zone_is_utc(seeded, db_url):
    assert _trades_since(seeded, db_url, " 10:00") == 2


def test_pnl_since_that_is_no_date_names_the_option_and_the_value(seeded, db_url):
    result = CliRunner().invoke(main, ["--database-url", db_url, "pnl", "--since", "yesterday"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for '--since': 'yesterday' is not an ISO 8601 date or time"
        " (2024-01-31, 2024-01-31T14:30, 2024-01-31T14:30:00+02:00; UTC unless it has an offset)"
    )


def test_demo_values_each_bnb_fee_at_the_bnb_price_of_its_fill_time(demo_db):
    # the BNBUSDT mid of the latest quote at or before the fill (the first quote before any), as
    # the demo priced the fee with; the market moves through the day, so one price for every fee
    # (what valuing by the latest mark at load time gives) is wrong
    wrong = demo_db.execute("""
        select t.exchange_trade_id, t.fee, t.fee_quote, m.mid
        from trading.trades t
        cross join lateral (
            select (q.bid + q.ask) / 2 as mid
            from market.quotes q join ref.instruments i using (instrument_id)
            join ref.exchanges e using (exchange_id)
            where e.code = 'binance' and i.symbol = 'BNBUSDT'
            order by q.quoted_at <= t.executed_at desc,
                     case when q.quoted_at <= t.executed_at then t.executed_at - q.quoted_at end,
                     q.quoted_at
            limit 1) m
        where t.fee_currency = 'BNB' and t.fee_quote <> t.fee * m.mid""").fetchall()
    priced = demo_db.execute("select count(*) from trading.trades where fee_currency = 'BNB'").fetchone()[0]
    assert priced > 0
    assert wrong == []
