"""Database fixtures: one migrated template per session, a fresh clone of it per test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from auth_helpers import make_user
from spreadedge.cluster import Cluster
from spreadedge.managers import ManagerConfig
from spreadedge.migrate import migrate
from spreadedge.settings import Settings, load_settings
from trading_helpers import call

TEMPLATE = "spreadedge_template"
PROJECT = Path(__file__).resolve().parent.parent
_names = itertools.count(1)


def janitor(cluster: Cluster, dbname: str, template: str | None = None) -> DatabaseJanitor:
    return DatabaseJanitor(
        user="spreadedge",
        host=str(cluster.socket_dir.resolve()),
        port=cluster.port,
        dbname=dbname,
        template_dbname=template,
    )


@contextmanager
def database_copy(cluster: Cluster, template: str, prefix: str) -> Iterator[str]:
    """The URL of a new database of ``cluster`` cloned from ``template`` (``prefix_N``), dropped on
    the way out."""
    name = f"{prefix}_{next(_names)}"
    with janitor(cluster, name, template):
        yield cluster.url(name)


@pytest.fixture(scope="session")
def project_settings() -> Settings:
    """The project's own settings (migrations/, functions/, schema/ of this checkout)."""
    return load_settings(project_dir=PROJECT, env={})


@pytest.fixture(scope="session")
def template_db(pg_cluster: Cluster, project_settings: Settings) -> Iterator[str]:
    """A database migrated once per session with every migration and functions/."""
    with janitor(pg_cluster, TEMPLATE):
        migrate(pg_cluster.url(TEMPLATE), project_settings, echo=lambda line: None)
        yield TEMPLATE


@pytest.fixture
def db_url(pg_cluster: Cluster, template_db: str) -> Iterator[str]:
    """URL of a fresh database cloned from the migrated template, dropped after the test."""
    with database_copy(pg_cluster, template_db, "test") as url:
        # why: pg_stat_statements holds pg_stat_statements.max entries for the whole cluster; the
        # tests before this one (a database each) fill it, and a statement of this test with few
        # calls is then among the first evicted: tune advice, slow statement metrics and views
        # would miss it. The session's cluster belongs to this worker alone.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("select pg_stat_statements_reset()")
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's own migrated database."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def _seed(conn: psycopg.Connection) -> None:
    instruments = [
        ("binance", "BTCUSDT", "BTC", "USDT", "spot", "0.01", "0.0001", "5", "1"),
        ("binance", "BNBUSDT", "BNB", "USDT", "spot", "0.1", "0.001", "5", "1"),
        ("kraken", "ETHUSD", "ETH", "USD", "spot", "0.01", "0.001", "0", "1"),
        ("okx", "BTC-USDT-SWAP", "BTC", "USDT", "perpetual", "0.1", "1", "0", "0.01"),
    ]
    for exchange, symbol, base, quote, market, tick, lot, min_notional, multiplier in instruments:
        conn.execute(
            "select ref.upsert_instrument(exchange => %s, symbol => %s, base_asset => %s, quote_asset => %s,"
            " market_type => %s, tick_size => %s, lot_size => %s, min_notional => %s, multiplier => %s)",
            [
                exchange,
                symbol,
                base,
                quote,
                market,
                Decimal(tick),
                Decimal(lot),
                Decimal(min_notional),
                Decimal(multiplier),
            ],
        )
    conn.execute("select trading.create_strategy(name => 'alpha', capital => 10000)")
    conn.execute("select trading.create_strategy(name => 'beta')")


@pytest.fixture
def seeded(db: psycopg.Connection) -> psycopg.Connection:
    """The test database with instruments (binance BTCUSDT and BNBUSDT spot, kraken ETHUSD spot, okx
    BTC-USDT-SWAP perpetual with multiplier 0.01) and strategies alpha (capital 10000) and beta."""
    _seed(db)
    return db


@pytest.fixture
def seeded_url(db_url: str, seeded: psycopg.Connection) -> str:
    return db_url


@pytest.fixture
def config(seeded_url: str, project_settings: Settings) -> ManagerConfig:
    """The async managers' configuration for the seeded database (actor "test-manager")."""
    return ManagerConfig(database_url=seeded_url, actor="test-manager", settings=project_settings)


@pytest.fixture
def auth_db(seeded: psycopg.Connection) -> psycopg.Connection:
    """The seeded database with a test-speed security policy: bcrypt cost 4 (the minimum) and no
    role that must use 2FA; every other policy setting is the default."""
    seeded.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    return seeded


@pytest.fixture
def desks(auth_db: psycopg.Connection) -> dict[str, int]:
    """Two traders, alice and bob, each owning one strategy (alice-arb, bob-arb); their user ids."""
    ids = {name: make_user(auth_db, name, "trader") for name in ("alice", "bob")}
    for name, user_id in ids.items():
        call(auth_db, "trading.create_strategy", name=f"{name}-arb", owner_user_id=user_id)
    return ids
