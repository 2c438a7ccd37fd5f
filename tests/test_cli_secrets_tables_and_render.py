"""Edges of the CLI: secrets of DATABASE_URL other than the password that
`db url` printed, decimals the pnl table rounded, names in wide characters that shifted the
columns of a table, and `migrate --render-only` writing through a symbolic link."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from spreadedge import migrate
from spreadedge.cli import main
from spreadedge.migrate import MigrationError
from spreadedge.settings import Settings
from trading_helpers import call, trade


def _db_url(url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--database-url", url, "db", "url"], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://trader@db.internal/spreadedge?sslmode=require&sslpassword=k3y-pass&sslkey=/k.pem",
            "postgresql://trader@db.internal/spreadedge?sslmode=require&sslpassword=***&sslkey=/k.pem\n",
        ),
        (
            "host=db.internal dbname=spreadedge sslpassword='k3y pass' sslmode=require",
            "host=db.internal dbname=spreadedge sslpassword=*** sslmode=require\n",
        ),
    ],
    ids=["url", "key-value"],
)
def test_db_url_never_prints_the_passphrase_of_the_ssl_key(url: str, shown: str):
    # sslpassword is the passphrase of the client's SSL key, a secret libpq itself hides ("*"):
    # only "password" was redacted, so db url printed it into terminals, logs and CI output
    assert _db_url(url) == (0, shown)


def _list_wei_token(conn: psycopg.Connection) -> None:
    """A token traded to the wei (18 decimals) on binance, quoted in USDT."""
    call(
        conn,
        "ref.upsert_instrument",
        exchange="binance",
        symbol="WEIUSDT",
        base_asset="WEI",
        quote_asset="USDT",
        market_type="spot",
        tick_size=Decimal("0.00000001"),
        lot_size=Decimal("0.000000000000000001"),
        min_notional=Decimal("0"),
    )


def test_pnl_table_shows_a_volume_of_more_than_28_digits_exactly(seeded: psycopg.Connection, seeded_url: str):
    # 12,345,678,901 tokens and 18 decimals: 29 significant digits. The table normalized the
    # decimal, which rounds to Python's 28 significant digits, and showed ...012345678 as ...01234568
    _list_wei_token(seeded)
    trade(seeded, "buy", "12345678901.123456789012345678", "0.00001", symbol="WEIUSDT")

    result = CliRunner().invoke(main, ["--database-url", seeded_url, "pnl"])

    assert result.exit_code == 0, result.output
    volume = result.output.splitlines()[2].split()[3]
    assert volume == "12345678901.123456789012345678"


def test_pnl_table_aligns_the_columns_after_a_strategy_name_in_wide_characters(
    seeded: psycopg.Connection, seeded_url: str
):
    # a strategy name in Chinese takes two terminal columns a character: padded by its length, the
    # name's row was two columns wider per character than the header, and every number after it
    # stood under the wrong edge
    call(seeded, "trading.create_strategy", name="价差")
    trade(seeded, "buy", "1", "100", strategy="价差")
    trade(seeded, "buy", "1", "100")

    result = CliRunner().invoke(main, ["--database-url", seeded_url, "pnl"])

    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            "strategy  quote  trades  volume  notional  fees  gross pnl  funding  net pnl  unrealized pnl",
            "--------  -----  ------  ------  --------  ----  ---------  -------  -------  --------------",
            "alpha     USDT        1       1    100.00  0.00       0.00     0.00     0.00            0.00",
            "价差      USDT        1       1    100.00  0.00       0.00     0.00     0.00            0.00",
        ],
    )


def test_render_only_never_writes_through_a_symbolic_link_named_like_a_migration(
    project_settings: Settings, tmp_path: Path
):
    # a render directory (say in a shared /tmp) holding 0001_initial.sql as a link to another file:
    # the name is a migration's, so the link passed for an earlier render and the migration's SQL
    # overwrote the file it leads to, outside the directory
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "rendered"
    out.mkdir()
    (out / "0001_initial.sql").symlink_to(victim)

    with pytest.raises(MigrationError) as refused:
        migrate.run(project_settings, "", render_only=out, echo=lambda line: None)

    assert str(refused.value) == (
        f"{out} holds files that are not migrations rendered now: 0001_initial.sql; "
        "render into a new or empty directory (nothing was written)"
    )
    assert (victim.read_text(), sorted(path.name for path in out.iterdir())) == (
        "precious\n",
        ["0001_initial.sql"],
    )
