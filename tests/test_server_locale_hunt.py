"""spreadedge on a server that speaks neither English nor C, for real.

The module's cluster runs with ``lc_messages = 'fr_FR.UTF-8'`` (Debian's postgresql-15 ships the
French catalog) and holds a database created with ``LOCALE 'tr_TR.UTF-8'``, where upper('i') is a
dotted I (U+0130) and lower('I') a dotless i (U+0131). The locales are compiled into a private directory with
localedef (package ``locales``) and reach initdb's cluster through LOCPATH in the server's
environment, so the machine's own locales stay as they are.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from auth_helpers import login, make_user
from db_fixtures import janitor
from spreadedge import connection_limits
from spreadedge.cluster import Cluster
from spreadedge.migrate import migrate
from spreadedge.settings import Settings
from trading_helpers import call

TURKISH = "tr_TR.UTF-8"
FRENCH = "fr_FR.UTF-8"
TEMPLATE = "turkish_template"


@pytest.fixture(scope="module")
def locale_dir() -> Iterator[Path]:
    """A directory of compiled tr_TR.UTF-8 and fr_FR.UTF-8 locales, readable by the server's user."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/tr_TR").exists():
        pytest.fail(
            "localedef or the locale sources are missing: run `make bootstrap` (Debian package locales)"
        )
    parent = Path(tempfile.mkdtemp(prefix="spreadedge-locales-"))
    parent.chmod(0o755)
    try:
        for name in (TURKISH, FRENCH):
            language = name.split(".")[0]
            subprocess.run(
                ["localedef", "-i", language, "-f", "UTF-8", str(parent / name)],
                check=True,
                capture_output=True,
                timeout=60,
            )
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def locale_cluster(make_cluster: Callable[..., Cluster], locale_dir: Path) -> Iterator[Cluster]:
    """A running cluster that writes its messages in French and knows the Turkish locale."""
    cluster = make_cluster(server_env={"LOCPATH": str(locale_dir)})
    cluster.start()
    try:
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("alter system set lc_messages = {}").format(sql.Literal(FRENCH)))
            conn.execute("select pg_reload_conf()")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def turkish_template(locale_cluster: Cluster, project_settings: Settings) -> Iterator[str]:
    """A migrated database whose collation and character classes are Turkish."""
    with psycopg.connect(locale_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template template0 locale {}").format(
                sql.Identifier(TEMPLATE), sql.Literal(TURKISH)
            )
        )
    migrate(locale_cluster.url(TEMPLATE), project_settings, echo=lambda line: None)
    yield TEMPLATE


@pytest.fixture
def turkish(
    locale_cluster: Cluster, turkish_template: str, request: pytest.FixtureRequest
) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh clone of the Turkish database."""
    name = f"tr_{request.node.name[:40]}".lower()
    with (
        janitor(locale_cluster, name, turkish_template),
        psycopg.connect(locale_cluster.conninfo(name), autocommit=True) as conn,
    ):
        assert conn.execute("select upper('i'), lower('I')").fetchone() == ("\u0130", "\u0131")
        yield conn


def list_link(
    conn: psycopg.Connection, symbol: str = "LINKUSDT", base: str = "link", quote: str = "usdt"
) -> int:
    return call(
        conn,
        "ref.upsert_instrument",
        exchange="binance",
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        market_type="spot",
        tick_size=Decimal("0.001"),
        lot_size=Decimal("0.01"),
    )


def test_an_asset_code_given_in_lower_case_is_listed_in_ascii_capitals_on_a_turkish_database(turkish):
    instrument_id = list_link(turkish)

    assert turkish.execute(
        "select base_asset, quote_asset from ref.instruments where instrument_id = %s", [instrument_id]
    ).fetchone() == ("LINK", "USDT")


def test_a_symbol_differing_only_in_an_i_s_case_is_refused_on_a_turkish_database(turkish):
    list_link(turkish, symbol="LINKUSDT", base="LINK", quote="USDT")

    with pytest.raises(psycopg.Error) as caught:
        list_link(turkish, symbol="linkusdt", base="LINK", quote="USDT")

    assert caught.value.sqlstate == "22S09"
    assert (
        caught.value.diag.message_primary
        == 'symbol "linkusdt" differs only in case from "LINKUSDT", listed on binance'
    )


def test_a_risk_limit_asset_given_in_lower_case_is_kept_in_ascii_capitals_on_a_turkish_database(turkish):
    list_link(turkish, base="LINK", quote="USDT")
    call(turkish, "trading.create_strategy", name="alpha")

    limit_id = call(
        turkish, "monitor.set_risk_limit", strategy="alpha", max_order_notional=100, limit_asset="link"
    )

    assert turkish.execute(
        "select limit_asset from monitor.risk_limits where limit_id = %s", [limit_id]
    ).fetchone() == ("LINK",)


def test_a_spread_pair_given_in_lower_case_is_found_on_a_turkish_database(turkish):
    list_link(turkish, base="LINK", quote="USDT")

    assert turkish.execute("select * from internal.find_pair('link/usdt')").fetchone() == ("LINK", "USDT")


def test_a_user_logs_in_with_a_username_in_another_case_on_a_turkish_database(turkish):
    turkish.execute("select auth.set_security_policy(bcrypt_cost => 4, totp_required_roles => '{}')")
    user_id = make_user(turkish, "Ivan")

    assert login(turkish, "ivan")["user_id"] == user_id


def test_a_username_differing_only_in_an_i_s_case_is_taken_on_a_turkish_database(turkish):
    make_user(turkish, "ivan")

    with pytest.raises(psycopg.Error) as caught:
        make_user(turkish, "IVAN")

    assert caught.value.sqlstate == "23S11"


def test_a_connection_refused_by_a_role_limit_in_french_names_the_limit(locale_cluster):
    with psycopg.connect(locale_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute("create role limited login connection limit 0")
    try:
        with pytest.raises(psycopg.OperationalError) as caught:
            psycopg.connect(locale_cluster.conninfo("postgres") + " user=limited", connect_timeout=10)

        assert "trop de connexions pour le rôle « limited »" in str(caught.value)
        assert connection_limits.refusal(caught.value) == "the database role has reached its CONNECTION LIMIT"
    finally:
        with psycopg.connect(locale_cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("drop role limited")
