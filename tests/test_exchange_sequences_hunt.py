"""What exchanges send to the order and fill recording, in the orders they send it: acknowledgements,
cancels and fills racing one another, redeliveries, fees of every kind, funding."""

from __future__ import annotations

import shutil
from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import psycopg
import pytest

from auth_helpers import acting_as
from db_fixtures import _seed, janitor
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from test_migration_upgrades import _added_in, _use_functions_of
from trading_helpers import call, counts, expect_refusal, order, place, race

REPO = Path(__file__).resolve().parents[1]
MIGRATION_0067 = "0067_exchange_order_id_key.sql.j2"

HINT = "An exchange order id names one order of its instrument; check which order the exchange acknowledged."


def _key_id(conn: psycopg.Connection, order_id: int) -> str | None:
    return conn.execute(
        "select exchange_order_id from trading.order_keys where order_id = %s", [order_id]
    ).fetchone()[0]


# bug: acknowledge_order refused a second exchange order id for one order, but gave the id one
# order already had to another order of the same instrument: two orders then claimed one order of
# the exchange (an adapter that matched two placements' replies to the wrong requests), and an
# engine finding its order by the exchange's id after a restart could not tell which one a fill
# or a cancel was for
def test_an_exchange_order_id_another_order_of_the_instrument_has_is_a_conflict_and_changes_nothing(
    seeded: psycopg.Connection,
) -> None:
    first = place(seeded, "buy", "0.1", "60000", client_order_id="c-1")
    second = place(seeded, "buy", "0.1", "60000", client_order_id="c-2")
    call(seeded, "trading.acknowledge_order", order_id=first, exchange_order_id="8841")
    error = expect_refusal(
        seeded,
        "23S06",
        f'exchange order id "8841" is already recorded for order {first}',
        lambda: call(seeded, "trading.acknowledge_order", order_id=second, exchange_order_id="8841"),
    )
    assert error.diag.message_detail == (
        f"order {first} was acknowledged with it; order {second} is another order of the same instrument"
    )
    assert error.diag.message_hint == HINT
    # the refused acknowledgement moved nothing: the order is still new, without an id
    assert (order(seeded, second)["status"], order(seeded, second)["exchange_order_id"]) == ("new", None)
    assert (order(seeded, first)["exchange_order_id"], _key_id(seeded, first)) == ("8841", "8841")
    assert seeded.execute("select * from ops.check_invariants()").fetchall() == []


def test_orders_of_two_instruments_may_share_an_exchange_order_id(seeded: psycopg.Connection) -> None:
    # binance numbers orders per symbol: order 8841 of BTCUSDT and order 8841 of BNBUSDT are two
    btc = place(seeded, "buy", "0.1", "60000")
    bnb = place(seeded, "buy", "1", "600", symbol="BNBUSDT")
    call(seeded, "trading.acknowledge_order", order_id=btc, exchange_order_id="8841")
    call(seeded, "trading.acknowledge_order", order_id=bnb, exchange_order_id="8841")
    assert [order(seeded, o)["exchange_order_id"] for o in (btc, bnb)] == ["8841", "8841"]
    assert [order(seeded, o)["status"] for o in (btc, bnb)] == ["open", "open"]


def test_an_order_acknowledged_again_with_its_exchange_order_id_after_a_late_fill_keeps_it(
    seeded: psycopg.Connection,
) -> None:
    # the exchange's reply to the placement arrives after its fill and after the websocket's ack
    order_id = place(seeded, "buy", "0.2", "60000")
    call(
        seeded,
        "trading.record_fill",
        order_id=order_id,
        exchange_trade_id="t-1",
        quantity=D("0.2"),
        price=D("60000"),
    )
    call(seeded, "trading.acknowledge_order", order_id=order_id, exchange_order_id="8841")
    before = counts(seeded)
    call(seeded, "trading.acknowledge_order", order_id=order_id, exchange_order_id="8841")
    assert counts(seeded) == before
    row = order(seeded, order_id)
    assert (row["status"], row["exchange_order_id"], _key_id(seeded, order_id)) == ("filled", "8841", "8841")


def test_two_orders_acknowledged_at_once_with_one_exchange_order_id_the_second_waits_and_is_refused(
    seeded: psycopg.Connection, seeded_url: str
) -> None:
    first = place(seeded, "buy", "0.1", "60000")
    second = place(seeded, "buy", "0.1", "60000")
    _, result = race(
        seeded,
        seeded_url,
        lambda c: call(c, "trading.acknowledge_order", order_id=first, exchange_order_id="8841"),
        lambda c: call(c, "trading.acknowledge_order", order_id=second, exchange_order_id="8841"),
    )
    assert isinstance(result, psycopg.Error)
    assert (result.sqlstate, result.diag.message_primary) == (
        "23S06",
        f'exchange order id "8841" is already recorded for order {first}',
    )
    assert [order(seeded, o)["exchange_order_id"] for o in (first, second)] == ["8841", None]


def test_an_exchange_order_id_another_users_order_has_is_refused_without_naming_that_order(
    desks: dict[str, int], auth_db: psycopg.Connection
) -> None:
    bobs = place(auth_db, "buy", "0.1", "60000", strategy="bob-arb")
    call(auth_db, "trading.acknowledge_order", order_id=bobs, exchange_order_id="8841")
    with acting_as(auth_db, "spreadedge_app", desks["alice"]):
        alices = place(auth_db, "buy", "0.1", "60000", strategy="alice-arb")
        with pytest.raises(psycopg.Error) as caught:
            call(auth_db, "trading.acknowledge_order", order_id=alices, exchange_order_id="8841")
    assert (caught.value.sqlstate, caught.value.diag.message_primary, caught.value.diag.message_detail) == (
        "23S06",
        'exchange order id "8841" is already recorded',
        None,
    )
    assert order(auth_db, alices)["exchange_order_id"] is None


def test_migration_0067_keeps_an_exchange_order_id_two_orders_already_share_in_the_first_orders_key(
    pg_cluster: Cluster, project_settings: Settings, tmp_path: Path
) -> None:
    # a database of before 0067, whose acknowledge_order gave one exchange order id to two orders
    root = tmp_path / "project"
    (root / "migrations").mkdir(parents=True)
    for path in sorted((REPO / "migrations").glob("*.sql.j2")):
        if path.name < MIGRATION_0067:
            shutil.copy(path, root / "migrations" / path.name)
    # why the functions of the commit before 0067: today's read what 0067 and later migrations add
    # (0075's trading.exchange_fill_kind), as a deployment before 0067 never had them
    _use_functions_of(_added_in(MIGRATION_0067) + "~1", root)
    settings = replace(project_settings, project_dir=root)
    database = janitor(pg_cluster, "upgrade_0067")
    database.init()
    try:
        url = pg_cluster.url("upgrade_0067")
        migrate(url, settings, echo=lambda line: None)
        with psycopg.connect(url, autocommit=True) as conn:
            _seed(conn)
            first, second, third = (place(conn, "buy", "0.1", "60000") for _ in range(3))
            conn.execute(
                "update trading.orders set exchange_order_id = '8841', status = 'open'"
                " where order_id = any(%s)",
                [[first, second]],
            )
            conn.execute("update trading.orders set exchange_order_id = '9001' where order_id = %s", [third])
        for path in sorted((REPO / "migrations").glob("*.sql.j2")):
            if path.name >= MIGRATION_0067:
                shutil.copy(path, root / "migrations" / path.name)
        shutil.rmtree(root / "functions")
        shutil.copytree(REPO / "functions", root / "functions")
        migrate(url, settings, echo=lambda line: None)
        with psycopg.connect(url, autocommit=True) as conn:
            assert [_key_id(conn, o) for o in (first, second, third)] == ["8841", None, "9001"]
            assert [order(conn, o)["exchange_order_id"] for o in (first, second)] == ["8841", "8841"]
            assert [
                r for r in conn.execute("select * from ops.check_invariants()") if r[0] == "order_keys"
            ] == []
            with pytest.raises(psycopg.Error) as caught:
                call(
                    conn,
                    "trading.acknowledge_order",
                    order_id=place(conn, "buy", "0.1", "60000"),
                    exchange_order_id="8841",
                )
            assert caught.value.sqlstate == "23S06"
    finally:
        database.drop()
